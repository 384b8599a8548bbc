"""CloudEvents attribute names and the platform's ``im`` extension attributes.

The Timeline guide spells the extensions with a dot (``im.actor``); the CloudEvents
spec allows only lowercase letters and digits (``imactor``). Both are accepted on
input and mean the same; output uses the spec names unless the dotted dialect is
asked for.
"""

from __future__ import annotations

import re
from enum import StrEnum

SPEC_VERSION = "1.0"

REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
OPTIONAL_ATTRIBUTES = ("time", "subject", "datacontenttype", "dataschema")
CONTEXT_ATTRIBUTES = frozenset(REQUIRED_ATTRIBUTES + OPTIONAL_ATTRIBUTES)
# Members of the JSON event format that are not attributes.
DATA_MEMBERS = frozenset({"data", "data_base64"})

# CloudEvents 1.0: attribute names are lowercase ASCII letters and digits.
ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,64}$")


class Extension(StrEnum):
    """The platform's extension attributes, by their spec-conformant names."""

    ACTOR = "imactor"
    ORIGIN_ID = "imoriginid"
    INCIDENT_ID = "imincidentid"
    VISIBILITY = "imvisibility"
    DATA_CLASS = "imdataclass"
    CORRELATION_KEY = "imcorrelationkey"
    FINGERPRINT = "imfingerprint"
    RELATED_IDS = "imrelatedids"
    # Written by the platform, never accepted from a client.
    RECORDED_BY = "imrecordedby"
    REDACTION_APPLIED = "imredactionapplied"


DOTTED_NAMES: dict[Extension, str] = {
    Extension.ACTOR: "im.actor",
    Extension.ORIGIN_ID: "im.origin_id",
    Extension.INCIDENT_ID: "im.incident_id",
    Extension.VISIBILITY: "im.visibility",
    Extension.DATA_CLASS: "im.data_class",
    Extension.CORRELATION_KEY: "im.correlation_key",
    Extension.FINGERPRINT: "im.fingerprint",
    Extension.RELATED_IDS: "im.related_ids",
    Extension.RECORDED_BY: "im.recorded_by",
    Extension.REDACTION_APPLIED: "im.redaction_applied",
}

# Input spelling -> spec name, for both spellings of every platform extension.
_ALIASES: dict[str, Extension] = {}
for _ext, _dotted in DOTTED_NAMES.items():
    _ALIASES[_ext.value] = _ext
    _ALIASES[_dotted] = _ext

# Set by the platform on output; ignored on input, so exports can be appended elsewhere.
SERVER_ONLY = frozenset({Extension.RECORDED_BY, Extension.REDACTION_APPLIED})


def platform_extension(name: str) -> Extension | None:
    """The platform extension an input attribute name spells, if any."""
    return _ALIASES.get(name)


def output_name(ext: Extension, dialect: str) -> str:
    """The attribute name to write for ``ext`` in the given export dialect."""
    return DOTTED_NAMES[ext] if dialect == "dotted" else ext.value


class Visibility(StrEnum):
    """Who may see an event at all (the guide's ``im.visibility``)."""

    PUBLIC = "public"
    RESTRICTED = "restricted"
    CONFIDENTIAL = "confidential"


class DataClass(StrEnum):
    """Classes of sensitive data an event's ``data`` may carry (the guide's ``im.data_class``)."""

    PII = "pii"
    PHI = "phi"
    FINANCIAL = "financial"
    LEGAL_HOLD = "legal_hold"


# The full vocabularies, for code that must know when a reader is open to all of them.
VISIBILITIES = frozenset(v.value for v in Visibility)
DATA_CLASSES = frozenset(c.value for c in DataClass)
