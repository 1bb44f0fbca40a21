"""Search: filters (not a query language) over the images of catalogued registries.

One row per image of every current list version. Filters, all of which must
hold (the web catalogue's ``app.js`` implements the same grammar on the JSON
index, and a test checks both give the same rows):

- ``key=value``: exact match on a HEPiX, ``ad:`` or ``gitreg:`` key of the
  image or of its list (``sl:arch=x86_64``); keys without a colon name a
  catalogue field: ``series``, ``endorser``, ``registry``, ``list``,
  ``image``, ``status``;
- ``key~regex``: a case-insensitive regular-expression search in that value;
- a plain word: a case-insensitive substring of the title, description or
  OS of the image or its list.

``valid_only`` keeps images that are signed, current and not revoked at the
reference time; ``latest`` keeps one image per series: the newest by
``hv:version`` (numeric-aware), then by its list's creation date.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from gitreg.catalogue.status import VALID, expired_attesters, image_status, list_status
from gitreg.errors import UsageError
from gitreg.model.versions import version_key

FIELDS = ("series", "endorser", "registry", "list", "image", "status")
_FIELD_COLUMN = {"series": "series", "endorser": "endorser", "registry": "registry_name",
                 "list": "list", "image": "image", "status": "status"}
_WORD_COLUMNS = ("title", "description", "os", "osversion", "osname", "list_title",
                 "list_description")
_FILTER = re.compile(r"([A-Za-z0-9_.:-]+)([=~])(.*)", re.DOTALL)
# Metadata keys a row also carries as a column. The web index leaves a key
# out of a row's ``keys`` where the column holds the same value (a quarter of
# its size); a filter on such a key reads the column (``key_value``).
LIFTED = {"dc:identifier": "image", "dc:title": "title", "dc:description": "description",
          "hv:uri": "uri", "hv:size": "size", "sl:checksum:sha512": "sha512",
          "sl:arch": "arch", "sl:os": "os", "sl:osversion": "osversion",
          "sl:osname": "osname", "hv:version": "version", "hv:format": "format",
          "gitreg:series": "series", "dc:date:created": "list_created"}
_ABSENT = object()


def attestation_counts(registry: dict[str, Any], image_id: str,
                       now: str | None = None) -> dict[str, Any]:
    """How many attesters said passed / failed about an image, and who.

    ``now``: count only statements of attesters whose policy entry has not
    expired at that time (the registry's policy says).
    """
    found = registry.get("attestations", {}).get(image_id, [])
    if found and now is not None:
        gone = expired_attesters(registry, now)
        found = [a for a in found if a.get("attester") not in gone] if gone else found
    passed = [a for a in found if a.get("result") == "passed"]
    failed = [a for a in found if a.get("result") == "failed"]
    return {"passed": len(passed), "failed": len(failed),
            "by": [f"{a.get('attester')}: {a.get('result')} ({a.get('kind')}, {a.get('time')})"
                   for a in found]}


@dataclass(frozen=True)
class Filter:
    kind: str  # "equals", "regex" or "word"
    key: str
    value: str
    pattern: re.Pattern[str] | None = None

    def accepts(self, registry: dict[str, Any], record: dict[str, Any],
                image: dict[str, Any], state: tuple[str, str]) -> bool:
        """``matches`` on the row ``_row`` would make of this image, without making it."""
        if self.kind == "word":
            needle = self.value.lower()
            return any(needle in str(value or "").lower() for value in (
                image["title"], image["description"], image["os"], image["osversion"],
                image["osname"], record["title"], record["description"]))
        key = self.key
        if ":" in key:
            image_keys = image.get("keys")
            if image_keys is not None:
                value = image_keys.get(key, _ABSENT)
                if value is _ABSENT:
                    value = record["keys"].get(key, _ABSENT)
            else:  # records read without keys: a lifted key (``needs_keys``)
                odd = registry["lifted_odd"].get(record["id"])
                value = odd.get(image["id"], {}).get(key, _ABSENT) if odd else _ABSENT
            if value is _ABSENT:
                column = LIFTED.get(key)
                value = None if column is None else _column(record, image, column)
        elif key == "status":
            value = state[0]
        elif key == "endorser":
            value = record["signature"].get("endorser")
        elif key == "registry":
            value = registry["name"]
        elif key == "list":
            value = record["id"]
        elif key == "image":
            value = image["id"]
        else:
            value = image[key]  # series
        return self._holds(value)

    def matches(self, row: Mapping[str, Any]) -> bool:
        if self.kind == "word":
            needle = self.value.lower()
            return any(needle in str(row.get(c) or "").lower() for c in _WORD_COLUMNS)
        value = (key_value(row, self.key) if ":" in self.key
                 else row.get(_FIELD_COLUMN[self.key]))
        return self._holds(value)

    def _holds(self, value: Any) -> bool:
        """Whether a key's value passes this (equals or regex) filter; none never does."""
        if value is None:
            return False
        text = _text(value)
        if self.kind == "equals":
            return text == self.value
        assert self.pattern is not None
        return self.pattern.search(text) is not None


def needs_keys(filters: Iterable[Filter]) -> bool:
    """Whether ``filters`` read a key no column holds (records must have their keys)."""
    return any(":" in f.key and f.key not in LIFTED for f in filters)


def _column(record: dict[str, Any], image: dict[str, Any], column: str) -> Any:
    """Column ``column`` (a value of ``LIFTED``) of the row of ``image``."""
    if column == "list_created":
        return record["created"]
    return image["id"] if column == "image" else image[column]


def lifted_odd(registry: dict[str, Any], previous: dict[str, Any] | None = None
               ) -> dict[str, dict[str, dict[str, Any]]]:
    """List id -> image id -> the keys of ``LIFTED`` a filter reads otherwise than its column.

    A filter on such a key (``sl:arch``) reads the merged keys of list and
    image; it gives the same answer from the column when the value is absent,
    or is ``None`` exactly when the column is and has the same text. Where
    not (rare: a non-text value, a list-level key), the value is kept here,
    so a search reads no keys for them. ``previous``: earlier records with
    their ``lifted_odd``; lists whose record is the same object are not
    looked at again.
    """
    odd: dict[str, dict[str, dict[str, Any]]] = {}
    previous = previous or {}
    before: dict[str, Any] = previous.get("lifted_odd") or {}
    old_lists = previous.get("lists", {}) if "lifted_odd" in previous else {}
    for list_id, record in registry["lists"].items():
        if old_lists.get(list_id) is record:
            if list_id in before:
                odd[list_id] = before[list_id]
            continue
        list_keys = record["keys"]
        for image in record["images"]:
            found = {}
            for key, column in LIFTED.items():
                value = image["keys"].get(key, _ABSENT)
                if value is _ABSENT:
                    value = list_keys.get(key, _ABSENT)
                if value is _ABSENT:
                    continue
                have = _column(record, image, column)
                if (value is None) != (have is None) or (
                        value is not None and _text(value) != _text(have)):
                    found[key] = value
            if found:
                odd.setdefault(list_id, {})[image["id"]] = found
    return odd


def key_value(row: Mapping[str, Any], key: str) -> Any:
    """The value of metadata ``key`` for a row (``None`` if it has none)."""
    value = row["keys"].get(key, _ABSENT)
    if value is _ABSENT:
        # Absent from a full row's keys, the lifted column is None too.
        return row.get(LIFTED[key]) if key in LIFTED else None
    return value


def compact_keys(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row["keys"]`` without what its columns repeat; ``key_value`` reads the same.

    A key the row does not have but whose column holds a value is kept as
    ``None``, so that the column is not read in its place.
    """
    found = dict(row["keys"])
    for key, column in LIFTED.items():
        value = row[column]
        if key in found:
            kept = found[key]
            if type(kept) is type(value) and kept == value:
                del found[key]
        elif value is not None:
            found[key] = None
    return found


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_filters(arguments: Iterable[str]) -> list[Filter]:
    """Parse filter arguments; a bad one is a ``UsageError`` naming it."""
    filters: list[Filter] = []
    for argument in arguments:
        match = _FILTER.fullmatch(argument)
        if match is None:
            if not argument.strip():
                raise UsageError("an empty search word matches everything; leave it out")
            filters.append(Filter("word", "", argument))
            continue
        key, op, value = match.groups()
        if ":" not in key and key not in FIELDS:
            raise UsageError(f"filter {argument!r}: unknown field {key!r} (fields: "
                             f"{', '.join(FIELDS)}; metadata keys have a prefix, "
                             "e.g. sl:arch=x86_64)")
        if op == "=":
            filters.append(Filter("equals", key, value))
            continue
        try:
            pattern = re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise UsageError(f"filter {argument!r}: not a regular expression ({exc})") from None
        filters.append(Filter("regex", key, value, pattern))
    return filters


def _images(registries: Sequence[dict[str, Any]], now: str
            ) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any], tuple[str, str]]]:
    """Every image of every list as ``(registry, list record, image, (status, reason))``."""
    for registry in registries:
        for record in registry["lists"].values():
            list_state = list_status(registry, record, now)
            for image in record["images"]:
                yield registry, record, image, image_status(registry, list_state, image, now)


def _row(registry: dict[str, Any], record: dict[str, Any], image: dict[str, Any],
         state: tuple[str, str], *, keys: bool, now: str | None) -> dict[str, Any]:
    signature = record["signature"]
    row = {
        "registry": registry["registry"], "registry_name": registry["name"],
        "list": record["id"], "list_title": record["title"],
        "list_description": record["description"],
        "list_version": record["version"], "list_created": record["created"],
        "list_expires": record["expires"],
        "image": image["id"], "title": image["title"],
        "description": image["description"], "arch": image["arch"],
        "os": image["os"], "osversion": image["osversion"],
        "osname": image["osname"], "version": image["version"],
        "series": image["series"], "uri": image["uri"], "size": image["size"],
        "sha512": image["sha512"], "format": image["format"],
        "image_expires": image["expires"],
        "status": state[0], "reason": state[1],
        "endorser": signature.get("endorser"), "signed_by": signature.get("key"),
        "attestations": attestation_counts(registry, image["id"], now),
    }
    if keys:
        row["keys"] = {**record["keys"], **image["keys"]}
    return row


def _sort(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found.sort(key=lambda r: (r["title"] or "", r["version"] or "", r["image"]))
    return found


def rows(registries: Sequence[dict[str, Any]], now: str, *,
         keys: bool = True) -> list[dict[str, Any]]:
    """One row per image of every list, judged at ``now`` (``status.stamp``), sorted."""
    return _sort([_row(*found, keys=keys, now=now) for found in _images(registries, now)])


# Versions repeat across images and series (one key per distinct string).
_version_key = lru_cache(maxsize=1 << 16)(version_key)


def newness(row: dict[str, Any]) -> tuple[Any, ...]:
    """A sort key of rows by ``newer``: computed once per row, not per comparison."""
    return (_version_key(str(row["version"] or "")), row["list_created"], row["image"])


def image_newness(record: dict[str, Any], image: dict[str, Any]) -> tuple[Any, ...]:
    """``newness`` of the row ``image`` of list ``record`` would make, without making it."""
    return (_version_key(str(image["version"] or "")), record["created"], image["id"])


def image_order(image: dict[str, Any]) -> tuple[str, str, str]:
    """``_sort``'s key (the rows' order) of the row ``image`` would make."""
    return (image["title"] or "", image["version"] or "", image["id"])


def newer(a: dict[str, Any], b: dict[str, Any]) -> int:
    """-1, 0 or 1 as row ``a`` is older than, the same as or newer than ``b``:
    by ``hv:version`` (numeric-aware), then its list's creation date, then image id."""
    ka, kb = newness(a), newness(b)
    return (ka > kb) - (ka < kb)


def latest(found: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per series (the newest); rows without a series are kept as they are."""
    best: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
    for row in found:
        series = row["series"]
        if series is None:
            continue
        key = newness(row)
        current = best.get(series)
        if current is None or key > current[0]:
            best[series] = (key, row)
    chosen = {id(row) for _key, row in best.values()}
    return [row for row in found if row["series"] is None or id(row) in chosen]


def search(registries: Sequence[dict[str, Any]], filters: Sequence[Filter], now: str, *,
           valid_only: bool = True, latest_only: bool = False,
           keys: bool = True) -> list[dict[str, Any]]:
    """The rows that pass every filter (and validity), optionally one per series.

    Filters read the records directly (``Filter.accepts``, the same verdict as
    ``Filter.matches`` on the row), and rows are made only for the images
    finally kept: a search over 30,000 images that keeps 2,000 makes 2,000
    rows. ``keys=False``: rows without the merged ``keys`` (a command prints
    none).
    """
    found: list[_Match] = []
    for registry in registries:
        for record in registry["lists"].values():
            list_state = list_status(registry, record, now)
            if valid_only and list_state[0] != VALID:
                continue  # its images have the list's status
            for image in record["images"]:
                state = image_status(registry, list_state, image, now)
                if valid_only and state[0] != VALID:
                    continue
                if all(f.accepts(registry, record, image, state) for f in filters):
                    found.append((registry, record, image, state))
    found.sort(key=_match_order)
    if latest_only:
        found = _latest_matches(found)
    return [_row(*match, keys=keys, now=now) for match in found]


_Match = tuple[dict[str, Any], dict[str, Any], dict[str, Any], tuple[str, str]]


def _match_order(match: _Match) -> tuple[str, str, str]:
    return image_order(match[2])


def _latest_matches(found: list[_Match]) -> list[_Match]:
    """``latest`` on matches (in row order), before any row is made."""
    best: dict[str, tuple[tuple[Any, ...], int]] = {}
    for position, (_registry, record, image, _state) in enumerate(found):
        series = image["series"]
        if series is None:
            continue
        key = image_newness(record, image)
        current = best.get(series)
        if current is None or key > current[0]:
            best[series] = (key, position)
    chosen = {position for _key, position in best.values()}
    return [m for position, m in enumerate(found)
            if m[2]["series"] is None or position in chosen]


def newest_valid(registries: Sequence[dict[str, Any]], series: str,
                 now: str) -> dict[str, Any] | None:
    """The newest valid image of ``series``: where ``/series/<name>/latest`` points."""
    candidates = [row for row in rows(registries, now)
                  if row["series"] == series and row["status"] == VALID]
    if not candidates:
        return None
    return max(candidates, key=newness)
