"""Atlassian Document Format (ADF): the rich text of Jira Cloud descriptions and
comments, to and from plain text (paragraphs, one per line)."""

from __future__ import annotations

from typing import Any


def to_adf(text: str) -> dict[str, Any]:
    """Plain text as an ADF document: one paragraph per line."""
    paragraphs = []
    for line in text.split("\n"):
        content = [{"type": "text", "text": line}] if line else []
        paragraphs.append({"type": "paragraph", "content": content})
    return {"type": "doc", "version": 1, "content": paragraphs}


def _text_of(node: Any) -> str:
    if not isinstance(node, dict):
        return ""
    if node.get("type") == "text":
        return str(node.get("text", ""))
    if node.get("type") == "hardBreak":
        return "\n"
    return "".join(_text_of(child) for child in node.get("content") or [])


def from_adf(doc: Any) -> str:
    """The text of an ADF document (block nodes on their own lines)."""
    if doc is None:
        return ""
    if isinstance(doc, str):  # Jira Server / v2 answers plain strings
        return doc
    if not isinstance(doc, dict):
        return ""
    return "\n".join(_text_of(block) for block in doc.get("content") or [])
