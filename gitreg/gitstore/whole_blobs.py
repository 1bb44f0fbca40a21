"""The blobs of a site's trusted tree, written once more whole, in a kept pack.

Every fetch runs git's ``index-pack --strict`` (``transfer.fsckObjects``),
which looks up the type and size of every object the fetched trees name:
for a flat 20,000-entry ``imagelists/`` tree, 20,000 lookups at each fetch,
however small the change. A blob stored as a delta (a server's pack sends
nearly every list and signature so) must be partly inflated to tell its
size; a blob stored whole says it in its header. For a 10,000-list registry
that is 56 against 33 ms of every fetch (docs/benchmarks.md).

So the first time a site holds a verified state of a registry, the blobs of
its tree are packed again, whole, into a pack marked ``.keep``. git never
repacks a kept pack: the geometric roll-up (``roll_up_packs``) leaves it and
leaves its objects out of the packs it writes, so lookups find them whole.
Lists that change later arrive as deltas again, a few per fetch. The pack
costs about 9 MB for 10,000 lists; losing it (or failing to write it)
changes nothing but time.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable
from pathlib import Path

from gitreg.errors import GitregError
from gitreg.gitstore.command import run_git

# The first line of the .keep file that marks the pack (git ignores its content).
KEEP_MARK = "gitreg: the blobs of a trusted tree, kept whole"
PACK_TIMEOUT = 600.0


def has_whole_blobs(git_dir: Path) -> bool:
    """Whether the repository at ``git_dir`` holds a pack written by ``keep_blobs_whole``."""
    for keep in (git_dir / "objects" / "pack").glob("pack-*.keep"):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if keep.read_text(encoding="utf-8").startswith(KEEP_MARK) \
                    and keep.with_suffix(".pack").exists():
                return True
    return False


def keep_blobs_whole(git_dir: Path, blobs: Iterable[str], *, tree: str,
                     timeout: float = PACK_TIMEOUT) -> bool:
    """Pack ``blobs`` (those of ``tree``) whole into a kept pack; True if written.

    A failure is not an error of the caller's (the objects stay where they
    were): it returns False, and the next call tries again.
    """
    listing = "".join(f"{oid}\n" for oid in sorted(set(blobs))).encode("ascii")
    packs = git_dir / "objects" / "pack"
    if not listing:
        return False
    before = _temporaries(packs)
    try:
        # Written aside, so that a failure leaves nothing behind and the pack
        # is kept before git can see it.
        with tempfile.TemporaryDirectory(prefix="gitreg-whole-", dir=packs) as scratch:
            # No delta search and none reused: every blob whole.
            run = run_git(["-C", git_dir, "pack-objects", "--window=0", "--no-reuse-delta",
                           "-q", Path(scratch) / "pack"], timeout=timeout, stdin=listing,
                          what=f"repository {git_dir}")
            name = f"pack-{run.stdout.strip()}"
            written = Path(scratch) / f"{name}.pack"
            if run.returncode != 0 or not written.exists():
                _remove_new_temporaries(packs, before)
                return False
            (packs / f"{name}.keep").write_text(f"{KEEP_MARK}: tree {tree}\n",
                                                encoding="utf-8")
            # The index last: git uses a pack once its index is there.
            for part in sorted(Path(scratch).iterdir(), key=lambda f: f.suffix == ".idx"):
                part.replace(packs / part.name)
    except (GitregError, OSError):
        # A timed-out git is killed, leaving its temporary pack as a failed one does.
        _remove_new_temporaries(packs, before)
        return False
    return True


def _temporaries(packs: Path) -> set[str]:
    # git pack-objects writes its temporary file next to the packs, whatever
    # the name it is given, and leaves it when it dies.
    try:
        return {p.name for p in packs.glob("tmp_pack_*")}
    except OSError:
        return set()


def _remove_new_temporaries(packs: Path, before: set[str]) -> None:
    for name in _temporaries(packs) - before:
        with contextlib.suppress(OSError):
            (packs / name).unlink()
