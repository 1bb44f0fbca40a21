"""The cache directories: vmcatcher's layout, atomic moves, idempotent retirement."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from gitreg.errors import GitregError, RejectedError
from gitreg.site.cache import SiteCache, expiry_stamp

IMAGE = "c0482bc2-bf41-5d49-aaaa-a750174a186b"
OTHER = "662b0e71-3e21-bbbb-b6a1-cc2f51319fa7"
NOW = datetime(2024, 1, 31, 23, 59, 58, tzinfo=UTC)


@pytest.fixture
def cache(tmp_path: Path) -> SiteCache:
    site = SiteCache(tmp_path / "state")
    site.ensure_dirs()
    return site


def put(path: Path, data: bytes = b"image bytes") -> Path:
    path.write_bytes(data)
    return path


def listing(cache: SiteCache) -> dict[str, list[str]]:
    return {d.name: sorted(p.name for p in d.iterdir()) for d in cache.dirs}


def test_layout_is_vmcatchers(tmp_path: Path) -> None:
    site = SiteCache(tmp_path / "state")
    site.ensure_dirs()
    assert site.dirs.cache == tmp_path / "state" / "cache"
    assert site.dirs.download == tmp_path / "state" / "partial"
    assert site.dirs.expire == tmp_path / "state" / "expired"
    assert all(d.is_dir() for d in site.dirs)
    assert site.cache_path(IMAGE) == site.dirs.cache / IMAGE
    assert site.partial_path(IMAGE) == site.dirs.download / IMAGE
    site.ensure_dirs()  # idempotent


def test_paths_are_absolute_even_from_a_relative_state_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    site = SiteCache(Path("rel"))
    assert site.dirs.cache == tmp_path / "rel" / "cache"


@pytest.mark.parametrize("bad", ["", "..", "../etc/passwd", "a/b", ".hidden", "-rf",
                                 "a..b", "x" * 129, "nul\x00", "new\nline"])
def test_unsafe_image_names_are_rejected(cache: SiteCache, bad: str) -> None:
    before = listing(cache)
    for call in (cache.cache_path, cache.partial_path, cache.has, cache.discard_partial):
        with pytest.raises(RejectedError, match="cannot be used as a cache file name"):
            call(bad)
    with pytest.raises(RejectedError):
        cache.retire(bad, NOW)
    with pytest.raises(RejectedError):
        cache.install(bad)
    assert listing(cache) == before


def test_install_moves_a_verified_partial_into_the_cache(cache: SiteCache) -> None:
    put(cache.partial_path(IMAGE), b"verified")
    assert not cache.has(IMAGE)
    target = cache.install(IMAGE)
    assert target == cache.cache_path(IMAGE)
    assert target.read_bytes() == b"verified"
    assert cache.has(IMAGE)
    assert not cache.partial_path(IMAGE).exists()


def test_install_without_a_partial_fails_and_changes_nothing(cache: SiteCache) -> None:
    put(cache.cache_path(IMAGE), b"old")
    with pytest.raises(GitregError, match=f"cannot install image {IMAGE}"):
        cache.install(IMAGE)
    assert cache.cache_path(IMAGE).read_bytes() == b"old"


def test_retire_moves_to_expired_with_a_utc_stamp(cache: SiteCache) -> None:
    put(cache.cache_path(IMAGE), b"old image")
    target = cache.retire(IMAGE, NOW)
    assert target == cache.dirs.expire / f"{IMAGE}.20240131T235958Z"
    assert target.read_bytes() == b"old image"
    assert not cache.has(IMAGE)
    assert not cache.cache_path(IMAGE).exists()
    # The stamp is UTC whatever zone "now" is given in.
    east = NOW.astimezone(timezone(timedelta(hours=2)))
    assert east.hour == 1
    assert expiry_stamp(east) == "20240131T235958Z"


def test_retire_is_idempotent(cache: SiteCache) -> None:
    put(cache.cache_path(IMAGE))
    first = cache.retire(IMAGE, NOW)
    # Rerun after a crash between the rename and the state commit.
    again = cache.retire(IMAGE, NOW + timedelta(minutes=5))
    assert first is not None
    assert again == first
    assert listing(cache) == {"cache": [], "partial": [], "expired": [first.name]}


def test_retire_of_an_image_never_cached_returns_none(cache: SiteCache) -> None:
    assert cache.retire(IMAGE, NOW) is None
    assert listing(cache) == {"cache": [], "partial": [], "expired": []}


def test_retiring_twice_in_one_second_keeps_both(cache: SiteCache) -> None:
    put(cache.cache_path(IMAGE), b"first")
    first = cache.retire(IMAGE, NOW)
    put(cache.cache_path(IMAGE), b"second")
    second = cache.retire(IMAGE, NOW)
    assert first is not None and second is not None
    assert first != second
    assert first.read_bytes() == b"first"
    assert second.read_bytes() == b"second"
    assert second.name == f"{IMAGE}.20240131T235958Z-2"
    assert cache.expired_files(IMAGE) == [first, second]
    assert cache.retire(IMAGE, NOW) == second  # the newest one


def test_expired_files_are_ordered_and_per_image(cache: SiteCache) -> None:
    later = NOW + timedelta(days=1)
    for when in (later, NOW):
        put(cache.cache_path(IMAGE))
        cache.retire(IMAGE, when)
    put(cache.cache_path(OTHER))
    cache.retire(OTHER, NOW)
    put(cache.dirs.expire / f"{IMAGE}.not-a-stamp")
    assert [p.name for p in cache.expired_files(IMAGE)] == [
        f"{IMAGE}.20240131T235958Z", f"{IMAGE}.20240201T235958Z"]


def test_retire_needs_an_aware_time(cache: SiteCache) -> None:
    put(cache.cache_path(IMAGE))
    with pytest.raises(ValueError, match="aware"):
        cache.retire(IMAGE, datetime(2024, 1, 1))  # naive: the point of the test
    assert cache.has(IMAGE)


def _install_and_retire_forever(state_dir: str, payload: bytes) -> None:
    # Child process: cycle an image through partial/ -> cache/ -> expired/
    # until killed.
    site = SiteCache(Path(state_dir))
    tick = 0
    while True:
        site.partial_path(IMAGE).write_bytes(payload)
        site.install(IMAGE)
        tick += 1
        site.retire(IMAGE, NOW + timedelta(seconds=tick))


@pytest.mark.parametrize("delay", [0.0, 0.013, 0.05, 0.11])
def test_sigkill_never_leaves_a_partial_file_in_cache_or_expired(
        cache: SiteCache, delay: float) -> None:
    payload = os.urandom(256 * 1024)
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_install_and_retire_forever, args=(str(cache.state_dir), payload))
    child.start()
    # Kill it at some point after it got going (a loaded machine starts slowly).
    deadline = time.monotonic() + 10
    while not any(cache.dirs.expire.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    os.kill(child.pid or 0, signal.SIGKILL)
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    files = [*cache.dirs.cache.iterdir(), *cache.dirs.expire.iterdir()]
    assert files, "the child did not get to move anything"
    # partial/ may hold a half-written download; cache/ and expired/ never do.
    assert all(f.read_bytes() == payload for f in files)


def test_discard_partial(cache: SiteCache) -> None:
    put(cache.partial_path(IMAGE))
    assert cache.discard_partial(IMAGE) is True
    assert not cache.partial_path(IMAGE).exists()
    assert cache.discard_partial(IMAGE) is False


def test_clean_stray_keeps_only_verified_files(cache: SiteCache) -> None:
    put(cache.cache_path(IMAGE), b"verified")
    put(cache.cache_path(OTHER), b"installed, then crashed before the state commit")
    put(cache.dirs.cache / "cache.index", b"{}")           # vmcatcher's index file
    stray_with_partial = "11111111-2222-3333-4444-555555555555"
    put(cache.dirs.cache / stray_with_partial, b"stale")
    put(cache.partial_path(stray_with_partial), b"half a download")
    (cache.dirs.cache / "operator-dir").mkdir()
    (cache.dirs.cache / "link").symlink_to("/etc/passwd")
    put(cache.partial_path("resume-me"), b"keep me")

    known = {IMAGE, OTHER, stray_with_partial}
    strays = {s.name: s for s in cache.clean_stray({IMAGE}, known)}

    assert set(strays) == {OTHER, "cache.index", stray_with_partial, "operator-dir", "link"}
    assert strays[OTHER].action == "demoted"
    assert strays[OTHER].path == cache.partial_path(OTHER)
    assert cache.partial_path(OTHER).read_bytes() == \
        b"installed, then crashed before the state commit"
    assert strays["cache.index"].action == "deleted"
    assert strays[stray_with_partial].action == "deleted"
    assert cache.partial_path(stray_with_partial).read_bytes() == b"half a download"
    assert strays["link"].action == "deleted"
    assert Path("/etc/passwd").exists()
    assert strays["operator-dir"].action == "left"
    assert sorted(p.name for p in cache.dirs.cache.iterdir()) == [IMAGE, "operator-dir"]
    assert cache.cache_path(IMAGE).read_bytes() == b"verified"
    assert cache.partial_path("resume-me").read_bytes() == b"keep me"
    # A second pass finds nothing new to do.
    assert [s.action for s in cache.clean_stray({IMAGE}, known)] == ["left"]


def test_clean_stray_deletes_files_of_images_the_state_does_not_know(cache: SiteCache) -> None:
    put(cache.cache_path(OTHER), b"dropped in by hand")
    strays = cache.clean_stray(verified=set())
    assert [(s.name, s.action) for s in strays] == [(OTHER, "deleted")]
    assert listing(cache) == {"cache": [], "partial": [], "expired": []}


def test_clean_stray_removes_a_symlink_even_under_a_verified_name(cache: SiteCache,
                                                                   tmp_path: Path) -> None:
    target = put(tmp_path / "elsewhere")
    cache.cache_path(IMAGE).symlink_to(target)
    assert not cache.has(IMAGE)
    strays = cache.clean_stray({IMAGE})
    assert [(s.name, s.action) for s in strays] == [(IMAGE, "deleted")]
    assert not os.path.lexists(cache.cache_path(IMAGE))
    assert target.exists()


def test_lock_is_exclusive(cache: SiteCache) -> None:
    other = SiteCache(cache.state_dir)
    with cache.lock(), pytest.raises(GitregError, match="another gitreg site sync is running"), \
            other.lock():
        pass
    with other.lock():  # released on exit
        pass
