"""A policy violation is shown with its place and rule exactly once, everywhere.

Sites used to print ``commit X: commit X: ... [rule: r] [rule: r]``: the
error's message carried its place and rule, and the site added both again.
The message now stays bare; the hook, `gitreg verify` and `gitreg site
sync` each print the one line ``commit X[, path]: message [rule: r]``.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitreg.errors import PolicyViolationError
from gitreg.model.policy import fingerprint
from gitreg.server.init import init_server
from tests.fixtures.env import RunCli
from tests.fixtures.git_server import git
from tests.registry_simulator import RegistrySimulator, new_id, ssh_signer
from tests.site_registry import site_toml

LAYOUT = ("path outside the registry layout (allowed: gitreg.json, policy.json, "
          "imagelists/<uuid>.json, attestations/<attester>/<uuid>.json and their .sig)")


def test_message_stays_bare_and_is_shown_with_place_and_rule_once() -> None:
    exc = PolicyViolationError("commit is not signed", rule="commit-signature",
                               commit="c4f97a9d5de9" + "0" * 28, path="policy.json",
                               hint="sign it")
    assert exc.message == "commit is not signed"
    assert str(exc) == ("commit c4f97a9d5de9, policy.json: commit is not signed "
                        "[rule: commit-signature]")
    assert exc.diagnostics() == f"{exc}\nhint: sign it"
    bare = PolicyViolationError("the main branch may not be deleted", rule="ref-delete")
    assert str(bare) == "the main branch may not be deleted [rule: ref-delete]"
    # A caller that knows the commit (a site verifying a remote's head) names it once.
    assert bare.located(commit="ab" * 20) == ("commit abababababab: the main branch may not "
                                              "be deleted")
    assert exc.located(commit="ab" * 20).count("commit ") == 2  # its own commit, not a second


@dataclass
class Forged:
    sim: RegistrySimulator
    server: Path
    site_config: Path
    commit: str


@pytest.fixture(params=["unsigned", "outside-layout"])
def forged(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Forged, str]:
    """A registry whose head breaks one rule, a hook-guarded server, a site fed by the
    hookless registry; and the one line every component must show for it."""
    sim = RegistrySimulator.create(tmp_path / "registry.git")
    trust_root = fingerprint(sim.policy.canonical_bytes())
    endorser = ssh_signer("endorser")
    sim.add_endorser("e", [endorser.public_key()], ["imagelists/*"])
    sim.publish(endorser, {new_id(): []})
    server = tmp_path / "server.git"
    init_server(server, source=sim.path)
    if request.param == "unsigned":
        commit = sim.commit({"imagelists/README": b"x\n"}, None, message="unsigned")
        line = f"commit {commit[:12]}: commit is not signed [rule: commit-signature]"
    else:
        commit = sim.commit({"imagelists/README": b"x\n"}, endorser, message="stray file")
        line = f"commit {commit[:12]}, imagelists/README: {LAYOUT} [rule: layout-path]"
    config = tmp_path / "site.toml"
    config.write_text(site_toml([{"name": "r", "remotes": [sim.path],
                                  "trust_root": trust_root}]), encoding="utf-8")
    return Forged(sim, server, config, commit), line


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_hook_shows_the_violation_once(forged: tuple[Forged, str]) -> None:
    world, line = forged
    before = git("-C", world.server, "rev-parse", "refs/heads/main").stdout
    done = subprocess.run(["git", "-C", str(world.sim.path), "push", str(world.server),
                           f"{world.commit}:refs/heads/main"], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode != 0
    assert f"remote: gitreg: rejected refs/heads/main: {line}" in _lines(done.stderr)
    assert done.stderr.count("[rule: ") == 1
    assert git("-C", world.server, "rev-parse", "refs/heads/main").stdout == before


def test_verify_shows_the_violation_once(forged: tuple[Forged, str], run_cli: RunCli) -> None:
    world, line = forged
    done = run_cli(["verify", world.sim.path])
    assert done.returncode == 1
    assert _lines(done.stderr) == [f"error: {line}"]
    report = run_cli(["verify", world.sim.path, "--json"])
    error = json.loads(report.stdout)["error"]
    assert error["commit"] == world.commit
    assert line.endswith(f"{error['message']} [rule: {error['rule']}]")
    assert world.commit[:12] not in error["message"] and "[rule" not in error["message"]


def test_site_sync_shows_the_violation_once(forged: tuple[Forged, str],
                                            run_cli: RunCli) -> None:
    world, line = forged
    done = run_cli(["site", "sync", "--config", world.site_config])
    assert done.returncode == 1
    lines = _lines(done.stderr)
    assert f"warning: r: remote {world.sim.path} is invalid: {line}" in lines
    assert done.stderr.count("[rule: ") == 1
    assert done.stderr.count(f"commit {world.commit[:12]}") == 1
    status = run_cli(["site", "status", "--config", world.site_config, "--json"])
    remote = json.loads(status.stdout)["registries"][0]["remotes"][0]
    assert remote["state"] == "invalid"
    assert remote["detail"] == line.rsplit(" [rule: ", 1)[0]
