"""What a web build keeps of each list, so that the next build skips lists that did not change.

A list's *unit* is everything the catalogue makes from it: its pages (path
and input hash), its rows of the search index (the JSON and the HTML of
each, and a light row for the series pages) and its line in the index's
list table. A unit is reused when its inputs are equal to those it was made
from: the record's digest (the reader keeps it, a hash of the whole record),
the list's and each image's status at the build's reference time, the
attestations about its images, each image's rank in its series and the
registry's name. Units are kept in ``OUT/.gitreg-web.cache`` (marshal: plain
data, loaded without running code; written with the build, ``staging``).
"""

from __future__ import annotations

import marshal
import secrets
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from gitreg.catalogue.search import _row, image_newness, image_order
from gitreg.catalogue.status import expired_attesters, image_status, list_status

CACHE = ".gitreg-web.cache"
DELTA = ".gitreg-web.cache-delta"
DIRECTORIES = ("lists", "api/lists", "images")  # where a unit's pages are
_FORMAT = 2
DELTA_MIN = 64  # units a delta may hold whatever the size of the base
Ref = tuple[int, str, int]  # registry index, list id, image position


def _header() -> tuple[str, int, str]:
    from gitreg.catalogue.web.build import TEMPLATE_VERSION

    return (f"gitreg-web-{TEMPLATE_VERSION}", _FORMAT, sys.version.split()[0])


@dataclass
class Kept:
    """The units of the last build: a base file and the changes since (``DELTA``).

    Rewriting all 10,000 units (75 MB) after one change was a fifth of a
    rebuild, so a build writes only the units that differ from the base,
    until they are a tenth of it.
    """

    base: dict[str, dict[str, Any]] = field(default_factory=dict)
    base_id: str = ""
    units: dict[str, dict[str, Any]] = field(default_factory=dict)


def _read(path: Path) -> Any:
    try:
        # Our own file in the output directory; loading runs no code.
        header, found = marshal.loads(path.read_bytes())  # noqa: S302
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return found if header == _header() else None


def load(out: Path) -> Kept:
    """The units of the last build (none if unreadable or of another format)."""
    base = _read(out / CACHE)
    if not (isinstance(base, tuple) and len(base) == 2 and isinstance(base[1], dict)):
        return Kept()
    kept = Kept(base=base[1], base_id=str(base[0]), units=dict(base[1]))
    delta = _read(out / DELTA)
    if isinstance(delta, tuple) and len(delta) == 3 and delta[0] == kept.base_id:
        kept.units.update(delta[1])
        for key in delta[2]:
            kept.units.pop(key, None)
    return kept


def save(kept: Kept, made: dict[str, dict[str, Any]]) -> tuple[dict[str, bytes], list[str]]:
    """The cache files to write for the units of this build, and those to remove."""
    changed = {key: unit for key, unit in made.items() if kept.base.get(key) is not unit}
    gone = [key for key in kept.base if key not in made]
    if kept.base_id and len(changed) + len(gone) <= max(DELTA_MIN, len(made) // 10):
        return {DELTA: marshal.dumps((_header(), (kept.base_id, changed, gone)))}, []
    return {CACHE: marshal.dumps((_header(), (secrets.token_hex(8), made)))}, [DELTA]


def series_ranks(registries: Sequence[dict[str, Any]]) -> dict[Ref, int]:
    """Each image's rank in its series, oldest 0 (``search.newness``, ties in index order)."""
    entries = []
    for index, registry in enumerate(registries):
        for record in registry["lists"].values():
            for position, image in enumerate(record["images"]):
                if image["series"] is None:
                    continue
                entries.append((image_order(image), image["series"],
                                image_newness(record, image),
                                (index, record["id"], position)))
    entries.sort(key=itemgetter(0))
    by_series: dict[str, list[Any]] = defaultdict(list)
    for entry in entries:
        by_series[entry[1]].append(entry)
    ranks: dict[Ref, int] = {}
    for members in by_series.values():
        members.sort(key=itemgetter(2))
        for rank, entry in enumerate(members):
            ranks[entry[3]] = rank
    return ranks


def shared_pages(registries: Sequence[dict[str, Any]]) -> set[str]:
    """The keys of units with a page another unit makes too (always made again, in order).

    An image moved from one list to another has a page from both (the
    later list's is the page); a list in two registries has two.
    """
    ids = [i for registry in registries for record in registry["lists"].values()
           for i in (f"lists/{record['id']}", *(image["id"] for image in record["images"]),
                     *(gone["id"] for gone in record["revoked"]))]
    if len(set(ids)) == len(ids):
        return set()  # the usual case, found without a key per page
    owners: dict[str, list[str]] = defaultdict(list)
    for index, registry in enumerate(registries):
        for record in registry["lists"].values():
            key = _key(index, registry, record["id"])
            owners[f"lists/{record['id']}"].append(key)
            for image in record["images"]:
                owners[image["id"]].append(key)
            for gone in record["revoked"]:
                owners[gone["id"]].append(key)
    return {key for keys in owners.values() if len(keys) > 1 for key in keys}


def _key(index: int, registry: dict[str, Any], list_id: str) -> str:
    return f"{index}/{registry['registry']}/{list_id}"


def inputs(index: int, registry: dict[str, Any], record: dict[str, Any], now: str,
           ranks: dict[Ref, int]) -> tuple[str, tuple[Any, ...]]:
    """The unit's key and everything its pages and rows are made from."""
    from gitreg.catalogue.reader import record_digest

    state = list_status(registry, record, now)
    found = registry.get("attestations", {})
    list_id = record["id"]
    images = tuple((image_status(registry, state, image, now), found.get(image["id"]),
                    ranks.get((index, list_id, position)))
                   for position, image in enumerate(record["images"]))
    revoked = tuple(found.get(gone["id"]) for gone in record["revoked"])
    head = (registry["registry"], registry["name"], registry["policy_expires"])
    gone = tuple(sorted(expired_attesters(registry, now))) if found else ()
    return (_key(index, registry, list_id),
            (record.get("digest") or record_digest(record), state, head, images, revoked,
             gone))


def full_row(registry: dict[str, Any], record: dict[str, Any], image: dict[str, Any],
             state: tuple[str, str], rank: int | None, *, now: str) -> dict[str, Any]:
    """The row ``gitreg search`` gives, with ``series_rank`` for an image of a series."""
    row = _row(registry, record, image, state, keys=True, now=now)
    if rank is not None:
        row["series_rank"] = rank
    return row


def row_entry(row: dict[str, Any], index_json: str, html: str, token: str,
              ref: list[Any]) -> list[Any]:
    """``[sort key, index JSON, index HTML, light row]`` of one image row."""
    light = {k: row[k] for k in ("image", "title", "version", "list", "list_title", "status",
                                 "reason", "uri", "series", "list_created")}
    light.update(rank=row.get("series_rank"), token=token, ref=ref)
    return [(row["title"] or "", row["version"] or "", row["image"]), index_json, html, light]


def row_of(registries: Sequence[dict[str, Any]], light: dict[str, Any],
           now: str) -> dict[str, Any]:
    """The full row a light row stands for."""
    index, list_id, position = light["ref"]
    registry = registries[index]
    record = registry["lists"][list_id]
    return full_row(registry, record, record["images"][position],
                    (light["status"], light["reason"]), light["rank"], now=now)
