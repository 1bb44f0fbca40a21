"""The HEPiX imagelist: strict parsing, validation, canonical form, mutation.

The parsed dict is the truth and is kept verbatim, unknown keys included, so
that a list written by AppDB or vmcaster round-trips byte-stably. ``Image``
and ``Imagelist`` are thin typed views over it. Mutations validate a modified
copy and only then replace the dict: a rejected change leaves the list as it
was. No I/O here.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from gitreg.errors import ExpiredError, InvalidDocumentError, Problem, UsageError
from gitreg.model.dates import format_date, parse_date
from gitreg.model.strictjson import (
    DEFAULT_MAX_SIZE,
    canonical_dumps,
    capped,
    json_path,
    loads,
)

WRAPPER = "hv:imagelist"
ENDORSER = "hv:endorser"
ENDORSER_X509 = "hv:x509"
IMAGES = "hv:images"
IMAGE_WRAPPER = "hv:image"

CREATED = "dc:date:created"
EXPIRES = "dc:date:expires"
IDENTIFIER = "dc:identifier"
TITLE = "dc:title"
DESCRIPTION = "dc:description"
SOURCE = "dc:source"
VERSION = "hv:version"
URI = "hv:uri"
SIZE = "hv:size"
SHA512 = "sl:checksum:sha512"

LIST_KEYS: tuple[str, ...] = (
    CREATED, EXPIRES, IDENTIFIER, DESCRIPTION, TITLE, SOURCE, VERSION, URI, ENDORSER, IMAGES,
)
ENDORSER_KEYS: tuple[str, ...] = ("hv:dn", "hv:ca", "hv:email", "dc:creator")
IMAGE_KEYS: tuple[str, ...] = (
    IDENTIFIER, TITLE, DESCRIPTION, URI, SIZE, SHA512, "sl:arch", "sl:os",
    "sl:osversion", "sl:comments", "hv:hypervisor", VERSION,
)

SERIES = "gitreg:series"
DESCRIPTION_MD = "gitreg:description_md"
RAM_MINIMUM = "hv:ram_minimum"
CORE_MINIMUM = "hv:core_minimum"

# Optional keys gitreg understands (and so checks the type of); any other key,
# including every ``ad:*`` key AppDB adds, is kept verbatim and not checked.
OPTIONAL_LIST_KEYS: tuple[str, ...] = (DESCRIPTION_MD,)
OPTIONAL_IMAGE_KEYS: tuple[str, ...] = (
    "hv:format", RAM_MINIMUM, CORE_MINIMUM, "sl:osname", EXPIRES, SERIES, DESCRIPTION_MD,
)
APPDB_PREFIX = "ad:"
GITREG_PREFIX = "gitreg:"

_LIST_STRING_KEYS = (IDENTIFIER, DESCRIPTION, TITLE, SOURCE, VERSION, URI)
_IMAGE_STRING_KEYS = tuple(k for k in IMAGE_KEYS if k != SIZE)
_OPTIONAL_IMAGE_STRING_KEYS = ("hv:format", "sl:osname", SERIES, DESCRIPTION_MD)
_OPTIONAL_IMAGE_COUNT_KEYS = (RAM_MINIMUM, CORE_MINIMUM)

# Image UUIDs name files in a site's cache (cache/<uuid>), so only the UUID
# form is accepted: nothing like "../x" can get through.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SHA512 = re.compile(r"[0-9a-f]{128}")
_DIGITS = re.compile(r"[0-9]+")
# Glance and SQLite store sizes as signed 64-bit integers.
MAX_SIZE_VALUE = (1 << 63) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else type(value).__name__


def _count(value: Any) -> int | None:
    """A non-negative integer given as a JSON integer or a decimal string, else None."""
    if isinstance(value, bool):
        return None  # True is an int to Python, not to JSON
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value) and len(value) <= 20:
        number = int(value)
    else:
        return None
    return number if 0 <= number <= MAX_SIZE_VALUE else None


def _is_dn(value: str) -> bool:
    return value.startswith("/") and "=" in value


class _Checks:
    """Collects every problem of a document instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def required(self, obj: Mapping[str, Any], keys: Iterable[str], path: str) -> None:
        for key in keys:
            if key not in obj:
                self.add(json_path(path, key), "missing required key")

    def strings(self, obj: Mapping[str, Any], keys: Iterable[str], path: str) -> None:
        for key in keys:
            if key in obj and not isinstance(obj[key], str):
                self.add(json_path(path, key),
                         f"expected a string, got {_json_type(obj[key])}")

    def date(self, obj: Mapping[str, Any], key: str, path: str) -> None:
        if key not in obj:
            return
        value = obj[key]
        where = json_path(path, key)
        if not isinstance(value, str):
            self.add(where, f"expected a date string, got {_json_type(value)}")
            return
        try:
            parse_date(value)
        except ValueError as exc:
            self.add(where, str(exc))

    def uuid(self, obj: Mapping[str, Any], path: str) -> None:
        value = obj.get(IDENTIFIER)
        if isinstance(value, str) and not _UUID.fullmatch(value):
            self.add(json_path(path, IDENTIFIER),
                     f"{value!r} is not a UUID (8-4-4-4-12 hex digits)")

    def count(self, obj: Mapping[str, Any], key: str, path: str) -> None:
        if key in obj and _count(obj[key]) is None:
            self.add(json_path(path, key),
                     f"{_short(obj[key])} is not a non-negative integer (number or decimal "
                     f"string) up to {MAX_SIZE_VALUE}")

    def endorser(self, body: Mapping[str, Any], path: str) -> None:
        if ENDORSER not in body:
            return
        where = json_path(path, ENDORSER)
        endorser = body[ENDORSER]
        if not isinstance(endorser, dict):
            self.add(where, f"expected an object, got {_json_type(endorser)}")
            return
        if ENDORSER_X509 not in endorser:
            self.add(json_path(where, ENDORSER_X509), "missing required key")
            return
        x509 = endorser[ENDORSER_X509]
        where = json_path(where, ENDORSER_X509)
        if not isinstance(x509, dict):
            self.add(where, f"expected an object, got {_json_type(x509)}")
            return
        self.required(x509, ENDORSER_KEYS, where)
        self.strings(x509, ENDORSER_KEYS, where)
        for key in ("hv:dn", "hv:ca"):
            value = x509.get(key)
            if isinstance(value, str) and not _is_dn(value):
                self.add(json_path(where, key),
                         f"{value!r} is not a DN in OpenSSL slash form (/C=../O=../CN=..)")

    def image(self, image: Mapping[str, Any], path: str) -> None:
        self.required(image, IMAGE_KEYS, path)
        self.strings(image, _IMAGE_STRING_KEYS, path)
        self.strings(image, _OPTIONAL_IMAGE_STRING_KEYS, path)
        self.uuid(image, path)
        self.count(image, SIZE, path)
        for key in _OPTIONAL_IMAGE_COUNT_KEYS:
            self.count(image, key, path)
        self.date(image, EXPIRES, path)
        checksum = image.get(SHA512)
        if isinstance(checksum, str) and not _SHA512.fullmatch(checksum):
            self.add(json_path(path, SHA512), "not 128 lowercase hex digits")

    def images(self, body: Mapping[str, Any], path: str) -> None:
        if IMAGES not in body:
            return
        where = json_path(path, IMAGES)
        entries = body[IMAGES]
        if not isinstance(entries, list):
            self.add(where, f"expected an array, got {_json_type(entries)}")
            return
        first_seen: dict[str, str] = {}
        for index, entry in enumerate(entries):
            entry_path = json_path(where, index)
            if not isinstance(entry, dict) or not isinstance(entry.get(IMAGE_WRAPPER), dict):
                self.add(entry_path, f'expected an object {{"{IMAGE_WRAPPER}": {{...}}}}')
                continue
            image_path = json_path(entry_path, IMAGE_WRAPPER)
            image = entry[IMAGE_WRAPPER]
            self.image(image, image_path)
            uuid = image.get(IDENTIFIER)
            if isinstance(uuid, str):
                other = first_seen.setdefault(uuid.lower(), entry_path)
                if other != entry_path:
                    self.add(json_path(image_path, IDENTIFIER),
                             f"duplicate image UUID {uuid} (also at {other})")

    def imagelist(self, body: Any, path: str) -> None:
        if not isinstance(body, dict):
            self.add(path, f"expected an object, got {_json_type(body)}")
            return
        self.required(body, LIST_KEYS, path)
        self.strings(body, _LIST_STRING_KEYS, path)
        self.strings(body, OPTIONAL_LIST_KEYS, path)
        self.date(body, CREATED, path)
        self.date(body, EXPIRES, path)
        self.uuid(body, path)
        self.endorser(body, path)
        self.images(body, path)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


class Image:
    """One ``hv:image`` entry: typed reads over its dict (kept verbatim)."""

    def __init__(self, entry: dict[str, Any]) -> None:
        # Not copied: an Imagelist never mutates a dict it has validated,
        # it replaces the whole document instead.
        self._d = entry

    def __repr__(self) -> str:
        return f"Image({self.identifier!r}, {self.title!r}, version={self.version!r})"

    def get(self, key: str, default: Any = None) -> Any:
        """A copy of any key's value, e.g. an ``ad:*`` key."""
        return copy.deepcopy(self._d.get(key, default))

    def keys(self) -> list[str]:
        return list(self._d)

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the image's dict (the content of ``hv:image``)."""
        return copy.deepcopy(self._d)

    def _opt(self, key: str) -> str | None:
        value = self._d.get(key)
        return value if isinstance(value, str) else None

    @property
    def identifier(self) -> str:
        return str(self._d[IDENTIFIER])

    @property
    def title(self) -> str:
        return str(self._d[TITLE])

    @property
    def description(self) -> str:
        return str(self._d[DESCRIPTION])

    @property
    def uri(self) -> str:
        return str(self._d[URI])

    @property
    def size(self) -> int:
        size = _count(self._d[SIZE])
        if size is None:  # only reachable if someone bypassed validation
            raise InvalidDocumentError([Problem(SIZE, "not a non-negative integer")])
        return size

    @property
    def sha512(self) -> str:
        return str(self._d[SHA512])

    @property
    def arch(self) -> str:
        return str(self._d["sl:arch"])

    @property
    def os(self) -> str:
        return str(self._d["sl:os"])

    @property
    def osversion(self) -> str:
        return str(self._d["sl:osversion"])

    @property
    def osname(self) -> str | None:
        return self._opt("sl:osname")

    @property
    def format(self) -> str | None:
        return self._opt("hv:format")

    @property
    def hypervisor(self) -> str:
        return str(self._d["hv:hypervisor"])

    @property
    def version(self) -> str:
        return str(self._d[VERSION])

    @property
    def comments(self) -> str:
        return str(self._d["sl:comments"])

    @property
    def ram_minimum(self) -> int | None:
        return _count(self._d[RAM_MINIMUM]) if RAM_MINIMUM in self._d else None

    @property
    def core_minimum(self) -> int | None:
        return _count(self._d[CORE_MINIMUM]) if CORE_MINIMUM in self._d else None

    @property
    def expires(self) -> datetime | None:
        """The image's own ``dc:date:expires`` (AppDB), if it has one."""
        value = self._opt(EXPIRES)
        return parse_date(value) if value is not None else None

    @property
    def series(self) -> str | None:
        return self._opt(SERIES)

    @property
    def description_md(self) -> str | None:
        return self._opt(DESCRIPTION_MD)

    def expired(self, now: datetime) -> bool:
        """Whether the image's own expiry has passed at ``now`` (lists expire separately)."""
        expires = self.expires
        return expires is not None and expires <= now


class Imagelist:
    """A validated HEPiX imagelist. Build one with ``parse_imagelist``,
    ``Imagelist.from_dict`` or ``Imagelist.new``, never from an unchecked dict."""

    def __init__(self, root: dict[str, Any], *, source: str = "", warnings: Iterable[str] = (),
                 legacy: bool = False, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._root = root
        self.source = source
        self.warnings: list[str] = list(warnings)
        self.legacy = legacy
        self.max_size = max_size

    def __repr__(self) -> str:
        return (f"Imagelist({self.identifier!r}, {self.title!r}, version={self.version!r}, "
                f"images={len(self._entries)})")

    # --- construction -------------------------------------------------------

    @classmethod
    def from_value(cls, value: Any, *, source: str = "",
                   max_size: int = DEFAULT_MAX_SIZE) -> Imagelist:
        """Validate a value from ``strictjson.loads``; raise every problem at once."""
        checks = _Checks()
        warnings: list[str] = []
        legacy = False
        if not isinstance(value, dict):
            checks.add("", f"an imagelist must be a JSON object, got {_json_type(value)}")
        elif WRAPPER in value:
            checks.imagelist(value[WRAPPER], WRAPPER)
        elif any(key in value for key in LIST_KEYS):
            # vmcatcher still reads lists without the wrapper; gitreg writes it.
            legacy = True
            warnings.append(f"{source or 'imagelist'}: legacy form without the "
                            f'"{WRAPPER}" wrapper; gitreg writes it wrapped')
            checks.imagelist(value, "")
            value = {WRAPPER: value}
        else:
            checks.add(WRAPPER, "missing required key")
        if checks.problems:
            problems = [Problem(p.path, p.message, source) for p in checks.problems]
            raise InvalidDocumentError(capped(problems), source=source)
        return cls(value, source=source, warnings=warnings, legacy=legacy, max_size=max_size)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "",
                  max_size: int = DEFAULT_MAX_SIZE) -> Imagelist:
        """Validate a dict built in code, through the same strict parser as a file.

        Going through the canonical bytes guarantees the result is plain JSON
        (no NaN, tuples, non-string keys) and round-trips.
        """
        try:
            raw = canonical_dumps(data)
        except (TypeError, ValueError, RecursionError) as exc:
            # UnicodeEncodeError (a lone surrogate) is a ValueError.
            raise InvalidDocumentError([Problem("", f"not representable as JSON: {exc}", source)],
                                       source=source) from None
        return parse_imagelist(raw, source=source, max_size=max_size)

    @classmethod
    def new(cls, identifier: str, title: str, description: str, endorser: Mapping[str, Any],
            *, uri: str = "", source: str = "", created: datetime | None = None,
            expires: datetime | None = None) -> Imagelist:
        """A valid list with no images and version "0".

        ``endorser`` is either ``{"hv:x509": {...}}`` or the inner x509 object.
        ``source`` is the list's ``dc:source``. ``created``/``expires`` default to
        the epoch: the caller sets real ones before publishing.
        """
        x509 = dict(endorser)
        wrapped = x509 if ENDORSER_X509 in x509 else {ENDORSER_X509: x509}
        body: dict[str, Any] = {
            IDENTIFIER: identifier, TITLE: title, DESCRIPTION: description,
            SOURCE: source, URI: uri, VERSION: "0",
            CREATED: format_date(created or _EPOCH), EXPIRES: format_date(expires or _EPOCH),
            ENDORSER: wrapped, IMAGES: [],
        }
        return cls.from_dict({WRAPPER: body})

    # --- reads --------------------------------------------------------------

    @property
    def _body(self) -> dict[str, Any]:
        body: dict[str, Any] = self._root[WRAPPER]
        return body

    @property
    def _entries(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self._body[IMAGES]
        return entries

    @property
    def _x509(self) -> dict[str, Any]:
        x509: dict[str, Any] = self._body[ENDORSER][ENDORSER_X509]
        return x509

    @property
    def _prefix(self) -> str:
        # Problems name paths as they are in the file the list came from.
        return "" if self.legacy else WRAPPER

    @property
    def _label(self) -> str:
        return self.source or f"imagelist {self.identifier}"

    def get(self, key: str, default: Any = None) -> Any:
        """A copy of any list-level key's value, e.g. ``ad:vo``."""
        return copy.deepcopy(self._body.get(key, default))

    def keys(self) -> list[str]:
        return list(self._body)

    @property
    def identifier(self) -> str:
        return str(self._body[IDENTIFIER])

    @property
    def title(self) -> str:
        return str(self._body[TITLE])

    @property
    def description(self) -> str:
        return str(self._body[DESCRIPTION])

    @property
    def dc_source(self) -> str:
        return str(self._body[SOURCE])

    @property
    def version(self) -> str:
        return str(self._body[VERSION])

    @property
    def uri(self) -> str:
        return str(self._body[URI])

    @property
    def created(self) -> datetime:
        return parse_date(self._body[CREATED])

    @property
    def expires(self) -> datetime:
        return parse_date(self._body[EXPIRES])

    @property
    def description_md(self) -> str | None:
        value = self._body.get(DESCRIPTION_MD)
        return value if isinstance(value, str) else None

    @property
    def endorser(self) -> dict[str, Any]:
        """A copy of the ``hv:x509`` endorser object."""
        return copy.deepcopy(self._x509)

    @property
    def endorser_dn(self) -> str:
        return str(self._x509["hv:dn"])

    @property
    def endorser_ca(self) -> str:
        return str(self._x509["hv:ca"])

    @property
    def endorser_email(self) -> str:
        return str(self._x509["hv:email"])

    @property
    def endorser_creator(self) -> str:
        return str(self._x509["dc:creator"])

    @property
    def images(self) -> list[Image]:
        return [Image(entry[IMAGE_WRAPPER]) for entry in self._entries]

    @property
    def image_ids(self) -> list[str]:
        return [str(entry[IMAGE_WRAPPER][IDENTIFIER]) for entry in self._entries]

    def _index(self, uuid: str) -> int | None:
        wanted = uuid.lower()
        for index, entry in enumerate(self._entries):
            if str(entry[IMAGE_WRAPPER][IDENTIFIER]).lower() == wanted:
                return index
        return None

    def _require_index(self, uuid: str) -> int:
        index = self._index(uuid)
        if index is None:
            raise UsageError(f"{self._label}: imagelist {self.identifier} has no image {uuid}")
        return index

    def has_image(self, uuid: str) -> bool:
        return self._index(uuid) is not None

    def image(self, uuid: str) -> Image:
        """The image with UUID ``uuid`` (case-insensitive); UsageError if absent."""
        return Image(self._entries[self._require_index(uuid)][IMAGE_WRAPPER])

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the whole document, wrapper included."""
        return copy.deepcopy(self._root)

    def canonical_bytes(self) -> bytes:
        """The canonical form: what gitreg stores and what a ``.sig`` signs."""
        return canonical_dumps(self._root)

    # --- time ---------------------------------------------------------------

    def _time_checks(self, now: datetime) -> list[tuple[bool, Problem]]:
        if now.tzinfo is None:
            raise ValueError("the reference time must be timezone-aware")
        created, expires = self.created, self.expires
        at = format_date(now)
        found: list[tuple[bool, Problem]] = []
        if created > now:
            found.append((False, Problem(
                json_path(self._prefix, CREATED),
                f"created in the future: {format_date(created)} is after the reference "
                f"time {at}", self.source)))
        if expires < created:
            found.append((False, Problem(
                json_path(self._prefix, EXPIRES),
                f"expires ({format_date(expires)}) before it was created "
                f"({format_date(created)})", self.source)))
        if expires <= now:
            found.append((True, Problem(
                json_path(self._prefix, EXPIRES),
                f"expired at {format_date(expires)} (reference time {at})", self.source)))
        return found

    def time_problems(self, now: datetime) -> list[Problem]:
        """Date problems against the reference time ``now``: future creation,
        expiry before creation, expiry. The caller decides what each means."""
        return [problem for _, problem in self._time_checks(now)]

    def check_times(self, now: datetime) -> None:
        """Raise ExpiredError if expired at ``now``; InvalidDocumentError for other date
        problems (they make the list inconsistent, whatever the time)."""
        found = self._time_checks(now)
        if any(not is_expiry for is_expiry, _ in found):
            raise InvalidDocumentError([p for _, p in found], source=self.source)
        if found:
            raise ExpiredError(
                f"{self._label}: imagelist {self.identifier} expired at "
                f"{format_date(self.expires)} (reference time {format_date(now)})")

    # --- mutation (endorser workflow) ----------------------------------------

    def _replace(self, root: dict[str, Any]) -> None:
        checked = Imagelist.from_dict(root, source=self.source, max_size=self.max_size)
        self._root = checked._root

    def set_key(self, key: str, value: Any) -> None:
        """Set a list-level key (validated; unchanged on error)."""
        root = self.to_dict()
        root[WRAPPER][key] = copy.deepcopy(value)
        self._replace(root)

    def remove_key(self, key: str) -> None:
        """Remove a list-level key (a required one is refused by validation)."""
        root = self.to_dict()
        if key not in root[WRAPPER]:
            raise UsageError(f"{self._label}: imagelist {self.identifier} has no key {key!r}")
        del root[WRAPPER][key]
        self._replace(root)

    def add_image(self, image: Mapping[str, Any]) -> None:
        """Append an image (its ``hv:image`` content, or the wrapped entry).

        A duplicate UUID or any invalid key raises InvalidDocumentError.
        """
        entry = dict(image) if IMAGE_WRAPPER in image else {IMAGE_WRAPPER: dict(image)}
        root = self.to_dict()
        root[WRAPPER][IMAGES].append(copy.deepcopy(entry))
        self._replace(root)

    def remove_image(self, uuid: str) -> None:
        """Remove the image ``uuid``; UsageError naming the list if absent."""
        index = self._require_index(uuid)
        root = self.to_dict()
        del root[WRAPPER][IMAGES][index]
        self._replace(root)

    def set_image_key(self, uuid: str, key: str, value: Any) -> None:
        """Set one key of image ``uuid`` (validated; unchanged on error)."""
        index = self._require_index(uuid)
        root = self.to_dict()
        root[WRAPPER][IMAGES][index][IMAGE_WRAPPER][key] = copy.deepcopy(value)
        self._replace(root)

    def remove_image_key(self, uuid: str, key: str) -> None:
        """Remove one key of image ``uuid`` (a required one is refused by validation)."""
        index = self._require_index(uuid)
        root = self.to_dict()
        image = root[WRAPPER][IMAGES][index][IMAGE_WRAPPER]
        if key not in image:
            raise UsageError(f"{self._label}: image {uuid} has no key {key!r}")
        del image[key]
        self._replace(root)


def parse_imagelist(data: bytes, *, source: str = "",
                    max_size: int = DEFAULT_MAX_SIZE) -> Imagelist:
    """Strictly parse and validate an imagelist; every problem in one InvalidDocumentError."""
    return Imagelist.from_value(loads(data, source=source, max_size=max_size),
                                source=source, max_size=max_size)
