"""Errors the storage adapters raise to the layers above."""

from __future__ import annotations


class DedupeRace(Exception):
    """Another writer stored one of a group's dedupe keys between lookup and insert."""
