"""Streaming exports: a JSON array of CloudEvents, or the guide's Markdown report.

Both are generators of byte chunks over an event iterator, so memory stays flat
however long the timeline is. The JSON array holds one event per line, which lets a
client count progress without parsing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import StrEnum

import orjson

from incidents.events.timeformat import format_micros, now_micros
from incidents.events.types import human_title
from incidents.log.records import StoredEvent
from incidents.policy.model import Decision
from incidents.timeline.render import title_and_content, to_cloudevent, visible_body

# Rows rendered per yielded chunk: large enough to amortise, small enough to stream.
_CHUNK_EVENTS = 200


class ExportFormat(StrEnum):
    JSON = "json"
    MARKDOWN = "md"


MEDIA_TYPES = {
    ExportFormat.JSON: "application/cloudevents-batch+json",
    ExportFormat.MARKDOWN: "text/markdown; charset=utf-8",
}


def export_json(
    rows: Iterable[StoredEvent], dialect: str = "spec", decision: Decision | None = None
) -> Iterator[bytes]:
    """A JSON array of CloudEvents v1.0, one event per line."""
    yield b"[\n"
    buffer: list[bytes] = []
    first = True
    for row in rows:
        encoded = orjson.dumps(to_cloudevent(row, dialect, decision))
        buffer.append(encoded if first else b",\n" + encoded)
        first = False
        if len(buffer) >= _CHUNK_EVENTS:
            yield b"".join(buffer)
            buffer.clear()
    if buffer:
        yield b"".join(buffer)
    yield b"\n]\n" if not first else b"]\n"


def _markdown_text(text: str) -> str:
    # A line starting with '#' or '---' in an event's text must not become a heading
    # or a separator of the report itself.
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("#", "---", "===")):
            line = "\\" + stripped
        lines.append(line)
    return "\n".join(lines)


def markdown_section(row: StoredEvent, decision: Decision | None = None) -> str:
    """One event of the Markdown report."""
    body, redacted = visible_body(row, decision)
    title, content, title_from_data = title_and_content(row, body)
    parts = [
        f"### {format_micros(row.time_us)} - {human_title(row.type)}",
        "",
        f"**Actor**: {row.actor}",
        f"**Type**: {row.type}",
    ]
    if redacted:
        # A reader of the report must know that something was withheld from them.
        parts.append("**Redacted**: yes")
    if title_from_data:
        parts += ["", _markdown_text(title)]
    if content:
        parts += ["", _markdown_text(content)]
    parts += ["", "---", "", ""]
    return "\n".join(parts)


def export_markdown(
    rows: Iterable[StoredEvent],
    incident_id: str,
    total: int,
    generated_us: int | None = None,
    decision: Decision | None = None,
) -> Iterator[bytes]:
    """The guide's report: title line, Generated, Events count, then one section per event."""
    generated = format_micros(now_micros() if generated_us is None else generated_us)
    yield (
        f"# Incident Timeline: {incident_id}\n\n"
        f"**Generated**: {generated}\n"
        f"**Events**: {total}\n\n"
        "## Events\n\n"
    ).encode()
    buffer: list[str] = []
    for row in rows:
        buffer.append(markdown_section(row, decision))
        if len(buffer) >= _CHUNK_EVENTS:
            yield "".join(buffer).encode()
            buffer.clear()
    if buffer:
        yield "".join(buffer).encode()
