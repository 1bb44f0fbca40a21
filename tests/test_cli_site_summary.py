"""`gitreg site sync`'s last line says what happened, matching its exit code.

Every exit path: 0 prints ``OK:``; a run where no registry got a valid
state prints ``FAILED:``; a run that applied some registries or images but
not all prints ``PARTIAL:``; a usage error prints only the error. The
registries are simulator repositories served by their local path (a
hookless remote, as a mirror may be).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitreg.model.policy import fingerprint
from tests.fixtures.env import RunCli
from tests.registry_simulator import RegistrySimulator, image_entry, new_id, ssh_signer
from tests.site_registry import site_toml

WRONG_ROOT = "sha256:" + "0" * 64


@dataclass
class Registry:
    sim: RegistrySimulator
    trust_root: str

    def table(self, name: str, *, trust_root: str | None = None,
              remotes: list[Path] | None = None) -> dict[str, object]:
        return {"name": name, "remotes": remotes or [self.sim.path],
                "trust_root": trust_root or self.trust_root}


def _registry(where: Path, *, image_uri: str | None = None) -> Registry:
    sim = RegistrySimulator.create(where)
    trust_root = fingerprint(sim.policy.canonical_bytes())
    endorser = ssh_signer("endorser")
    sim.add_endorser("e", [endorser.public_key()], ["imagelists/*"])
    if image_uri is None:
        sim.publish(endorser, {new_id(): []})
    else:
        list_id, image = new_id(), image_entry(new_id())
        image["hv:uri"] = image_uri
        data = sim.list_version(list_id, version="1", images=[image])
        sim.commit(sim.signed_list(list_id, data, endorser), endorser, message="one image")
    return Registry(sim, trust_root)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sync(run_cli: RunCli, tmp_path: Path, tables: list[dict[str, object]], *args: str,
          settings: str = "") -> tuple[int, str, list[str]]:
    config = tmp_path / "site.toml"
    config.write_text(site_toml(tables, settings=settings), encoding="utf-8")
    done = run_cli(["site", "sync", "--config", config, *args])
    return done.returncode, done.stderr.splitlines()[-1], done.stderr.splitlines()


@pytest.fixture
def good(tmp_path: Path) -> Registry:
    return _registry(tmp_path / "good.git")


def test_exit_0_says_ok(run_cli: RunCli, tmp_path: Path, good: Registry) -> None:
    code, last, _ = _sync(run_cli, tmp_path, [good.table("r")])
    assert code == 0
    assert last == "OK: sync: 0 downloaded, 0 retired, 0 kept, 0 failed, 2 event(s)"


def test_wrong_trust_root_says_failed(run_cli: RunCli, tmp_path: Path, good: Registry) -> None:
    code, last, lines = _sync(run_cli, tmp_path, [good.table("r", trust_root=WRONG_ROOT)])
    assert code == 1
    assert last.startswith("FAILED: sync: 0 downloaded")
    assert last.endswith("; exit 1 (r: no valid remote)")
    assert not any(line.startswith("OK") for line in lines)


def test_nothing_reachable_says_failed(run_cli: RunCli, tmp_path: Path) -> None:
    table = {"name": "r", "remotes": [tmp_path / "nowhere.git"], "trust_root": WRONG_ROOT}
    code, last, _ = _sync(run_cli, tmp_path, [table])
    assert code == 3
    assert last.startswith("FAILED: sync: ")
    assert last.endswith("; exit 3 (r: no remote reachable)")


def test_one_registry_invalid_says_partial(run_cli: RunCli, tmp_path: Path,
                                           good: Registry) -> None:
    other = _registry(tmp_path / "other.git")
    code, last, _ = _sync(run_cli, tmp_path, [good.table("a"),
                                              other.table("b", trust_root=WRONG_ROOT)])
    assert code == 1
    assert last.startswith("PARTIAL: sync: ")
    assert last.endswith("; exit 1 (b: no valid remote)")


def test_one_registry_unreachable_says_partial(run_cli: RunCli, tmp_path: Path,
                                               good: Registry) -> None:
    code, last, _ = _sync(run_cli, tmp_path, [
        good.table("a"),
        {"name": "b", "remotes": [tmp_path / "nowhere.git"], "trust_root": WRONG_ROOT}])
    assert code == 3
    assert last.endswith("; exit 3 (b: no remote reachable)")
    assert last.startswith("PARTIAL: sync: ")


def test_failed_download_says_partial(run_cli: RunCli, tmp_path: Path) -> None:
    port = _closed_port()
    registry = _registry(tmp_path / "images.git",
                         image_uri=f"http://127.0.0.1:{port}/image.qcow2")
    code, last, lines = _sync(run_cli, tmp_path, [registry.table("r")])
    assert code == 1, lines
    assert last.startswith("PARTIAL: sync: 0 downloaded, 0 retired, 0 kept, 1 failed")
    assert last.endswith("; exit 1 (1 image(s) failed)")
    # The reason, in the sync's warning and in site status, is in words.
    refused = f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert any(line.startswith("warning: image ") and line.endswith(refused) for line in lines)
    status = run_cli(["site", "status", "--config", tmp_path / "site.toml"])
    assert status.returncode == 0
    image_lines = [line for line in status.stdout.splitlines() if line.startswith("image ")]
    assert len(image_lines) == 1 and image_lines[0].endswith(refused), status.stdout
    assert "Max retries" not in status.stdout + status.stderr


def test_dry_run_says_the_same(run_cli: RunCli, tmp_path: Path, good: Registry) -> None:
    code, last, _ = _sync(run_cli, tmp_path, [good.table("r")], "--dry-run")
    assert (code, last) == (0, "OK: sync (dry run): 0 to download, 0 to retire, 0 kept")
    code, last, _ = _sync(run_cli, tmp_path, [good.table("r", trust_root=WRONG_ROOT)],
                          "--dry-run")
    assert code == 1
    assert last.startswith("FAILED: sync (dry run): ")


def test_json_carries_the_exit_code_and_usage_errors_no_summary(
        run_cli: RunCli, tmp_path: Path, good: Registry) -> None:
    config = tmp_path / "site.toml"
    config.write_text(site_toml([good.table("r", trust_root=WRONG_ROOT)]), encoding="utf-8")
    done = run_cli(["site", "sync", "--config", config, "--json"])
    assert done.returncode == json.loads(done.stdout)["exit_code"] == 1
    missing = run_cli(["site", "sync", "--config", tmp_path / "missing.toml"])
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"error: site config not found: {tmp_path / 'missing.toml'}",
        "hint: pass --config with the path of your site TOML file"]
