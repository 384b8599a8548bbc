"""Channel names for incidents: ``inc-<n>-sev<level>-<slug>[-restricted]``.

Slack's rules: lowercase letters, digits, ``-`` and ``_``, at most 80 characters.
Titles are folded to ASCII (accents dropped), every other run of characters becomes
one ``-``, and the slug is cut at a word boundary so a name never ends mid-word or
with a dash.
"""

from __future__ import annotations

import re
import unicodedata

MAX_CHANNEL_NAME = 80
RESTRICTED_SUFFIX = "-restricted"
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")


def slug(title: str) -> str:
    """The title in lowercase ASCII words joined by ``-`` (may be empty)."""
    folded = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    return _NOT_ALLOWED.sub("-", folded.lower()).strip("-")


def _cut(text: str, room: int) -> str:
    if len(text) <= room:
        return text
    cut = text[:room]
    # Cut at the last word boundary inside the room, unless the first word alone
    # does not fit (then a hard cut is all there is).
    if text[room] != "-" and "-" in cut:
        cut = cut[: cut.rindex("-")]
    return cut.strip("-")


def channel_name(
    incident_id: str, severity: str, title: str, *, restricted: bool, suffix: str = ""
) -> str:
    """The channel name of an incident.

    ``suffix`` (e.g. ``"2"``) tells apart a second channel when the natural name is
    held by a channel that is not this incident's.
    """
    number = incident_id.lower().removeprefix("inc-")
    level = severity.lower().replace("sev-", "").replace("sev", "") or "x"
    head = f"inc-{_NOT_ALLOWED.sub('', number)}-sev{_NOT_ALLOWED.sub('', level)}"
    tail = (f"-{suffix}" if suffix else "") + (RESTRICTED_SUFFIX if restricted else "")
    room = MAX_CHANNEL_NAME - len(head) - len(tail) - 1
    text = _cut(slug(title), room) if room > 0 else ""
    return f"{head}-{text}{tail}" if text else f"{head}{tail}"
