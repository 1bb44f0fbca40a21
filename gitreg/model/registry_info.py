"""The registry identity file ``gitreg.json``: format version, registry id, name.

Pure: bytes in, a ``RegistryInfo`` or one ``InvalidDocumentError`` out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from gitreg.errors import InvalidDocumentError, Problem
from gitreg.model import strictjson

REGISTRY_INFO_FILE = "gitreg.json"
FORMAT_VERSION = 1
MAX_NAME_LENGTH = 200
_FIELDS = ("format_version", "registry_id", "name")


def uuid_problem(value: Any) -> str | None:
    """Why ``value`` is not a UUID in canonical form, or None when it is.

    Only the lower-case hyphenated form is accepted, so that one registry (or
    list) has exactly one spelling and ids compare as plain strings.
    """
    if not isinstance(value, str):
        return f"must be a UUID string, not {type(value).__name__}"
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return f"not a UUID: {value!r}"
    if str(parsed) != value:
        return f"UUID must be lower-case and hyphenated: {value!r} (use {str(parsed)!r})"
    return None


def name_problem(value: Any) -> str | None:
    """Why ``value`` is not an acceptable registry name, or None when it is."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not value.strip():
        return "must not be empty"
    if len(value) > MAX_NAME_LENGTH:
        return f"longer than {MAX_NAME_LENGTH} characters"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "contains a control character"
    return None


def _problems(doc: Any, source: str) -> list[Problem]:
    if not isinstance(doc, dict):
        return [Problem("", "must be a JSON object", source)]
    problems = [Problem(key, "unknown key (format version 1 defines only "
                             f"{', '.join(_FIELDS)})", source)
                for key in doc if key not in _FIELDS]
    problems.extend(Problem(key, "missing", source) for key in _FIELDS if key not in doc)
    if "format_version" in doc:
        version = doc["format_version"]
        if type(version) is not int:
            problems.append(Problem("format_version", "must be an integer", source))
        elif version != FORMAT_VERSION:
            problems.append(Problem(
                "format_version",
                f"unsupported registry format version {version} (this gitreg reads "
                f"version {FORMAT_VERSION})", source))
    if "registry_id" in doc and (why := uuid_problem(doc["registry_id"])):
        problems.append(Problem("registry_id", why, source))
    if "name" in doc and (why := name_problem(doc["name"])):
        problems.append(Problem("name", why, source))
    return problems


@dataclass(frozen=True)
class RegistryInfo:
    """Who a registry is. ``registry_id`` is what ``policy.json`` names in ``registry``."""

    format_version: int
    registry_id: str
    name: str

    def __post_init__(self) -> None:
        problems = _problems(self.to_dict(), REGISTRY_INFO_FILE)
        if problems:
            raise InvalidDocumentError(problems, source=REGISTRY_INFO_FILE)

    @classmethod
    def parse(cls, data: bytes, source: str = REGISTRY_INFO_FILE) -> RegistryInfo:
        """Parse ``gitreg.json`` strictly; every problem in one error naming ``source``."""
        doc = strictjson.loads(data, source=source)
        problems = _problems(doc, source)
        if problems:
            raise InvalidDocumentError(problems, source=source)
        return cls(doc["format_version"], doc["registry_id"], doc["name"])

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": self.format_version, "registry_id": self.registry_id,
                "name": self.name}

    def canonical_bytes(self) -> bytes:
        """The bytes gitreg writes to ``gitreg.json``."""
        return strictjson.canonical_dumps(self.to_dict())
