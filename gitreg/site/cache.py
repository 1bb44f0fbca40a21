"""The image cache on disk, laid out as vmcatcher laid it out.

Under the site's ``state_dir``::

    cache/<image-uuid>              fully verified images, and nothing else
    partial/<image-uuid>            downloads in progress (kept for resume)
    expired/<image-uuid>.<stamp>    retired images, stamp YYYYMMDDTHHMMSSZ (UTC)

Existing vmcatcher event handlers find files in these places through
``VMCATCHER_CACHE_DIR_CACHE``/``_DOWNLOAD``/``_EXPIRE``. Every move between
them is one ``rename`` (atomic on one file system) followed by an fsync of
the file and of both directories, so after a crash a file is either wholly in
its old place or wholly in its new one.

A sync need not list a 30,000-entry cache/ to know it holds nothing else
than the state's records: ``SiteCache`` keeps a ``DirStamp`` of cache/ (its
inode, mtime and ctime, which every entry added, removed or renamed
changes) while the directory is known to match them, and re-takes it after
each of its own moves, after checking that nothing else moved first
(docs/site.md, "What a sync reads", says why mtimes are enough).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple

from gitreg.durable import fsync_dir, fsync_file
from gitreg.errors import GitregError, RejectedError

CACHE_DIR = "cache"
PARTIAL_DIR = "partial"
EXPIRED_DIR = "expired"
LOCK_FILE = "sync.lock"

# Image identifiers become file names: allow what real lists use (UUIDs and
# simple names), never a separator, a leading dot or dash, or "..".
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_STAMP = re.compile(r"\d{8}T\d{6}Z(?:-\d+)?")

EntryKind = Literal["file", "directory", "other"]


class CacheDirs(NamedTuple):
    """The three directories, named as vmcatcher's environment variables name them."""

    cache: Path
    download: Path
    expire: Path


@dataclass(frozen=True)
class DirStamp:
    """What ``stat`` says of a directory itself: an entry created, removed or
    renamed in it changes its mtime and ctime (a replaced directory, its inode)."""

    device: int
    inode: int
    mtime_ns: int
    ctime_ns: int

    def to_text(self) -> str:
        return f"{self.device}:{self.inode}:{self.mtime_ns}:{self.ctime_ns}"

    @classmethod
    def from_text(cls, text: str) -> DirStamp | None:
        """The stamp ``to_text`` wrote, or None for anything else."""
        parts = text.split(":")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            return None
        return cls(*(int(p) for p in parts))


@dataclass(frozen=True)
class StrayFile:
    """An entry found in cache/ that the state does not know as verified."""

    name: str
    action: Literal["demoted", "deleted", "left"]
    path: Path  # where it is now (partial/<uuid> if demoted; the old path otherwise)
    reason: str


def check_image_name(image_uuid: str) -> str:
    """Return the identifier if it is safe as a file name; raise RejectedError otherwise."""
    if not isinstance(image_uuid, str) or not _SAFE_NAME.fullmatch(image_uuid) \
            or ".." in image_uuid:
        raise RejectedError(
            f"image identifier {image_uuid!r} cannot be used as a cache file name "
            "(letters, digits, '.', '_', '-' only; no '..'; at most 128 characters)")
    return image_uuid


def expiry_stamp(now: datetime) -> str:
    """The UTC time stamp of an expired/ file name, e.g. 20240131T235959Z."""
    if now.tzinfo is None:
        raise ValueError("expiry_stamp needs an aware datetime (UTC)")
    return now.astimezone(UTC).strftime(_STAMP_FORMAT)


class SiteCache:
    """The cache/, partial/ and expired/ directories of one site."""

    def __init__(self, state_dir: Path) -> None:
        # Absolute, because handlers get these paths and may run elsewhere.
        self.state_dir = Path(state_dir).absolute()
        self.dirs = CacheDirs(
            cache=self.state_dir / CACHE_DIR,
            download=self.state_dir / PARTIAL_DIR,
            expire=self.state_dir / EXPIRED_DIR,
        )
        # cache/ as this process last left it, while it is known to hold
        # exactly the state's cached records (see watch); None: not known.
        self._watched: DirStamp | None = None

    def ensure_dirs(self) -> None:
        """Create state_dir and the three directories (0755) if missing."""
        try:
            for directory in (self.state_dir, *self.dirs):
                if not directory.is_dir():
                    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
                    fsync_dir(directory.parent)
        except OSError as exc:
            raise GitregError(f"cannot create the cache directories under {self.state_dir}: "
                              f"{exc.strerror or exc}") from None

    @contextlib.contextmanager
    def lock(self, *, create: bool = True) -> Iterator[None]:
        """Hold the site's exclusive sync lock; raise at once if another sync holds it.

        cron may start a sync while the previous one still downloads; two
        syncs renaming the same files would break the crash-safety argument.
        ``create=False`` (a dry run) creates nothing: without a lock file there
        is no site yet, so nothing to protect, and the lock is not taken.
        """
        path = self.state_dir / LOCK_FILE
        if not create and not path.exists():
            yield
            return
        try:
            if create:
                self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0) | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise GitregError(f"cannot open the sync lock {path}: {exc.strerror or exc}") \
                from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise GitregError(
                        f"another gitreg site sync is running (lock held on {path})",
                        hint="wait for it to finish; the lock is released when it exits",
                    ) from None
                raise
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # --- paths -------------------------------------------------------------

    def cache_path(self, image_uuid: str) -> Path:
        return self.dirs.cache / check_image_name(image_uuid)

    def partial_path(self, image_uuid: str) -> Path:
        return self.dirs.download / check_image_name(image_uuid)

    def has(self, image_uuid: str) -> bool:
        """True if cache/<uuid> is a regular file (symlinks do not count)."""
        # One lstat, not a stat and an lstat: a sync asks this of every image.
        try:
            return stat.S_ISREG(os.lstat(self.cache_path(image_uuid)).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def entries(self) -> dict[str, EntryKind]:
        """Each entry of cache/ and what it is, from the directory's entry types
        (no ``stat`` each: a cache holds tens of thousands of files)."""
        found: dict[str, EntryKind] = {}
        try:
            with os.scandir(self.dirs.cache) as listing:
                for e in listing:
                    found[e.name] = ("file" if e.is_file(follow_symlinks=False) else
                                     "directory" if e.is_dir(follow_symlinks=False) else
                                     "other")
        except FileNotFoundError:
            pass
        return found

    # --- knowing cache/ unchanged ---------------------------------------------

    def stamp(self) -> DirStamp | None:
        """The stamp of cache/ now (None if it cannot be read)."""
        try:
            st = os.lstat(self.dirs.cache)
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
        return DirStamp(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)

    def watch(self, stamp: DirStamp | None) -> None:
        """cache/ held exactly the state's cached records when it had ``stamp``
        (it was listed, or the stamp is the one recorded when it last did):
        from now on this process tells its own moves from anyone else's.
        None: not known (``watched`` answers None until the next watch)."""
        self._watched = stamp

    def watched(self) -> DirStamp | None:
        """The stamp of cache/ if it changed only by this process's moves since
        ``watch``, else None (something else changed it, or it was never watched)."""
        self._before_move()
        return self._watched

    def _before_move(self) -> None:
        # Anything that changed cache/ since our last move is not ours.
        if self._watched is not None and self.stamp() != self._watched:
            self._watched = None

    def _after_move(self) -> None:
        # Taken right after the rename: the window in which another process's
        # change could hide behind ours is the time between the two calls.
        if self._watched is not None:
            self._watched = self.stamp()

    def expired_files(self, image_uuid: str) -> list[Path]:
        """The retired copies of one image in expired/, oldest first."""
        name = check_image_name(image_uuid)
        try:
            entries = [e.name for e in self.dirs.expire.iterdir()]
        except FileNotFoundError:
            return []
        prefix = name + "."
        found = [e for e in entries
                 if e.startswith(prefix) and _STAMP.fullmatch(e[len(prefix):])]
        return [self.dirs.expire / e for e in sorted(found, key=_stamp_order)]

    # --- moves -------------------------------------------------------------

    def install(self, image_uuid: str) -> Path:
        """Move a fully verified partial/<uuid> to cache/<uuid>, replacing any old file.

        Call only after the whole file was checked against its SHA-512 and
        size, and after the previous version (if any) was retired.
        """
        source = self.partial_path(image_uuid)
        target = self.cache_path(image_uuid)
        try:
            fsync_file(source)
            self._before_move()
            source.replace(target)
            self._after_move()
            fsync_dir(target.parent)
            fsync_dir(source.parent)
        except FileNotFoundError:
            raise GitregError(f"cannot install image {image_uuid}: {source} does not exist") \
                from None
        except OSError as exc:
            raise GitregError(f"cannot move {source} to {target}: {exc.strerror or exc}") \
                from None
        return target

    def retire(self, image_uuid: str, now: datetime) -> Path | None:
        """Move cache/<uuid> to expired/<uuid>.<stamp>; return the new path.

        Idempotent: if cache/<uuid> is already gone (a crash after the rename
        and before the state recorded it), return the newest expired copy of
        the image, or None if there is none.
        """
        source = self.cache_path(image_uuid)
        stamp = expiry_stamp(now)
        if not os.path.lexists(source):
            found = self.expired_files(image_uuid)
            return found[-1] if found else None
        target = self.dirs.expire / f"{image_uuid}.{stamp}"
        n = 1
        # The sync lock makes this check-then-rename race free; the suffix
        # only matters when one image is retired twice in one second.
        while os.path.lexists(target):
            n += 1
            target = self.dirs.expire / f"{image_uuid}.{stamp}-{n}"
        try:
            self._before_move()
            source.rename(target)
            self._after_move()
            fsync_dir(target.parent)
            fsync_dir(source.parent)
        except OSError as exc:
            raise GitregError(f"cannot move {source} to {target}: {exc.strerror or exc}") \
                from None
        return target

    def discard_partial(self, image_uuid: str) -> bool:
        """Delete partial/<uuid> (a download that failed its check); False if absent."""
        path = self.partial_path(image_uuid)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise GitregError(f"cannot delete {path}: {exc.strerror or exc}") from None
        fsync_dir(path.parent)
        return True

    def clean_stray(self, verified: Collection[str],
                    known: Collection[str] = ()) -> list[StrayFile]:
        """Keep in cache/ only the files the state knows as verified.

        The rule: cache/ may hold nothing a handler could mistake for a
        verified image. For an entry whose name is not in ``verified``:

        - a regular file of an image the state knows (``known``, e.g. recorded
          ``pending`` before its download) is *demoted* to partial/<uuid>,
          unless partial/ already holds a download of it; the downloader
          re-hashes partial files before resuming, so a crash between the
          rename into cache/ and the state commit costs a re-hash, not a
          re-download, and nothing unchecked is ever trusted;
        - any other file or symlink is *deleted* (as vmcatcher deletes
          unknown files from its cache directory);
        - a directory is *left* alone and reported: deleting a tree an
          operator put there is not ours to do.

        partial/ is not otherwise touched: its files survive for resume.
        """
        try:
            entries = sorted(e.name for e in self.dirs.cache.iterdir())
        except FileNotFoundError:
            return []
        strays: list[StrayFile] = []
        changed_cache = changed_partial = False
        self._before_move()
        for name in entries:
            if name in verified:
                path = self.dirs.cache / name
                if path.is_file() and not path.is_symlink():
                    continue
            path = self.dirs.cache / name
            if path.is_dir() and not path.is_symlink():
                strays.append(StrayFile(name, "left", path, "a directory in cache/"))
                continue
            safe = name in known and _SAFE_NAME.fullmatch(name) is not None and ".." not in name
            partial = self.dirs.download / name
            try:
                if safe and path.is_file() and not path.is_symlink() \
                        and not os.path.lexists(partial):
                    fsync_file(path)
                    path.rename(partial)
                    strays.append(StrayFile(name, "demoted", partial,
                                            "not recorded as verified; moved back to re-check"))
                    changed_partial = True
                else:
                    path.unlink()
                    reason = ("a download of it is already in partial/" if safe and
                              os.path.lexists(partial) else "not an image the state knows")
                    strays.append(StrayFile(name, "deleted", path, reason))
                changed_cache = True
            except OSError as exc:
                raise GitregError(f"cannot remove stray {path} from the cache: "
                                  f"{exc.strerror or exc}") from None
        self._after_move()
        if changed_partial:
            fsync_dir(self.dirs.download)
        if changed_cache:
            fsync_dir(self.dirs.cache)
        return strays


def _stamp_order(name: str) -> tuple[str, int]:
    stamp = name.rsplit(".", 1)[1]
    base, _, n = stamp.partition("-")
    return base, int(n or 1)
