"""A search over records read without their keys filters exactly as over the full records.

``gitreg search`` loads the cached records without the verbatim key maps of
lists and images unless a filter names a key no column holds; a filter on a
lifted key (``sl:arch``) then reads the column, or the value ``lifted_odd``
kept where the column would answer otherwise. Seeded (the seed is printed;
``GITREG_TEST_SEED`` replays one).
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

from gitreg.catalogue.search import LIFTED, lifted_odd, needs_keys, parse_filters, search
from tests.seeds import seeded

_VALUES: list[Any] = ["x86_64", "1024", 1024, None, True, 1, "", "a", "A", "9.4"]
_TEXTS = [v for v in _VALUES if v is None or isinstance(v, str)]
_IMAGE_COLUMNS = [c for c in LIFTED.values() if c not in ("image", "list_created")]


def _registry(rng: random.Random) -> dict[str, Any]:
    lists = {}
    for number in range(rng.randrange(1, 5)):
        images = []
        for position in range(rng.randrange(1, 4)):
            # Columns as the reader makes them: text or None (the size a number).
            image: dict[str, Any] = {column: rng.choice(_TEXTS) for column in _IMAGE_COLUMNS}
            image["size"] = rng.choice([1024, 1, None])
            image.update(id=f"image-{number}-{position}", expires=None)
            image["keys"] = {key: rng.choice(_VALUES) for key in [*LIFTED, "ad:appid"]
                             if rng.random() < 0.5}
            for key, column in LIFTED.items():  # often the reader's case: the same value
                if column in image and rng.random() < 0.4:
                    image["keys"][key] = image[column]
            images.append(image)
        list_id = f"list-{number}"
        lists[list_id] = {
            "id": list_id, "title": "t", "description": "d", "version": "1",
            "created": rng.choice(["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"]),
            "expires": "2999-01-01T00:00:00Z", "images": images,
            "signature": {"error": "unsigned"},  # status is not what this test is about
            "keys": {key: rng.choice(_VALUES) for key in LIFTED if rng.random() < 0.3}}
    return {"registry": "r", "name": "r", "lists": lists, "attestations": {}}


def _lean(registry: dict[str, Any]) -> dict[str, Any]:
    """The records as ``load_cached(keys=False)`` gives them."""
    lean = copy.deepcopy(registry)
    lean["lifted_odd"] = lifted_odd(registry)
    for record in lean["lists"].values():
        del record["keys"]
        for image in record["images"]:
            del image["keys"]
    return lean


def test_lifted_key_filters_need_no_keys() -> None:
    seed, rng = seeded()
    for _ in range(300):
        registry = _registry(rng)
        lean = _lean(registry)
        key = rng.choice(list(LIFTED))
        value = rng.choice(["x86_64", "1024", "True", "true", "1", "", "a", "9.4"])
        case = [rng.choice([f"{key}={value}", f"{key}~{value or '^$'}", f"{key}~."])]
        filters = parse_filters(case)
        assert not needs_keys(filters)
        full = search([registry], filters, "2026-06-01T00:00:00Z", valid_only=False,
                      keys=False)
        without = search([lean], filters, "2026-06-01T00:00:00Z", valid_only=False,
                         keys=False)
        assert without == full, f"seed {seed}: {case}"


def test_other_keys_need_the_keys() -> None:
    assert needs_keys(parse_filters(["ad:appid=1"]))
    assert not needs_keys(parse_filters(["sl:arch=x86_64", "series=a", "word"]))


def test_the_cache_keeps_lifted_odd_across_incremental_reads(tmp_path: Path) -> None:
    from gitreg.catalogue.sources import load_cached, read_snapshot, snapshots
    from tests.catalogue_world import standard_world

    catalogue, ids = standard_world(tmp_path / "r.git")
    read_snapshot(snapshots([catalogue.sim.path])[0])
    catalogue.publish(ids["ubuntu"], "Ubuntu", catalogue.images[ids["ubuntu"]])
    [snapshot] = snapshots([catalogue.sim.path])
    records = read_snapshot(snapshot)  # incremental: from the cached state
    lean = load_cached(snapshot, history=False, keys=False)
    assert lean is not None and lean["head"] == snapshot.head
    assert lean["lifted_odd"] == lifted_odd(records)


def test_lifted_odd_looks_again_only_at_changed_lists() -> None:
    rng = random.Random(7)
    registry = _registry(rng)
    while not lifted_odd(registry):
        registry = _registry(rng)
    previous = {**registry, "lifted_odd": lifted_odd(registry)}
    changed = copy.deepcopy(registry)
    [first, *_rest] = changed["lists"]
    changed["lists"] = {**registry["lists"], first: changed["lists"][first]}
    for image in changed["lists"][first]["images"]:
        image["keys"] = {}
    assert lifted_odd(changed, previous) == lifted_odd(changed)
    stale = {**previous, "lifted_odd": {k: {"x": {"dc:title": 1}} for k in registry["lists"]}}
    kept = lifted_odd(changed, stale)  # unchanged lists are taken as they were
    assert all(kept[k] == {"x": {"dc:title": 1}} for k in registry["lists"] if k != first)
