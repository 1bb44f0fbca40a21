"""A rebuild of the web catalogue follows the change, and is the full build's byte for byte.

Seeded properties (the seed is printed; ``GITREG_TEST_SEED`` replays one):
random changes to the records of a real registry (titles, versions and so
series ranks, images and lists added or removed, expiry, signatures,
attestations, the registry's name), then an incremental rebuild must give
exactly the files a build into an empty directory gives. A rebuild
interrupted at any write leaves the old catalogue or (once committed) the
new one.
"""

from __future__ import annotations

import copy
import random
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gitreg.catalogue.reader import record_digest
from gitreg.catalogue.sources import read_snapshot, snapshots
from gitreg.catalogue.status import stamp
from gitreg.catalogue.web import staging, units
from gitreg.catalogue.web.build import build_site
from tests.catalogue_world import standard_world
from tests.seeds import seeded

_INTERNAL = (units.CACHE, units.DELTA, staging.STAGING, staging.JOURNAL)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    catalogue, ids = standard_world(tmp_path_factory.mktemp("incremental") / "r.git")
    # A third alma version without the first image: a revoked image and its page.
    kept = catalogue.images[ids["alma"]][1:]
    catalogue.publish(ids["alma"], "AlmaLinux", [*kept, catalogue.image(
        "AlmaLinux 9 base", version="9.5", series="alma9", seed="alma-9.5")])
    [snapshot] = snapshots([catalogue.sim.path])
    return read_snapshot(snapshot), stamp(catalogue.sim.clock)


def _seed() -> int:
    return seeded()[0]


def _tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.relative_to(out).parts[0] not in _INTERNAL}


def _touch(record: dict[str, Any], rng: random.Random) -> None:
    record["blob"] = f"{rng.getrandbits(160):040x}"
    record["digest"] = record_digest(record)


def _new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _copy_list(registry: dict[str, Any], rng: random.Random) -> None:
    record = copy.deepcopy(rng.choice(list(registry["lists"].values())))
    record["id"] = _new_id(rng)
    record["title"] = rng.choice(["AlmaLinux", "Zeta", "Ubuntu", "A"])
    for image in record["images"]:
        image["id"] = _new_id(rng)
        image["keys"] = {**image["keys"], "dc:identifier": image["id"]}
        image["version"] = rng.choice([image["version"], "9.10", "1", None])
    _touch(record, rng)
    registry["lists"][record["id"]] = record


def _mutate(registry: dict[str, Any], now: str, rng: random.Random) -> str:
    lists = registry["lists"]
    record = rng.choice(list(lists.values()))
    images = record["images"]
    kind = rng.choice(["title", "version", "series", "drop-image", "add-image", "drop-list",
                       "add-list", "expire", "signature", "attest", "registry-name",
                       "list-title", "revoke"])
    if kind == "title" and images:
        rng.choice(images)["title"] = rng.choice(["AlmaLinux 9 base", "B", "Ω image", "<b>"])
    elif kind == "version" and images:
        rng.choice(images)["version"] = rng.choice(["9.4", "9.10", "10", "9.4-rc1", None])
    elif kind == "series" and images:
        rng.choice(images)["series"] = rng.choice(["alma9", "ubuntu-lts", "new one", None])
    elif kind == "drop-image" and images:
        images.pop(rng.randrange(len(images)))
    elif kind == "add-image" and images:
        image = copy.deepcopy(rng.choice(images))
        image["id"] = _new_id(rng)
        images.append(image)
    elif kind == "drop-list" and len(lists) > 1:
        del lists[record["id"]]
        return kind
    elif kind == "add-list":
        _copy_list(registry, rng)
        return kind
    elif kind == "expire":
        record["expires"] = rng.choice(["2000-01-01T00:00:00Z", now, "2999-01-01T00:00:00Z"])
    elif kind == "signature":
        record["signature"] = rng.choice([{"error": "the list has no signature"},
                                          {"key": "SHA256:x", "endorser": "mallory",
                                           "endorser_expires": None}])
    elif kind == "attest":
        pool = [i["id"] for r in lists.values() for i in r["images"]] + ["gone"]
        image_id = rng.choice(pool)
        registry["attestations"][image_id] = [
            {"image": image_id, "attester": rng.choice(["site-a", "site-b"]),
             "result": rng.choice(["passed", "failed"]), "kind": "boot-test",
             "time": now, "note": ""}] if rng.random() < 0.8 else []
        return kind
    elif kind == "registry-name":
        registry["name"] = rng.choice(["Catalogue test registry", "Renamed", "R & D"])
        return kind
    elif kind == "list-title":
        record["title"] = rng.choice(["AlmaLinux", "Ubuntu", "Zeta", "<i>"])
    elif kind == "revoke" and images:
        gone = images.pop(0)
        record["revoked"] = [*record["revoked"], {
            "id": gone["id"], "title": gone["title"], "version": record["version"],
            "commit": "0" * 40, "time": now}]
    _touch(record, rng)
    return kind


def _world(base: tuple[dict[str, Any], str], rng: random.Random) -> dict[str, Any]:
    registry = copy.deepcopy(base[0])
    registry["attestations"] = dict(registry.get("attestations", {}))
    for _ in range(rng.randrange(2, 7)):
        _copy_list(registry, rng)
    return registry


def _seeded(base: tuple[dict[str, Any], str]) -> tuple[int, random.Random, str]:
    """The seed (printed), its generator and the base's reference time."""
    seed = _seed()
    return seed, random.Random(seed), base[1]


def _built_worlds(base: tuple[dict[str, Any], str], rng: random.Random, where: Path,
                  trials: int) -> Iterator[tuple[int, dict[str, Any], Path]]:
    """``trials`` random registries, each with its catalogue built once in ``where<n>``."""
    for trial in range(trials):
        registry = _world(base, rng)
        out = where.parent / f"{where.name}{trial}"
        build_site([registry], out, now=base[1])
        yield trial, registry, out


def _fresh_head(registry: dict[str, Any], rng: random.Random) -> None:
    # The trust core's verdict is kept per registry state: a changed state is a new head.
    registry["head"] = f"{rng.getrandbits(160):040x}"


@pytest.mark.parametrize("delta_min", [units.DELTA_MIN, 0])
def test_incremental_build_equals_a_full_build(base: tuple[dict[str, Any], str],
                                               tmp_path: Path, delta_min: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With a delta of the kept units after each build, and with a new base each time."""
    monkeypatch.setattr(units, "DELTA_MIN", delta_min)
    seed, rng, now = _seeded(base)
    for trial, registry, out in _built_worlds(base, rng, tmp_path / "inc", 12):
        for step in range(3):
            kinds = [_mutate(registry, now, rng) for _ in range(rng.randrange(1, 4))]
            _fresh_head(registry, rng)
            report = build_site([registry], out, now=now)
            full = tmp_path / f"full{trial}-{step}"
            build_site([registry], full, now=now)
            assert _tree(out) == _tree(full), f"seed {seed}, trial {trial}, step {step}: {kinds}"
            assert report.unchanged > 0, f"seed {seed}: nothing was kept"
            shutil.rmtree(full)


def test_a_later_rebuild_differs_from_a_full_build_only_in_its_stamps(
        base: tuple[dict[str, Any], str], tmp_path: Path) -> None:
    """Pages left as they were say when they were rendered; all else is the full build's."""
    seed = _seed()
    rng = random.Random(seed)
    first = base[1]
    later = stamp_after(first, rng.choice([60, 3 * 86400, 400 * 86400]))
    registry = _world(base, rng)
    out = tmp_path / "inc"
    build_site([registry], out, now=first)
    # Data holding the build's own time would be taken for a stamp: a second earlier.
    kinds = [_mutate(registry, stamp_after(first, -1), rng) for _ in range(2)]
    _fresh_head(registry, rng)
    build_site([registry], out, now=later)
    full = tmp_path / "full"
    build_site([registry], full, now=later)
    incremental, fresh = _tree(out), _tree(full)
    assert incremental.keys() == fresh.keys(), f"seed {seed}: {kinds}"
    for path, data in fresh.items():
        assert incremental[path].replace(first.encode(), later.encode()) == data, \
            f"seed {seed}: {path} ({kinds})"


def stamp_after(moment: str, seconds: int) -> str:
    from datetime import timedelta

    from gitreg.model.dates import parse_date

    return stamp(parse_date(moment) + timedelta(seconds=seconds))


def test_one_change_renders_only_that_lists_pages(base: tuple[dict[str, Any], str],
                                                  tmp_path: Path) -> None:
    registry = copy.deepcopy(base[0])
    now = base[1]
    out = tmp_path / "site"
    first = build_site([registry], out, now=now)
    ubuntu = next(r for r in registry["lists"].values() if r["title"] == "Ubuntu")
    ubuntu["description"] = "changed"
    ubuntu["blob"] = "1" * 40
    ubuntu["digest"] = record_digest(ubuntu)
    second = build_site([registry], out, now=now)
    image = ubuntu["images"][0]
    # latest.json carries the list's description with the image; the series page does not.
    assert sorted(second.rendered) == sorted([
        f"lists/{ubuntu['id']}.html", f"api/lists/{ubuntu['id']}.json",
        f"images/{image['id']}.html", f"api/series/{image['series']}/latest.json",
        "api/index.json", "index.html"])
    assert second.unchanged == len(first.rendered) - len(second.rendered)


class _InterruptedError(Exception):
    pass


def _interrupting(monkeypatch: pytest.MonkeyPatch, target: Any, name: str,
                  after: int) -> None:
    original: Callable[..., Any] = getattr(target, name)
    calls = [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] > after:
            raise _InterruptedError
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapped)


@pytest.mark.parametrize("where", ["staging", "commit"])
def test_an_interrupted_rebuild_leaves_the_old_or_the_new_catalogue(
        base: tuple[dict[str, Any], str], tmp_path: Path, where: str) -> None:
    seed, rng, now = _seeded(base)
    for trial, registry, out in _built_worlds(base, rng, tmp_path / "site", 6):
        old = _tree(out)
        for _ in range(3):
            _mutate(registry, now, rng)
        _fresh_head(registry, rng)
        reference = tmp_path / f"ref{trial}"
        shutil.copytree(out, reference)
        build_site([registry], reference, now=now)
        new = _tree(reference)
        assert new != old
        with pytest.MonkeyPatch.context() as patch:
            if where == "staging":  # killed while writing the new files aside
                _interrupting(patch, staging.Staging, "write", rng.randrange(12))
            else:  # killed while the committed journal is applied
                _interrupting(patch, Path, "replace", rng.randrange(1, 12))
            try:
                build_site([registry], out, now=now)
                interrupted = False
            except _InterruptedError:
                interrupted = True
        committed = (out / staging.JOURNAL).exists()
        if interrupted and not committed:
            assert _tree(out) == old, f"seed {seed}, trial {trial}: a mix before the commit"
        staging.recover(out)
        expected = old if interrupted and not committed else new
        assert _tree(out) == expected, f"seed {seed}, trial {trial}"
        assert not (out / staging.STAGING).exists()
        build_site([registry], out, now=now)
        assert _tree(out) == new, f"seed {seed}, trial {trial}: the next build"


def test_a_page_two_lists_made_is_made_again_when_the_later_list_goes(
        base: tuple[dict[str, Any], str], tmp_path: Path) -> None:
    """Both lists name a revoked image; the later one's page must not outlive it."""
    registry = copy.deepcopy(base[0])
    now = base[1]
    first = next(iter(registry["lists"].values()))
    first["revoked"] = [*first["revoked"], {
        "id": "0b5a9a3e-1111-4c1e-9d9e-000000000001", "title": "Old", "version": "1",
        "commit": "0" * 40, "time": now}]
    _touch(first, random.Random(1))
    later = copy.deepcopy(first)
    later["id"] = "0b5a9a3e-2222-4c1e-9d9e-000000000002"
    later["title"] = "Zeta"
    later["images"] = []
    _touch(later, random.Random(2))
    registry["lists"][later["id"]] = later
    out = tmp_path / "inc"
    build_site([registry], out, now=now)
    del registry["lists"][later["id"]]
    _fresh_head(registry, random.Random(3))
    build_site([registry], out, now=now)
    full = tmp_path / "full"
    build_site([registry], full, now=now)
    assert _tree(out) == _tree(full)
