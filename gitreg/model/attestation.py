"""A site's signed statement about one image: the in-toto Statement v1 layout.

``attestations/<attester>/<image-uuid>.json`` holds, in canonical JSON::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "<image-uuid>", "digest": {"sha512": "<hex>"}}],
     "predicateType": "urn:gitreg:predicate:test-result:v1",
     "predicate": {"attester": "<site>", "time": "YYYY-MM-DDTHH:MM:SSZ",
                   "kind": "boot-test", "result": "passed", "note": "..."}}

and ``<image-uuid>.json.sig`` a detached signature of exactly those bytes
(namespace ``gitreg-attestation``). Pure and strict like the other models:
bytes in, a frozen object or one ``InvalidDocumentError`` listing every
problem out. Unknown keys are refused: a statement says exactly one thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gitreg.errors import InvalidDocumentError, Problem
from gitreg.model import strictjson
from gitreg.model.dates import DATE_FORMAT, format_date, parse_date

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "urn:gitreg:predicate:test-result:v1"
RESULTS = ("passed", "failed")
# An attester's name is a path component (attestations/<name>/): no '@', '+' or dots first.
ATTESTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KIND_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_NOTE = 4096
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SHA512_RE = re.compile(r"[0-9a-f]{128}")
_TOP = ("_type", "subject", "predicateType", "predicate")
_PREDICATE = ("attester", "time", "kind", "result", "note")
_PREDICATE_REQUIRED = ("attester", "time", "kind", "result")


@dataclass(frozen=True)
class Attestation:
    """One parsed statement: who said what about which image, when."""

    image: str  # the subject's name: the image UUID
    sha512: str  # the subject's digest: the image's sl:checksum:sha512
    attester: str
    time: datetime
    kind: str
    result: str
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        predicate: dict[str, Any] = {"attester": self.attester, "time": format_date(self.time),
                                     "kind": self.kind, "result": self.result}
        if self.note is not None:
            predicate["note"] = self.note
        return {"_type": STATEMENT_TYPE,
                "subject": [{"name": self.image, "digest": {"sha512": self.sha512}}],
                "predicateType": PREDICATE_TYPE, "predicate": predicate}

    def canonical_bytes(self) -> bytes:
        """The bytes gitreg writes, and the attester signs."""
        return strictjson.canonical_dumps(self.to_dict())

    def summary(self) -> dict[str, Any]:
        """The JSON-ready record the catalogue and ``site available`` show."""
        return {"attester": self.attester, "result": self.result, "kind": self.kind,
                "time": format_date(self.time), "note": self.note}


def problems_of(doc: Any, source: str) -> list[Problem]:
    """Every problem of a parsed statement ``doc``, each with its JSON path."""
    found: list[Problem] = []

    def add(path: str, message: str) -> None:
        found.append(Problem(path, message, source))

    if not isinstance(doc, dict):
        add("", "must be an object (an in-toto Statement)")
        return found
    _fields(doc, "", _TOP, _TOP, add)
    for key, wanted in (("_type", STATEMENT_TYPE), ("predicateType", PREDICATE_TYPE)):
        if key in doc and doc[key] != wanted:
            add(key, f"must be {wanted!r}")
    subject = doc.get("subject")
    if "subject" in doc and not (isinstance(subject, list) and len(subject) == 1):
        add("subject", "must be an array of exactly one object (the image)")
    elif (entry := _object(subject, 0, "subject[0]", add)) is not None:
        _fields(entry, "subject[0]", ("name", "digest"), ("name", "digest"), add)
        if "name" in entry and not _matches(_UUID_RE, entry["name"]):
            add("subject[0].name", "must be the image UUID (lower-case)")
        digest = _object(entry, "digest", "subject[0].digest", add)
        if digest is not None:
            _fields(digest, "subject[0].digest", ("sha512",), ("sha512",), add)
            if "sha512" in digest and not _matches(_SHA512_RE, digest["sha512"]):
                add("subject[0].digest.sha512", "must be 128 lower-case hex digits")
    predicate = _object(doc, "predicate", "predicate", add)
    if predicate is not None:
        _check_predicate(predicate, add)
    return found


def _object(container: Any, key: str | int, path: str, add: Any) -> dict[str, Any] | None:
    """``container[key]`` if it is an object; a problem if it is something else.

    None when it is absent (``_fields`` reports a missing key) or not an object.
    """
    if isinstance(container, dict):
        if key not in container:
            return None
        value = container[key]
    elif isinstance(container, list) and isinstance(key, int) and key < len(container):
        value = container[key]
    else:
        return None
    if isinstance(value, dict):
        return value
    add(path, "must be an object")
    return None


def _matches(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _check_predicate(predicate: dict[str, Any], add: Any) -> None:
    _fields(predicate, "predicate", _PREDICATE, _PREDICATE_REQUIRED, add)
    for name in _PREDICATE:
        if name in predicate and not isinstance(predicate[name], str):
            add(f"predicate.{name}", "must be a string")
    if isinstance(predicate.get("time"), str):
        try:
            parse_date(predicate["time"])
        except ValueError as exc:
            add("predicate.time", f"{exc} (expected {DATE_FORMAT})")
    if isinstance(predicate.get("kind"), str) and not KIND_RE.fullmatch(predicate["kind"]):
        add("predicate.kind", "must be a short lower-case word such as boot-test "
                              "(letters, digits, ._-)")
    if isinstance(predicate.get("result"), str) and predicate["result"] not in RESULTS:
        add("predicate.result", f"must be one of {', '.join(RESULTS)}")
    if isinstance(predicate.get("note"), str) and len(predicate["note"]) > MAX_NOTE:
        add("predicate.note", f"longer than {MAX_NOTE} characters")


def _fields(obj: dict[str, Any], path: str, allowed: tuple[str, ...],
            required: tuple[str, ...], add: Any) -> None:
    for key in obj:
        if key not in allowed:
            add(strictjson.json_path(path, key), f"unknown key (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in obj:
            add(strictjson.json_path(path, key), "missing")


def parse_attestation(data: bytes, *, source: str,
                      max_size: int = strictjson.DEFAULT_MAX_SIZE) -> Attestation:
    """Parse a statement strictly; every problem in one ``InvalidDocumentError``."""
    doc = strictjson.loads(data, source=source, max_size=max_size)
    found = problems_of(doc, source)
    if found:
        raise InvalidDocumentError(strictjson.capped(found), source=source)
    subject, predicate = doc["subject"][0], doc["predicate"]
    return Attestation(image=subject["name"], sha512=subject["digest"]["sha512"],
                       attester=predicate["attester"], time=parse_date(predicate["time"]),
                       kind=predicate["kind"], result=predicate["result"],
                       note=predicate.get("note"))
