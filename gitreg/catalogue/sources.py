"""Where catalogue records come from: registries named on the command line.

A ``--registry`` argument is a registry repository (a working copy or a bare
repository: its ``main`` is verified from the root commit, or from the last
state this catalogue verified, before anything is read) or a site config
(each subscribed registry at the site's trusted commit, which the site has
verified). Nothing is ever checked out: records are read from Git objects.

Records are cached next to the repository (``<git dir>/gitreg-catalogue.cache``,
or the site's repositories directory), keyed by the state they were read from, so a
search at an unchanged state reads one file and verifies nothing.
"""

from __future__ import annotations

import gc
import marshal
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitreg.errors import RejectedError, UsageError

if TYPE_CHECKING:
    from gitreg.gitstore.store import RegistryStore
    from gitreg.verify.cache import VerificationCache

MAIN = "refs/heads/main"
CACHE_NAME = "catalogue.cache"
# Bumped whenever the record shape changes: cached records of another format
# are read again from Git. Here, not in the reader: a search at an unchanged
# state must not import the verifier. 5: attestations.
FORMAT = 5


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while records are built or loaded, nor of them after.

    Records are plain acyclic dicts and lists (refcounting frees them), but
    a registry's are about a million objects: each automatic collection
    would walk them all, which doubled the time of a search. So they are
    moved to the collector's permanent generation (``gc.freeze``), where
    refcounting still frees them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@dataclass
class Snapshot:
    """One registry state to catalogue."""

    label: str  # the argument or config entry it came from, for messages
    name: str | None  # display name (site config name); None: the registry's own
    opened: RegistryStore | None  # None: opened when first needed (``store``)
    head: str
    cache_file: Path | None
    verify_cache_file: Path | None  # None: the state is a site's, already verified
    pinned: str | None = None
    path: Path | None = None  # where ``store`` opens the repository from

    @property
    def store(self) -> RegistryStore:
        if self.opened is None:
            from gitreg.gitstore.store import RegistryStore

            self.opened = RegistryStore.open(self.path or Path())
        return self.opened


def snapshots(arguments: Sequence[str | Path],
              warnings: list[str] | None = None) -> list[Snapshot]:
    """Resolve ``--registry`` arguments (default: the current directory).

    A site registry without a trusted state yet is skipped with a line in
    ``warnings``.
    """
    found: list[Snapshot] = []
    for argument in arguments or [Path()]:
        path = Path(argument)
        if path.is_file():
            found.extend(_site_snapshots(path, warnings if warnings is not None else []))
        elif path.is_dir():
            found.append(_repository_snapshot(path))
        else:
            raise UsageError(f"{argument}: no such registry directory or site config")
    return found


def _repository_snapshot(path: Path) -> Snapshot:
    plain = _plain_head(path)
    if plain is not None:
        git_dir, head = plain
        store = None
    else:
        from gitreg.gitstore.store import RegistryStore

        store = RegistryStore.open(path)
        found = store.ref(MAIN)
        if found is None:
            raise UsageError(f"{path}: {MAIN} is missing (not a registry, or nothing "
                             "published)")
        git_dir, head = store.path, found
    # Files, not a directory named gitreg: that would shadow the package for
    # `python -m gitreg` run inside a bare repository.
    return Snapshot(label=str(path), name=None, opened=store, head=head,
                    cache_file=git_dir / f"gitreg-{CACHE_NAME}",
                    verify_cache_file=git_dir / "gitreg-catalogue.verify.sqlite", path=path)


_OID = frozenset("0123456789abcdef")


def _plain_head(path: Path) -> tuple[Path, str] | None:
    """``(git dir, main)`` read from the files of a plain repository, else None.

    A search at an unchanged state needs only the head to find its cached
    records, and pygit2's import was a tenth of it. Anything unusual (a
    linked worktree, a symbolic or missing ref, another ref storage) is left
    to libgit2.
    """
    git_dir = path / ".git"
    if not git_dir.is_dir():
        git_dir = path
        if not ((path / "HEAD").is_file() and (path / "objects").is_dir()):
            return None
    if (git_dir / "commondir").exists():
        return None
    try:
        head = (git_dir / MAIN).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        head = _packed_ref(git_dir, MAIN) or ""
    except (OSError, UnicodeError):
        return None
    if len(head) != 40 or not _OID.issuperset(head):
        return None
    return git_dir, head


def _packed_ref(git_dir: Path, name: str) -> str | None:
    try:
        lines = (git_dir / "packed-refs").read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeError):
        return None
    for line in lines:
        oid, _, ref = line.partition(" ")
        if ref == name:
            return oid
    return None


def _site_snapshots(path: Path, warnings: list[str]) -> Iterator[Snapshot]:
    from gitreg.site.config import load_config
    from gitreg.site.remotes import pinned_fingerprint
    from gitreg.site.state import SiteState

    config = load_config(path)
    if not config.state_db.exists():
        raise UsageError(f"{path}: the site has no trusted state yet",
                         hint=f"run `gitreg site sync {path}` first")
    with SiteState.open(config.state_db) as state:
        trusted = {r.name: state.trusted_commit(r.name) for r in config.registries}
    for registry in config.registries:
        head = trusted[registry.name]
        repository = config.repositories_dir / f"{registry.name}.git"
        if head is None or not repository.exists():
            warnings.append(f"{path}: registry {registry.name} has no trusted state yet; "
                            "skipped")
            continue
        yield Snapshot(label=f"{path}:{registry.name}", name=registry.name,
                       opened=None, path=repository, head=head,
                       cache_file=config.repositories_dir / f"{registry.name}.{CACHE_NAME}",
                       verify_cache_file=None, pinned=pinned_fingerprint(registry))


# What a search needs is kept apart from the lists' histories (a sixth of
# the file, but the most objects) and from the verbatim keys of lists and
# images (a third of the objects, read only for a filter on a key no column
# holds), so a search loads only its part.
_HISTORY_KEYS = ("history", "revoked")
_LENGTH = 8  # each of the first two parts starts with its byte length
_LAYOUT = 2  # records, keys, histories


def load_cached(snapshot: Snapshot, *, history: bool = True,
                keys: bool = True) -> dict[str, Any] | None:
    """The cached records of this registry (any earlier state), if readable.

    ``history=False``: the list records come without ``history`` and ``revoked``.
    ``keys=False`` (with ``history=False``): lists and images come without
    ``keys``; ``lifted_odd`` (``search.lifted_odd``, always there) says where
    a filter on a key a column holds must then read another value.
    """
    if snapshot.cache_file is None:
        return None
    keys = keys or history
    try:
        with snapshot.cache_file.open("rb") as handle:
            part = handle.read(int.from_bytes(handle.read(_LENGTH), "big"))
            # Our own file beside the repository; loading runs no code.
            with paused_gc():
                header, value = marshal.loads(part)  # noqa: S302
                if header != _cache_header(FORMAT) or not isinstance(value, dict):
                    return None
                if keys:
                    found = marshal.loads(  # noqa: S302
                        handle.read(int.from_bytes(handle.read(_LENGTH), "big")))
                    for list_id, record in value["lists"].items():
                        record["keys"], image_keys = found[list_id]
                        for image, image_key_map in zip(record["images"], image_keys,
                                                        strict=True):
                            image["keys"] = image_key_map
                if history:
                    histories = marshal.loads(handle.read())  # noqa: S302
                    for list_id, record in value["lists"].items():
                        record["history"], record["revoked"] = histories[list_id]
    except (OSError, ValueError, EOFError, TypeError, KeyError):
        return None
    return value


def _cache_header(format_version: int) -> tuple[str, int, int, str]:
    return ("gitreg-catalogue", format_version, _LAYOUT, sys.version.split()[0])


def store_cached(snapshot: Snapshot, records: dict[str, Any],
                 previous: dict[str, Any] | None = None) -> None:
    """Keep ``records`` for the next run; a read-only repository just goes without.

    marshal, not JSON: a search at an unchanged state is mostly this load,
    and marshal reads plain dicts and lists several times faster. It holds
    data only (no code runs on load); another Python version re-reads Git.
    ``previous``: the cached records ``records`` were read from (what is
    derived from unchanged lists is taken from them).
    """
    from gitreg.catalogue.search import lifted_odd

    if snapshot.cache_file is None:
        return
    lists: dict[str, Any] = {}
    keys: dict[str, Any] = {}
    histories: dict[str, Any] = {}
    for list_id, record in records["lists"].items():
        lean = {k: v for k, v in record.items() if k not in _HISTORY_KEYS and k != "keys"}
        lean["images"] = [{k: v for k, v in image.items() if k != "keys"}
                          for image in record["images"]]
        lists[list_id] = lean
        keys[list_id] = (record["keys"], [image["keys"] for image in record["images"]])
        histories[list_id] = [record[k] for k in _HISTORY_KEYS]
    odd = lifted_odd(records, previous)
    part = marshal.dumps((_cache_header(FORMAT), {**records, "lists": lists,
                                                  "lifted_odd": odd}))
    key_part = marshal.dumps(keys)
    target = snapshot.cache_file
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Renamed whole, not synced: a cache lost to a power cut is read again
        # from Git, and its header refuses a torn file.
        temporary.write_bytes(b"".join(
            (len(part).to_bytes(_LENGTH, "big"), part, len(key_part).to_bytes(_LENGTH, "big"),
             key_part, marshal.dumps(histories))))
        temporary.replace(target)
    except (OSError, ValueError):
        temporary.unlink(missing_ok=True)


def read_snapshot(snapshot: Snapshot, *, refresh: bool = False, now: datetime | None = None,
                  history: bool = True, keys: bool = True) -> dict[str, Any]:
    """The verified records of ``snapshot``: from the cache, or verified and read now.

    ``history=False`` (a search): records read from the cache may come without
    the lists' ``history`` and ``revoked``; ``keys=False`` too, without the
    verbatim ``keys`` (``load_cached``).

    A repository's ``main`` is verified by the trust core first, as ``gitreg
    verify`` does (history mode at ``now``); a head that fails is refused
    with the verifier's error and nothing is cached. Expiry of the state is
    not a refusal here: it is the status the records are judged with.
    """
    from gitreg.model.dates import utcnow

    at = now or utcnow()
    if not refresh and not history:
        cached = load_cached(snapshot, history=False, keys=keys)
        if cached is not None and cached.get("head") == snapshot.head and \
                cached.get("source_name") == snapshot.name:
            return cached
    cached = None if refresh else load_cached(snapshot)
    if cached is not None and cached.get("head") == snapshot.head and \
            cached.get("source_name") == snapshot.name:
        return cached
    from gitreg.catalogue.reader import read_registry
    from gitreg.verify.cache import MemoryCache

    cache: VerificationCache
    if snapshot.verify_cache_file is None:
        cache = MemoryCache()
        with paused_gc():
            records = read_registry(snapshot.store, snapshot.head, name=snapshot.name or "",
                                    cache=cache, at=at, previous=cached)
    else:
        from gitreg.gitstore.verify_cache import SqliteCache

        sqlite = SqliteCache(snapshot.verify_cache_file)
        try:
            _verify(snapshot, sqlite, cached, at)
            with paused_gc():
                records = read_registry(snapshot.store, snapshot.head,
                                        name=snapshot.name or "", cache=sqlite, at=at,
                                        previous=cached)
        finally:
            sqlite.close()
    records["source_name"] = snapshot.name
    if not records["name"]:
        records["name"] = records["registry_name"]
    store_cached(snapshot, records, previous=cached)
    return records


def _verify(snapshot: Snapshot, cache: VerificationCache, cached: dict[str, Any] | None,
            at: datetime) -> None:
    """Verify main as ``gitreg verify`` does; the state's expiry becomes status, not refusal."""
    from gitreg.verify.context import VerifyContext
    from gitreg.verify.history import Verifier

    store = snapshot.store
    trusted = cached.get("head") if cached else None
    if not isinstance(trusted, str) or not store.is_ancestor(trusted, snapshot.head):
        trusted = None
    verifier = Verifier(store, cache, context=VerifyContext.for_history(at),
                        pinned_policy=snapshot.pinned)
    try:
        verifier.verify_range(trusted, snapshot.head)
    except RejectedError as exc:
        raise RejectedError(f"{snapshot.label}: main is not a verified registry state: "
                            f"{exc.message}", hint=exc.hint) from exc
