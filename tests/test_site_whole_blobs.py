"""A site keeps the blobs of its first verified tree whole in a kept pack, and
git's roll-ups leave that pack, and the history, intact.

Real git: the registry is a simulator repository served by its local path,
the site's local repository is written by git fetch, inspected with git
verify-pack and checked with git fsck.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from gitreg.gitstore.remote import roll_up_packs
from gitreg.gitstore.whole_blobs import KEEP_MARK, has_whole_blobs, keep_blobs_whole
from gitreg.site.config import load_config
from gitreg.site.sync import sync
from tests.fixtures.image_server import ImageServer
from tests.registry_simulator import new_id
from tests.test_site_list_index import _image, _registry, _site


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def _kept_packs(repo: Path) -> list[Path]:
    return sorted(k.with_suffix(".pack") for k in (repo / "objects" / "pack").glob("*.keep")
                  if k.read_text(encoding="utf-8").startswith(KEEP_MARK))


def _pack_objects(pack: Path) -> dict[str, bool]:
    """Object id -> stored as a delta, for every object of ``pack``."""
    found: dict[str, bool] = {}
    for line in _git(pack.parent, "verify-pack", "-v", str(pack.with_suffix(".idx"))).splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[1] in ("blob", "tree", "commit", "tag"):
            found[fields[0]] = len(fields) >= 7  # a delta names its depth and base
    return found


def test_the_first_verified_tree_is_kept_whole_once_and_survives_roll_ups(
        tmp_path: Path, image_server: ImageServer) -> None:
    registry = _registry(tmp_path / "registry.git")
    lists = {new_id(): [_image(image_server, f"w{n}")] for n in range(12)}
    registry.publish(lists)
    config = _site(tmp_path, registry)
    local = tmp_path / "state" / "repos" / "r.git"

    sync(load_config(config))

    kept = _kept_packs(local)
    assert len(kept) == 1 and has_whole_blobs(local)
    blobs = {line.split()[2] for line in _git(local, "ls-tree", "-r", registry.tree).splitlines()}
    objects = _pack_objects(kept[0])
    assert set(objects) == blobs and not any(objects.values())  # every blob, none a delta

    # Later syncs add packs (a list at a time) but no second kept pack.
    for n in range(4):
        changed = sorted(lists)[n]
        registry.publish({changed: [_image(image_server, f"w{n}v2")]})
        assert sync(load_config(config)).exit_code == 0
    assert _kept_packs(local) == kept

    assert roll_up_packs(local, max_packs=1)
    assert _kept_packs(local) == kept and _pack_objects(kept[0]) == objects
    others = [p for p in (local / "objects" / "pack").glob("*.pack") if p not in kept]
    assert all(not set(_pack_objects(p)) & blobs for p in others)  # no second copy
    _git(local, "fsck", "--no-dangling", "--strict")  # the whole history is still there
    assert sync(load_config(config)).exit_code == 0


def test_a_pack_that_cannot_be_written_changes_nothing(tmp_path: Path,
                                                        image_server: ImageServer) -> None:
    registry = _registry(tmp_path / "registry.git")
    registry.publish({new_id(): [_image(image_server, "only")]})
    config = _site(tmp_path, registry)
    sync(load_config(config))
    local = tmp_path / "state" / "repos" / "r.git"
    before = sorted(p.name for p in (local / "objects" / "pack").iterdir())

    assert not keep_blobs_whole(local, ["0" * 40], tree="0" * 40)  # no such object
    assert not keep_blobs_whole(local, [], tree="0" * 40)

    assert sorted(p.name for p in (local / "objects" / "pack").iterdir()) == before
