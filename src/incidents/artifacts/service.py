"""ArtifactService: attach files to incidents and read them back.

An attachment is recorded as an ``im.artifact.attach`` event on the incident's
timeline (digest, size, type, name); the bytes go to the object store under their
SHA-256. Who may download an artifact is decided by that event: a reader who can see
an attach event of the incident naming the digest may download it, so an artifact
has the incident's visibility (and that of the event that attached it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson

from incidents.artifacts.content import check_content, content_key
from incidents.artifacts.export_view import covers, view_of
from incidents.artifacts.ports import ObjectStore, ObjectStoreError
from incidents.artifacts.verified import DamagedObject, read_verified
from incidents.events.envelope import Event
from incidents.events.timeformat import format_micros, now_micros
from incidents.incident.commands import build_event
from incidents.log.query import TimelineFilter
from incidents.log.records import StoredEvent
from incidents.policy.model import Decision
from incidents.timeline.service import TimelineService

log = logging.getLogger(__name__)

ATTACH = "im.artifact.attach"
ARTIFACT_SOURCE = "incidents://artifacts"
_NAME = re.compile(r"^[^/\\\x00-\x1f]{1,255}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
# The key of a stored export's attach data holding the view it was made for.
EXPORT = "export"


class ArtifactError(ValueError):
    """A request that names an unusable field (a 4xx naming ``field``)."""

    def __init__(self, field: str, detail: str, status: int = 422) -> None:
        self.field = field
        self.status = status
        super().__init__(f"{field}: {detail}")


class ExportWithdrawn(Exception):
    """A stored export made before an erasure of its incident: it may hold the erased
    values, so it is no longer served (a 410)."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """An artifact attached to an incident."""

    sha256: str
    size: int
    content_type: str
    filename: str


def object_key(sha256: str, *, export: bool = False) -> str:
    """Where the bytes are kept. Stored exports have keys of their own: an attach event
    that merely names an export's digest (recorded by anyone who saw that digest) must
    not reach bytes that only readers covering the export's view may download."""
    return f"export-{sha256}" if export else sha256


def is_stored_export(data: object) -> TypeGuard[dict[str, Any]]:
    """Whether an attach event's data records a stored export."""
    return isinstance(data, dict) and EXPORT in data


def check_digest(value: str) -> str:
    if not _DIGEST.fullmatch(value):
        raise ArtifactError("sha256", "must be 64 lowercase hex digits", 400)
    return value


class ArtifactService:
    """Content-addressed attachments, stored in ``objects``."""

    def __init__(
        self,
        objects: ObjectStore,
        timeline: TimelineService,
        max_bytes: int,
        erased_at: Callable[[str], int | None],
    ) -> None:
        self._objects = objects
        self._timeline = timeline
        self.max_bytes = max_bytes
        # When the incident's last erasure was recorded (None: never): a stored export
        # made before it is withdrawn.
        self._erased_at = erased_at

    def withdrawn(self, row: StoredEvent) -> bool:
        """Whether ``row`` records a stored export that an erasure has withdrawn."""
        if row.incident_id is None or not is_stored_export(orjson.loads(row.body).get("data")):
            return False
        erased = self._erased_at(row.incident_id)
        return erased is not None and erased >= row.created_us

    def export_keys(self, incident_id: str) -> list[str]:
        """The object keys of every stored export of the incident, whoever made it."""
        keys = []
        for row in self.attached(incident_id, None):
            data_field = orjson.loads(row.body).get("data")
            if is_stored_export(data_field) and isinstance(data_field.get("sha256"), str):
                keys.append(object_key(data_field["sha256"], export=True))
        return keys

    def discard(self, keys: Collection[str]) -> None:
        """Delete stored exports' bytes (withdrawn by an erasure, or of a purged incident).

        Runs after the erasure or purge has committed, so a store that fails here is
        logged, not raised: no download serves those exports any more either way."""
        for key in keys:
            try:
                self._objects.delete(key)
            except ObjectStoreError as exc:
                log.warning("could not delete the withdrawn export %s: %s", key, exc)

    def attach_event(
        self,
        incident_id: str,
        filename: str,
        content_type: str,
        data: bytes,
        actor: str,
        visibility: str | None = None,
    ) -> tuple[Artifact, Event]:
        """Check and store the bytes; the event that records the attachment, with
        ``visibility`` (the incident's classification: who may see the incident may
        download its artifacts, nobody else)."""
        return self._stored(incident_id, filename, content_type, data, actor, visibility, {})

    def export_event(
        self,
        incident_id: str,
        suffix: str,
        content_type: str,
        data: bytes,
        decision: Decision,
        visibility: str | None = None,
    ) -> tuple[Artifact, Event]:
        """Store an export of the incident's timeline made for ``decision``; the attach
        event records that reader's view, and only readers whose decision covers it may
        download the export."""
        stamp = format_micros(now_micros()).replace(":", "").replace("-", "")
        filename = f"{incident_id}-timeline-{stamp}.{suffix}"
        extra = {EXPORT: view_of(decision)}
        return self._stored(
            incident_id, filename, content_type, data, decision.subject.id, visibility, extra
        )

    def _stored(
        self,
        incident_id: str,
        filename: str,
        content_type: str,
        data: bytes,
        actor: str,
        visibility: str | None,
        extra: dict[str, Any],
    ) -> tuple[Artifact, Event]:
        if not _NAME.fullmatch(filename):
            raise ArtifactError("filename", "1 to 255 characters, no path separators")
        if len(data) > self.max_bytes:
            raise ArtifactError(
                "body", f"{len(data)} bytes; the limit is {self.max_bytes}", status=413
            )
        check_content(content_type, data)
        digest = content_key(data)
        self._objects.put(object_key(digest, export=EXPORT in extra), data, content_type)
        artifact = Artifact(digest, len(data), content_type, filename)
        event = build_event(
            ATTACH,
            incident_id,
            {
                "sha256": digest,
                "size": len(data),
                "content_type": content_type,
                "filename": filename,
                **extra,
            },
            actor,
            source=ARTIFACT_SOURCE,
            visibility=visibility,
        )
        return artifact, event

    def attached(self, incident_id: str, visibilities: frozenset[str] | None) -> list[StoredEvent]:
        """The attach events of the incident a reader with ``visibilities`` may see."""
        filt = TimelineFilter(incident_id=incident_id, types=(ATTACH,), visibilities=visibilities)
        rows: list[StoredEvent] = []
        cursor = None
        while True:
            page = self._timeline.page(filt, cursor, 1000)
            rows.extend(page.events)
            if page.next_cursor is None:
                return rows
            cursor = page.next_cursor

    def download(
        self,
        incident_id: str,
        sha256: str,
        visibilities: frozenset[str] | None,
        decision: Decision | None = None,
    ) -> tuple[StoredEvent, bytes] | None:
        """The visible attach event naming ``sha256`` and the bytes; None if none.

        A stored export counts only for a reader whose ``decision`` covers the view it
        was made for (without a decision, an in-process caller, it always does).
        Raises :class:`ExportWithdrawn` for a stored export an erasure has withdrawn."""
        check_digest(sha256)
        for row in self.attached(incident_id, visibilities):
            data_field = orjson.loads(row.body).get("data")
            if not isinstance(data_field, dict) or data_field.get("sha256") != sha256:
                continue
            if (
                EXPORT in data_field
                and decision is not None
                and not covers(decision, data_field[EXPORT])
            ):
                continue
            if EXPORT in data_field and self.withdrawn(row):
                raise ExportWithdrawn(
                    f"this export of {incident_id} was made before an erasure of data it "
                    "held and has been withdrawn; store a new export"
                )
            try:
                data = read_verified(
                    self._objects, object_key(sha256, export=EXPORT in data_field), sha256
                )
            except DamagedObject:
                data = None
            if data is None:
                # Missing or altered in the store: never serve other bytes.
                raise ArtifactError("sha256", "the stored object is missing or damaged", 502)
            return row, data
        return None
