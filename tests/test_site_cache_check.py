"""cache/ is listed only when something else may have touched it, and what a
listing finds (a stray file, a cached image whose file is gone) is acted on.

The unit tests drive ``check_cache`` on a real state database and a real
cache directory; the sync tests run whole in-process syncs against a
simulator registry served by its local path, with images from the real
image server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitreg.site import cache as cache_module
from gitreg.site.cache import DirStamp, SiteCache
from gitreg.site.cache_check import MAX_STAMP_AGE, check_cache
from gitreg.site.config import load_config
from gitreg.site.state import SiteState
from gitreg.site.sync import sync
from tests.fixtures.image_server import ImageServer
from tests.registry_simulator import new_id
from tests.test_site_list_index import _image, _registry, _site

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
IMAGES = [new_id(f"cache-check/{n}") for n in range(3)]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[SiteState, SiteCache]]:
    """A state holding IMAGES as cached, and a cache/ holding exactly their files."""
    cache = SiteCache(tmp_path / "state")
    cache.ensure_dirs()
    with SiteState.open(tmp_path / "state" / "state.sqlite") as state:
        for image in IMAGES:
            body = image.encode()
            cache.cache_path(image).write_bytes(body)
            state.upsert_image(image, registry="r", list_uuid=new_id(), list_version="1",
                               sha512=hashlib.sha512(body).hexdigest(), size=len(body),
                               state="cached", path=str(cache.cache_path(image)), now=NOW)
        yield state, cache


def _recorded(state: SiteState, cache: SiteCache, when: datetime = NOW) -> DirStamp:
    """What a sync records at its end: the stamp of cache/ as it left it."""
    stamp = cache.stamp()
    assert stamp is not None
    state.record_cache_stamp(stamp.to_text(), now=when)
    _next_tick()
    return stamp


def _next_tick() -> None:
    """Let the file system's clock move on: without fine-grained timestamps (Linux
    before 6.13) a change in the same tick as a stamp keeps it (docs/site.md)."""
    time.sleep(0.03)


def test_an_unchanged_cache_is_not_listed(site: tuple[SiteState, SiteCache]) -> None:
    state, cache = site
    assert check_cache(state, cache, now=NOW).listed  # nothing recorded yet
    stamp = _recorded(state, cache)

    found = check_cache(state, SiteCache(cache.state_dir), now=NOW + timedelta(hours=1))

    assert not found.listed and found.strays == [] and found.missing == frozenset()
    assert DirStamp.from_text(stamp.to_text()) == stamp


def test_a_stray_file_is_found_although_the_stamp_was_recorded(
        site: tuple[SiteState, SiteCache]) -> None:
    state, cache = site
    _recorded(state, cache)
    (cache.dirs.cache / "dropped-by-hand.img").write_bytes(b"not verified")

    found = check_cache(state, cache, now=NOW)

    assert found.listed and [(s.name, s.action) for s in found.strays] == [
        ("dropped-by-hand.img", "deleted")]
    assert sorted(p.name for p in cache.dirs.cache.iterdir()) == sorted(IMAGES)
    assert found.missing == frozenset()


def test_a_missing_cache_file_is_found_although_the_stamp_was_recorded(
        site: tuple[SiteState, SiteCache]) -> None:
    state, cache = site
    _recorded(state, cache)
    cache.cache_path(IMAGES[1]).unlink()

    found = check_cache(state, cache, now=NOW)

    assert found.listed and found.missing == frozenset({IMAGES[1]}) and found.strays == []


def test_a_stray_in_place_of_a_missing_file_is_found_though_the_count_is_the_same(
        site: tuple[SiteState, SiteCache]) -> None:
    state, cache = site
    _recorded(state, cache)
    # One file renamed: as many entries as cached records, but not the same ones.
    cache.cache_path(IMAGES[0]).rename(cache.dirs.cache / "renamed.img")

    found = check_cache(state, cache, now=NOW)

    assert found.listed and found.missing == frozenset({IMAGES[0]})
    assert [s.name for s in found.strays] == ["renamed.img"]
    assert not (cache.dirs.cache / "renamed.img").exists()


def test_a_cache_file_replaced_by_a_symlink_is_a_stray_and_missing(
        site: tuple[SiteState, SiteCache], tmp_path: Path) -> None:
    state, cache = site
    _recorded(state, cache)
    target = cache.cache_path(IMAGES[2])
    (tmp_path / "elsewhere").write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(tmp_path / "elsewhere")

    found = check_cache(state, cache, now=NOW)

    assert found.missing == frozenset({IMAGES[2]})
    assert [(s.name, s.action) for s in found.strays] == [(IMAGES[2], "deleted")]
    assert not os.path.lexists(target)


@pytest.mark.parametrize("change", ["record written", "pending record", "stamp too old",
                                    "clock set back", "directory replaced"])
def test_the_stamp_is_not_trusted_when_anything_else_changed(
        site: tuple[SiteState, SiteCache], change: str) -> None:
    state, cache = site
    _recorded(state, cache)
    now = NOW
    if change == "record written":  # by another command, or by hand
        state.mark(IMAGES[0], "cached", "touched", now=NOW)
    elif change == "pending record":  # what a sync killed mid-install leaves
        state.mark(IMAGES[0], "pending", now=NOW)
        _recorded(state, cache)
    elif change == "stamp too old":
        now = NOW + MAX_STAMP_AGE
    elif change == "clock set back":
        now = NOW - timedelta(seconds=1)
    else:  # the same names, in a directory made afresh
        moved = cache.state_dir / "cache.old"
        cache.dirs.cache.rename(moved)
        cache.dirs.cache.mkdir()
        for entry in moved.iterdir():
            entry.rename(cache.dirs.cache / entry.name)

    assert check_cache(state, cache, now=now).listed


def test_only_the_caches_own_moves_keep_it_watched(site: tuple[SiteState, SiteCache]) -> None:
    state, cache = site
    stamp = _recorded(state, cache)
    assert not check_cache(state, cache, now=NOW).listed
    assert cache.watched() == stamp

    cache.retire(IMAGES[0], NOW)  # its own move: still known
    assert cache.watched() is not None and cache.watched() != stamp
    _next_tick()
    (cache.dirs.cache / "meanwhile.img").write_bytes(b"someone else")
    assert cache.watched() is None  # a change that was not its own

    cache.partial_path(IMAGES[0]).write_bytes(b"new version")
    cache.install(IMAGES[0])  # its own moves do not make it known again
    assert cache.watched() is None


# --- whole syncs ------------------------------------------------------------------


def test_syncs_list_cache_only_when_it_may_have_changed_behind_them(
        tmp_path: Path, image_server: ImageServer, monkeypatch: pytest.MonkeyPatch) -> None:
    listings: list[int] = []
    real = cache_module.SiteCache.entries

    def counted(self: SiteCache) -> dict[str, cache_module.EntryKind]:
        listings.append(1)
        return real(self)

    monkeypatch.setattr(cache_module.SiteCache, "entries", counted)
    registry = _registry(tmp_path / "registry.git")
    lists = {new_id(): [_image(image_server, f"c{n}i{i}") for i in range(2)] for n in range(3)}
    registry.publish(lists)
    config = _site(tmp_path, registry)
    cache_dir = tmp_path / "state" / "cache"
    assert len(sync(load_config(config)).downloaded) == 6
    first_listings = len(listings)

    changed = sorted(lists)[1]
    old = str(lists[changed][0]["dc:identifier"])
    lists[changed] = [_image(image_server, "replacement"), lists[changed][1]]
    registry.publish({changed: lists[changed]})
    second = sync(load_config(config))
    assert second.planning == "changes" and len(listings) == first_listings  # not listed
    assert [r["uuid"] for r in second.retired] == [old]

    # A stray file and a missing one, made while no sync ran: both found.
    gone = str(lists[sorted(lists)[0]][1]["dc:identifier"])
    (cache_dir / gone).unlink()
    (cache_dir / "operator-copy.img").write_bytes(b"not verified")
    third = sync(load_config(config))

    assert len(listings) > first_listings
    assert [s for s in third.stray if "operator-copy.img" in s]
    assert third.planning == "full" and "cache/ lacks 1" in third.planning_reason
    assert third.downloaded == [gone]
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(
        str(i["dc:identifier"]) for images in lists.values() for i in images)

    # Nothing else changed since: the next sync trusts the stamp again.
    listed = len(listings)
    fourth = sync(load_config(config))
    assert fourth.planning == "changes" and fourth.downloaded == [] and fourth.stray == []
    assert len(listings) == listed


def test_a_file_dropped_in_cache_during_a_sync_is_found_by_the_next(
        tmp_path: Path, image_server: ImageServer, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = _registry(tmp_path / "registry.git")
    list_uuid = new_id()
    registry.publish({list_uuid: [_image(image_server, "first")]})
    config = _site(tmp_path, registry)
    sync(load_config(config))
    cache_dir = tmp_path / "state" / "cache"
    real = cache_module.SiteCache.install

    def install_and_intrude(self: SiteCache, image_uuid: str) -> Path:
        path = real(self, image_uuid)
        # Another process writes while the sync goes on, unseen by it.
        _next_tick()
        (cache_dir / "intruder.img").write_bytes(b"written during the sync")
        return path

    monkeypatch.setattr(cache_module.SiteCache, "install", install_and_intrude)
    registry.publish({list_uuid: [_image(image_server, "second")]})
    during = sync(load_config(config))
    monkeypatch.setattr(cache_module.SiteCache, "install", real)
    with SiteState.open(tmp_path / "state" / "state.sqlite") as state:
        assert state.cache_stamp() is None  # not recorded: the sync did not know cache/

    after = sync(load_config(config))

    assert during.stray == [] and [s for s in after.stray if "intruder.img" in s]
    assert not (cache_dir / "intruder.img").exists()
