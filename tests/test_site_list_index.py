"""The site's index of lists with images, and the sync paths that rely on it.

Registries are built with the simulator (real Git objects, in-process SSH
signatures) and served by their local path; images come from the real image
server on 127.0.0.1. Syncs run in-process so a test can move the clock.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gitreg.gitstore.store import RegistryStore
from gitreg.model.dates import format_date
from gitreg.model.imagelist import Imagelist, parse_imagelist
from gitreg.model.policy import fingerprint
from gitreg.signing.ssh import SSHSigner
from gitreg.site import sync as sync_module
from gitreg.site.config import Subscription, load_config
from gitreg.site.list_index import ListIndex
from gitreg.site.plan import RegistryImages, desired_images
from gitreg.site.state import SiteState
from gitreg.site.sync import read_lists, sync
from tests.fixtures.image_server import ImageServer
from tests.registry_simulator import (
    RegistrySimulator,
    image_entry,
    imagelist_bytes,
    new_id,
    ssh_signer,
)
from tests.site_registry import site_toml

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@dataclass
class Registry:
    sim: RegistrySimulator
    trust_root: str
    signer: SSHSigner

    def publish(self, lists: Mapping[str, Sequence[str | Mapping[str, object]]]) -> str:
        return self.sim.publish(self.signer, lists)  # type: ignore[arg-type]

    @property
    def tree(self) -> str:
        return self.sim.head_tree


def _registry(path: Path) -> Registry:
    sim = RegistrySimulator.create(path, start=START)
    trust_root = fingerprint(sim.policy.canonical_bytes())
    signer = ssh_signer("endorser")
    sim.add_endorser("bench", [signer.public_key()], ["imagelists/*"])
    return Registry(sim, trust_root, signer)


class Reader:
    """Parses list blobs and remembers which it was asked for."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.read: list[str] = []

    def __call__(self, oid: str, path: str) -> Imagelist:
        self.read.append(oid)
        return parse_imagelist(self.registry.sim.store.blob(oid, 1 << 20), source=path)


def _blob(registry: Registry, list_uuid: str) -> str:
    entry = registry.sim.store.entry(registry.tree, f"imagelists/{list_uuid}.json")
    assert entry is not None
    return entry.oid


def test_index_follows_a_change_by_reading_only_changed_lists(tmp_path: Path) -> None:
    registry = _registry(tmp_path / "registry.git")
    a, b, c, d = (new_id() for _ in range(4))
    registry.publish({a: [new_id()], b: [], c: [new_id(), new_id()]})
    store = registry.sim.store
    index = ListIndex(tmp_path / "index.sqlite")
    reader = Reader(registry)

    assert index.lists_with_images(store, registry.tree, reader) == {
        a: _blob(registry, a), c: _blob(registry, c)}
    assert len(reader.read) == 3  # built from the whole tree once

    # a is decommissioned (no image), b gains one, d is new; c is untouched.
    registry.publish({a: [], b: [new_id()], d: [new_id()]})
    reader.read.clear()
    moved = index.lists_with_images(store, registry.tree, reader)
    assert moved == {b: _blob(registry, b), c: _blob(registry, c), d: _blob(registry, d)}
    assert sorted(reader.read) == sorted(_blob(registry, x) for x in (a, b, d))

    reader.read.clear()
    assert index.lists_with_images(store, registry.tree, reader) == moved
    assert reader.read == []  # the same tree again: nothing read
    index.close()

    rebuilt = ListIndex(tmp_path / "fresh.sqlite")
    assert rebuilt.lists_with_images(store, registry.tree, Reader(registry)) == moved
    rebuilt.close()


def test_unreadable_index_is_rebuilt(tmp_path: Path) -> None:
    registry = _registry(tmp_path / "registry.git")
    with_image = new_id()
    registry.publish({with_image: [new_id()], new_id(): []})
    path = tmp_path / "index.sqlite"
    path.write_bytes(b"this is not an SQLite database" * 100)

    with ListIndex(path) as index:
        found = index.lists_with_images(registry.sim.store, registry.tree, Reader(registry))

    assert found == {with_image: _blob(registry, with_image)}
    with sqlite3.connect(path) as db:  # replaced by a valid index of that tree
        assert dict(db.execute("SELECT key, value FROM meta"))["tree"] == registry.tree


def test_index_of_a_tree_the_repository_lacks_is_rebuilt(tmp_path: Path) -> None:
    other = _registry(tmp_path / "other.git")
    other.publish({new_id(): [new_id()]})
    registry = _registry(tmp_path / "registry.git")
    with_image = new_id()
    registry.publish({with_image: [new_id()], new_id(): []})
    path = tmp_path / "index.sqlite"
    with ListIndex(path) as index:
        index.lists_with_images(other.sim.store, other.tree, Reader(other))

    reader = Reader(registry)
    with ListIndex(path) as index:
        found = index.lists_with_images(registry.sim.store, registry.tree, reader)

    assert found == {with_image: _blob(registry, with_image)}
    assert len(reader.read) == 2


def test_read_lists_with_index_adds_the_lists_records_name(tmp_path: Path) -> None:
    registry = _registry(tmp_path / "registry.git")
    with_image, empty, named = new_id(), new_id(), new_id()
    registry.publish({with_image: [new_id()], empty: [], named: []})
    head = registry.sim.head
    store = registry.sim.store

    everything = read_lists(store, head)
    with ListIndex(tmp_path / "index.sqlite") as index:
        needed = read_lists(store, head, index=index, named=[named, new_id()])

    assert sorted(x.identifier for x in everything) == sorted([with_image, empty, named])
    assert [x.identifier for x in needed] == sorted([with_image, named])


# --- whole syncs ------------------------------------------------------------------


def _image(image_server: ImageServer, name: str) -> dict[str, object]:
    body = hashlib.sha256(name.encode()).digest() * 40
    image_id = new_id()
    return {**image_entry(image_id, title=name), "hv:size": len(body),
            "hv:uri": image_server.serve(f"/{name}.img", body),
            "sl:checksum:sha512": hashlib.sha512(body).hexdigest()}


def _site(tmp_path: Path, registry: Registry, subscription: str = "") -> Path:
    config = tmp_path / "site.toml"
    config.write_text(site_toml([{"name": "r", "remotes": [registry.sim.path],
                                  "trust_root": registry.trust_root,
                                  "subscription": subscription}]), encoding="utf-8")
    return config


@pytest.fixture
def list_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The commits whose lists a sync read (the real read_lists runs)."""
    commits: list[str] = []
    real = sync_module.read_lists

    def counted(store: RegistryStore, commit: str, **kwargs: Any) -> list[Imagelist]:
        commits.append(commit)
        return real(store, commit, **kwargs)

    monkeypatch.setattr(sync_module, "read_lists", counted)
    return commits


def _records(config: Path) -> dict[str, tuple[str, str]]:
    with SiteState.open(load_config(config).state_db) as state:
        return {r.uuid: (r.state, r.reason) for r in state.images()}


@pytest.mark.parametrize("empty_lists", [0, 40])
def test_list_expiring_without_a_new_commit_retires_its_image(
        tmp_path: Path, image_server: ImageServer, empty_lists: int,
        list_reads: list[str]) -> None:
    registry = _registry(tmp_path / "registry.git")
    registry.sim.lifetime = timedelta(days=2)
    list_uuid = new_id()
    image = _image(image_server, "expiring")
    registry.publish({list_uuid: [image], **{new_id(): [] for _ in range(empty_lists)}})
    config = _site(tmp_path, registry)
    image_uuid = str(image["dc:identifier"])
    cache = tmp_path / "state" / "cache" / image_uuid

    first = sync(load_config(config), now=START + timedelta(hours=2))
    assert first.downloaded == [image_uuid] and cache.is_file()
    same = sync(load_config(config), now=START + timedelta(days=1))
    assert [i.uuid for i in same.plan.keep] == [image_uuid] and same.retired == []
    reads = len(list_reads)
    memo = sync(load_config(config), now=START + timedelta(days=1, hours=23))
    assert [i.uuid for i in memo.plan.keep] == [image_uuid] and memo.retired == []
    assert len(list_reads) == reads  # nothing new, no expiry passed: no list read

    # No new commit: only the clock moved past the list's dc:date:expires.
    later = sync(load_config(config), now=START + timedelta(days=3))

    assert later.registries[0].target == first.registries[0].target
    assert [r["uuid"] for r in later.retired] == [image_uuid]
    assert not cache.exists()
    assert len(list((tmp_path / "state" / "expired").glob(f"{image_uuid}.*"))) == 1
    state, reason = _records(config)[image_uuid]
    assert state == "expired" and f"list {list_uuid} expired" in reason
    assert len(list_reads) == reads + 1


def test_image_expiry_and_refuse_subscriptions_are_not_memoised_past_their_time(
        tmp_path: Path, image_server: ImageServer, list_reads: list[str]) -> None:
    registry = _registry(tmp_path / "registry.git")
    image = {**_image(image_server, "own-expiry"),
             "dc:date:expires": format_date(START + timedelta(days=1))}
    registry.publish({new_id(): [image]})
    config = _site(tmp_path, registry)
    image_uuid = str(image["dc:identifier"])
    sync(load_config(config), now=START + timedelta(hours=2))
    sync(load_config(config), now=START + timedelta(hours=3))
    reads = len(list_reads)

    assert sync(load_config(config), now=START + timedelta(hours=4)).retired == []
    assert len(list_reads) == reads
    later = sync(load_config(config), now=START + timedelta(days=1, hours=1))
    assert [(r["uuid"], r["reason"]) for r in later.retired] == [(image_uuid, "image expired")]
    # A clock set back before the memo was made does not trust it either.
    sync(load_config(config), now=START + timedelta(hours=5))
    assert len(list_reads) == reads + 2

    refusing = _site(tmp_path, registry, 'new_images = "refuse"')
    reads = len(list_reads)
    for hour in (6, 7):
        sync(load_config(refusing), now=START + timedelta(hours=hour))
    assert len(list_reads) == reads + 2  # the plan depends on the records: always read


def test_plan_inputs_survive_their_json_form() -> None:
    lists = [Imagelist.from_dict(json.loads(imagelist_bytes(
        new_id(), version="3", images=[image_entry(new_id()), {
            **image_entry(new_id()), "dc:date:expires": format_date(START + timedelta(days=2)),
            "ad:extra": {"nested": [1, 2.5, None]}}],
        created=START, expires=START + timedelta(days=5)))) for _ in range(2)]
    wanted = desired_images("r", 7, lists, subscriptions=[Subscription("r")], known={},
                            now=START)

    assert wanted.valid_until == START + timedelta(days=2)
    again = RegistryImages.from_json(json.loads(json.dumps(wanted.to_json())))
    assert again == wanted
    later = desired_images("r", 7, lists, subscriptions=[Subscription("r")], known={},
                           now=START + timedelta(days=3))
    assert later.valid_until == START + timedelta(days=5) and len(later.images) == 2


def test_decommissioned_list_retires_its_image_with_that_reason(
        tmp_path: Path, image_server: ImageServer) -> None:
    registry = _registry(tmp_path / "registry.git")
    list_uuid = new_id()
    image = _image(image_server, "decommissioned")
    registry.publish({list_uuid: [image], new_id(): [_image(image_server, "other")]})
    config = _site(tmp_path, registry)
    image_uuid = str(image["dc:identifier"])
    first = sync(load_config(config))
    assert image_uuid in first.downloaded

    registry.publish({list_uuid: []})  # a new version with no image
    second = sync(load_config(config))

    # The list has no image, so only the record naming it gets it read.
    assert [r["uuid"] for r in second.retired] == [image_uuid]
    state, reason = _records(config)[image_uuid]
    assert state == "expired" and reason.startswith(f"list {list_uuid} decommissioned")
