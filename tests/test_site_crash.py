"""SIGKILL `gitreg site sync` at many points; every rerun converges.

Two sites subscribe to the same registry. The baseline site syncs without
interruption; the crash site is killed again and again during the same
sync (a real kill mid-pack of a fetch, then the test-only crash points of
``GITREG_TEST_CRASH_AT`` during fetch, retirement, download, install and the
final state commit, or its handler kills the sync at each image event) and
then synced once more. Cache, expired/, state database, event journal and
the handler's log must then equal the baseline's, with no image event
delivered twice except the deliveries that were interrupted (at least once,
docs/site.md "Delivery guarantee").
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gitreg.site.events import IMAGE_EVENTS
from gitreg.site.state import SiteState
from tests.fixtures.env import GITREG
from tests.fixtures.git_server import git
from tests.site_registry import (
    SiteWorld,
    sha512,
)

ALPHA = b"alpha image bytes\n" * 50
BETA = b"beta image bytes\n" * 70
# Larger than one download chunk (1 MiB): the download crash point needs a
# file that is partly written.
GAMMA = bytes(range(256)) * (10 * 1024)


# --- a git server that stalls in the middle of a pack --------------------------


class StallingProxy:
    """A TCP proxy in front of a git HTTP server; armed, it stalls the next pack.

    Once the server's answer carries a pack (``PACK`` signature), the proxy
    forwards 64 more bytes and then nothing: the client's ``git fetch``
    waits in the middle of the pack for ever. ``release`` closes the stalled
    connections.
    """

    def __init__(self, target_url: str) -> None:
        host_port, _, self.path = target_url.removeprefix("http://").partition("/")
        self.target = (host_port.split(":")[0], int(host_port.split(":")[1]))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/{self.path}"
        self.armed = False
        self.stalled = threading.Event()
        self.held_back = 0
        self._lock = threading.Lock()
        self._stalled_sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, server, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True),
                             daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        seen = b""
        stalled = False
        try:
            while data := source.recv(65536):
                if stalled:
                    with self._lock:
                        self.held_back += len(data)
                    continue
                if answers and self.armed:
                    seen += data
                    start = seen.find(b"PACK")
                    if start >= 0:
                        cut = len(data) - (len(seen) - (start + 64))
                        if cut < len(data):
                            sink.sendall(data[:max(cut, 0)])
                            with self._lock:
                                self.armed = False
                                self.held_back += len(data) - max(cut, 0)
                                self._stalled_sockets.append(sink)
                            stalled = True
                            self.stalled.set()
                            continue
                sink.sendall(data)
        except OSError:
            pass
        finally:
            if not stalled:
                for end in (source, sink):
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        with self._lock:
            stalled, self._stalled_sockets = self._stalled_sockets, []
        for sink in stalled:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_RDWR)
            sink.close()

    def close(self) -> None:
        self.release()
        self.listener.close()


# --- sites -----------------------------------------------------------------------


def _run(world: SiteWorld, config: Path, crash_at: str | None = None) -> int:
    env = {"GITREG_TEST_CRASH_AT": crash_at} if crash_at else None
    done = world.run_cli(["site", "sync", "--config", config], env=env)
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done.returncode


def _run_together(*configs: Path) -> None:
    """Sync several sites at once (they share nothing but the servers)."""
    procs = [subprocess.Popen([*GITREG, "site", "sync", "--config", str(c)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in configs]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


def _image_events(config: Path) -> list[tuple[str, str, str]]:
    log = config.parent / "events.jsonl"
    return [(e["VMCATCHER_EVENT_TYPE"], e["VMCATCHER_EVENT_DC_IDENTIFIER"],
             e["GITREG_EVENT_ATTEMPT"])
            for e in map(json.loads, log.read_text().splitlines())
            if "VMCATCHER_EVENT_DC_IDENTIFIER" in e]


def _where(path: str | None, state_dir: Path) -> str | None:
    if path is None:
        return None
    relative = Path(path).relative_to(state_dir)
    # expired/<uuid>.<stamp>: the stamp is the clock's, not part of the result.
    return str(relative).split(".")[0] if relative.parts[0] == "expired" else str(relative)


def _outcome(config: Path) -> dict[str, Any]:
    """Everything a sync leaves: files, state records, event journal."""
    state_dir = config.parent / "state"
    with SiteState.open(state_dir / "state.sqlite") as state:
        return {
            "cache": {p.name: sha512(p.read_bytes()) for p in (state_dir / "cache").iterdir()},
            "expired": sorted((p.name.split(".")[0], sha512(p.read_bytes()))
                              for p in (state_dir / "expired").iterdir()),
            "partial": sorted(p.name for p in (state_dir / "partial").iterdir()),
            "images": [(i.uuid, i.registry, i.list_uuid, i.list_version, i.sha512, i.size,
                        i.state, i.reason, _where(i.path, state_dir)) for i in state.images()],
            "registries": [(r.name, r.trusted_commit, r.merge_parents)
                           for r in state.registries()],
            "remotes": [(r.url, r.state, r.commit) for r in state.remotes()],
            "journal": sorted((e.key, tuple((Path(d.handler).name, d.status)
                                            for d in e.deliveries))
                              for e in state.events() if e.type in IMAGE_EVENTS),
        }


def _image_record(config: Path, image_uuid: str) -> Any:
    with SiteState.open(config.parent / "state" / "state.sqlite") as state:
        return state.image(image_uuid)


def _trusted(config: Path) -> str | None:
    with SiteState.open(config.parent / "state" / "state.sqlite") as state:
        return state.trusted_commit("test")


def _git_processes(repository: Path) -> list[int]:
    """Processes whose command line names ``repository`` (a killed sync's git)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(repository).encode() in cmdline:
                found.append(int(entry.name))
    return found


# --- the scenario ------------------------------------------------------------------


class Scenario:
    """Both sites hold alpha and beta; then alpha is revoked and gamma added.

    ``advance`` makes that change and syncs the baseline site; the crash
    site still holds the old state. With ``proxy``, both sites reach the
    replica through a StallingProxy.
    """

    def __init__(self, world: SiteWorld, *, proxy: bool = False) -> None:
        self.world = world
        self.list_uuid = world.new_list("Crash list")
        self.alpha = world.add_image(self.list_uuid, "alpha", ALPHA)
        self.beta = world.add_image(self.list_uuid, "beta", BETA)
        self.old_head = world.publish("alpha and beta")
        url = world.server("a")
        self.proxy = StallingProxy(url) if proxy else None
        remote = self.proxy.url if self.proxy else url
        # Sites of their own (state_dir, handler and its log) under world.root.
        self.baseline = world.site_config([remote], name="baseline", deadline="60s")
        self.crashed = world.site_config([remote], name="crashed", deadline="60s")
        _run_together(self.baseline, self.crashed)
        assert _trusted(self.crashed) == self.old_head

    def advance(self) -> None:
        self.world.remove_image(self.list_uuid, self.alpha)
        self.gamma = self.world.add_image(self.list_uuid, "gamma", GAMMA)
        self.head = self.world.publish("revoke alpha, add gamma")
        self.world.push("a")
        assert _run(self.world, self.baseline) == 0

    def close(self) -> None:
        if self.proxy:
            self.proxy.close()


def _assert_converged(baseline: Path, crashed: Path, interrupted: set[tuple[str, str]]) -> None:
    assert _outcome(crashed) == _outcome(baseline)
    expected = _image_events(baseline)
    events = _image_events(crashed)
    assert all(attempt == "1" for *_, attempt in expected)
    firsts = Counter((kind, image) for kind, image, attempt in events if attempt == "1")
    assert firsts == Counter((kind, image) for kind, image, _ in expected)
    again = [(kind, image) for kind, image, attempt in events if attempt != "1"]
    assert sorted(again) == sorted(interrupted)


@pytest.mark.slow
def test_sigkill_at_every_step_of_fetch_and_apply_converges(world: SiteWorld) -> None:
    scenario = Scenario(world, proxy=True)
    try:
        _fetch_and_apply_chain(world, scenario)
    finally:
        scenario.close()


def _fetch_and_apply_chain(world: SiteWorld, scenario: Scenario) -> None:
    proxy, baseline, crashed = scenario.proxy, scenario.baseline, scenario.crashed
    assert proxy is not None
    scenario.advance()
    old_head, head, alpha, gamma = scenario.old_head, scenario.head, scenario.alpha, \
        scenario.gamma
    state_dir = crashed.parent / "state"
    repository = state_dir / "repos" / "test.git"
    before = _outcome(crashed)

    # 1. A real kill while git fetch is in the middle of the pack.
    proxy.armed = True
    sync = subprocess.Popen([*GITREG, "site", "sync", "--config", str(crashed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proxy.stalled.wait(60), "the fetch never reached the pack"
    sync.kill()
    assert sync.wait(30) == -signal.SIGKILL
    assert proxy.held_back > 0  # the pack was cut, not finished
    assert _outcome(crashed) == before
    assert git("-C", repository, "rev-parse", "refs/gitreg/remotes/r0/main").stdout.strip() \
        == old_head
    # The killed sync's git (its own process group) still waits on the stalled
    # pack. As a killed git updating the ref would, leave its ref lock behind.
    assert _git_processes(repository)
    lock = repository / "refs" / "gitreg" / "remotes" / "r0" / "main.lock"
    lock.write_text(f"{old_head}\n")
    os.utime(lock, (time.time() - 3600, time.time() - 3600))

    # 2. Fetched (the remote's ref moved), nothing verified or applied.
    assert _run(world, crashed, "fetch") == -signal.SIGKILL
    proxy.release()
    assert not lock.exists()
    assert git("-C", repository, "rev-parse", "refs/gitreg/remotes/r0/main").stdout.strip() \
        == head
    assert _outcome(crashed) == before

    # 3. alpha renamed into expired/, the state still records it cached.
    assert _run(world, crashed, "retire") == -signal.SIGKILL
    assert not (state_dir / "cache" / alpha).exists()
    assert [p.name.split(".")[0] for p in (state_dir / "expired").iterdir()] == [alpha]
    assert _image_record(crashed, alpha).state == "cached"

    # 4. gamma partly downloaded into partial/.
    assert _run(world, crashed, "download") == -signal.SIGKILL
    partial = state_dir / "partial" / gamma
    assert 0 < partial.stat().st_size < len(GAMMA)
    assert not (state_dir / "cache" / gamma).exists()
    assert _image_record(crashed, alpha).state == "revoked"
    held = partial.stat().st_size
    hits = len(world.images.hits("/gamma.img"))

    # 5. gamma verified and renamed into cache/, the state still says pending.
    assert _run(world, crashed, "install") == -signal.SIGKILL
    # Resumed after the bytes already in partial/, not downloaded again.
    assert [h.range for h in world.images.hits("/gamma.img")[hits:]] == [f"bytes={held}-"]
    assert sha512((state_dir / "cache" / gamma).read_bytes()) == sha512(GAMMA)
    assert _image_record(crashed, gamma).state == "pending"

    # 6. Killed inside the final transaction: the trusted commit did not move.
    assert _run(world, crashed, "state-commit") == -signal.SIGKILL
    assert _trusted(crashed) == old_head
    assert _image_record(crashed, gamma).state == "cached"

    # The rerun converges to the uninterrupted sync; nothing was interrupted
    # during a delivery, so no image event came twice.
    assert _run(world, crashed) == 0
    assert _trusted(crashed) == head
    _assert_converged(baseline, crashed, interrupted=set())
    assert not _git_processes(repository)

    # And the run after that has nothing to do.
    done = world.run_cli(["site", "sync", "--config", crashed, "--json"])
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["downloaded"] == [] and report["retired"] == []
    assert {e["type"] for e in report["events"]} == {"ProcessPrefix", "ProcessPostfix"}


@pytest.mark.slow
def test_sigkill_in_every_image_event_converges_at_least_once(world: SiteWorld) -> None:
    scenario = Scenario(world)
    scenario.advance()
    baseline, crashed = scenario.baseline, scenario.crashed

    # The handler SIGKILLs the sync right after recording each event, in
    # pipeline order; each rerun delivers the interrupted event again.
    kills = ["ExpirePrefix", "ExpirePostfix", "AvailablePrefix", "AvailablePostfix"]
    for kind in kills:
        (crashed.parent / "kill-at").write_text(kind)
        assert _run(world, crashed) == -signal.SIGKILL, kind
        assert not (crashed.parent / "kill-at").exists()
        cache = crashed.parent / "state" / "cache"
        # Whatever the point, cache/ holds only whole, verified images.
        for entry in cache.iterdir():
            assert sha512(entry.read_bytes()) in {sha512(ALPHA), sha512(BETA), sha512(GAMMA)}
    assert _run(world, crashed) == 0

    subjects = {"ExpirePrefix": scenario.alpha, "ExpirePostfix": scenario.alpha,
                "AvailablePrefix": scenario.gamma, "AvailablePostfix": scenario.gamma}
    _assert_converged(baseline, crashed, interrupted={(k, subjects[k]) for k in kills})
