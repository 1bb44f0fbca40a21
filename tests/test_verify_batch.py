"""Parallel pre-verification (gitreg.verify.batch): it only ever fills the
cache with facts that hold, so the walk's verdict is the same with it and
without it, and each SSH list signature is parsed once."""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import pytest

from gitreg.cli.verify_run import PreverificationPool
from gitreg.errors import PolicyViolationError
from gitreg.gitstore.store import RegistryStore
from gitreg.model.dates import utcnow
from gitreg.signing import ssh
from gitreg.verify import batch, layout
from gitreg.verify.batch import Preverifier
from gitreg.verify.cache import MemoryCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.history import Verifier
from tests.registry_simulator import RegistrySimulator, new_id, ssh_signer

LISTS = 12
ALICE = ssh_signer("alice")
HISTORY = VerifyContext.for_history(utcnow())


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[RegistrySimulator, list[str]]:
    sim = RegistrySimulator.create(tmp_path_factory.mktemp("batch") / "registry.git")
    alice = ALICE
    sim.add_endorser("alice", [alice.public_key()], ["imagelists/*"])
    ids = [new_id(f"batch/{i}") for i in range(LISTS)]
    sim.publish(alice, {list_id: [new_id(f"batch/{i}/image")] for i, list_id in enumerate(ids)})
    sim.publish(alice, {ids[0]: [new_id("batch/0/image2")]})
    return sim, ids


@contextmanager
def executor(kind: str) -> Iterator[batch.Executor]:
    if kind == "threads":
        with ThreadPoolExecutor(max_workers=2) as pool:
            yield pool
    elif kind == "cli":
        # What `gitreg verify` runs on: forked workers, here even for a few lists.
        with PreverificationPool(workers=2, in_process_jobs=0) as cli_pool:
            yield cli_pool
    else:
        with ProcessPoolExecutor(max_workers=2,
                                 mp_context=multiprocessing.get_context("fork")) as pool:
            yield pool


def _verdict(sim: RegistrySimulator, head: str, kind: str | None) -> tuple[str, ...]:
    """The walk's outcome: the verified commits, or the refusal's rule, commit, path."""
    if kind is None:
        verifier = Verifier(sim.store, MemoryCache(), context=HISTORY)
        try:
            return tuple(verifier.verify_range(None, head).verified)
        except PolicyViolationError as exc:
            return ("refused", exc.rule, exc.commit or "", exc.path or "")
    with executor(kind) as pool:
        verifier = Verifier(sim.store, MemoryCache(), context=HISTORY, preverify=Preverifier(pool))
        try:
            return tuple(verifier.verify_range(None, head).verified)
        except PolicyViolationError as exc:
            return ("refused", exc.rule, exc.commit or "", exc.path or "")


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record every real parse (what the module's own cache does not answer)."""
    seen: list[bytes] = []
    original: Callable[[bytes], Any] = ssh.parse_signature.__wrapped__  # type: ignore[attr-defined]

    def counting(signature: bytes) -> ssh.SSHSignature:
        seen.append(signature)
        result: ssh.SSHSignature = original(signature)
        return result

    monkeypatch.setattr(ssh, "parse_signature", lru_cache(maxsize=256)(counting))
    return seen


@pytest.mark.parametrize("kind", ["threads", "processes", "cli"])
def test_preverification_fills_the_cache_the_walk_then_uses(
        registry: tuple[RegistrySimulator, list[str]], kind: str) -> None:
    sim, ids = registry
    cache = MemoryCache()
    with executor(kind) as pool:
        verifier = Verifier(sim.store, cache, context=HISTORY, preverify=Preverifier(pool))
        commits = sim.store.commits_between(None, sim.head)
        Preverifier(pool)(verifier, commits)
    tree = sim.store.commit_info(sim.head).tree
    for list_id in ids:
        data = sim.store.entry(tree, layout.list_path(list_id))
        assert data is not None and cache.list_facts(data.oid) is not None
    assert _verdict(sim, sim.head, kind) == _verdict(sim, sim.head, None)
    assert len(_verdict(sim, sim.head, kind)) == 4


def test_each_ssh_list_signature_is_parsed_once(
        registry: tuple[RegistrySimulator, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    sim, _ = registry
    seen = _counting(monkeypatch)
    assert len(_verdict(sim, sim.head, "threads")) == 4
    # Each signature once: the lists' (LISTS + 1 versions), the commits' (4)
    # and the root signatures of the two policy versions.
    assert len(seen) == len(set(seen)) == LISTS + 1 + 4 + 2


def test_each_list_and_signature_blob_is_read_once(
        registry: tuple[RegistrySimulator, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    sim, _ = registry
    reads: list[str] = []
    original = RegistryStore.read_blob

    def counting(store: RegistryStore, oid: str, max_size: int) -> bytes:
        reads.append(str(oid))
        return original(store, oid, max_size)

    monkeypatch.setattr(RegistryStore, "read_blob", counting)
    assert len(_verdict(sim, sim.head, "threads")) == 4
    published = {entry.oid for commit in sim.store.commits_between(None, sim.head)
                 for entry in sim.store.entries(sim.store.commit_info(commit).tree)
                 if entry.path.startswith("imagelists/")}
    # Pre-verification reads each once; the walk finds its verdicts cached.
    read = [oid for oid in reads if oid in published]
    assert sorted(read) == sorted(published)


def _tampered(sim: RegistrySimulator, ids: list[str], rng: random.Random, how: str) -> str:
    """A commit on top of ``sim`` with one list's bytes or signature spoiled."""
    target = rng.choice(ids)
    data = sim.list_version(target, version=sim.next_version(target), images=[new_id()])
    # "key": a key of no endorser signs the list.
    changes = sim.signed_list(target, data, ssh_signer("mallory") if how == "key" else ALICE)
    if how == "data":
        changes[layout.list_path(target)] = data.replace(b"Test list", b"Test lisT")
    elif how == "signature":
        signature = bytearray(changes[layout.sig_path(target)] or b"")
        index = rng.randrange(40, len(signature) - 40)
        signature[index] = ord("A") if signature[index] != ord("A") else ord("B")
        changes[layout.sig_path(target)] = bytes(signature)
    elif how == "json":
        changes[layout.list_path(target)] = data[:-3]
    return sim.commit(changes, ALICE, message=f"tamper {how}", move=False)


@pytest.mark.parametrize("kind", ["threads", "processes", "cli"])
def test_tampered_lists_get_the_same_verdict_with_and_without_preverification(
        registry: tuple[RegistrySimulator, list[str]], kind: str) -> None:
    sim, ids = registry
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    for how in ("key", "data", "signature", "json"):
        head = _tampered(sim, ids, rng, how)
        plain = _verdict(sim, head, None)
        assert plain[0] == "refused", (how, plain)
        assert _verdict(sim, head, kind) == plain, (seed, how)
