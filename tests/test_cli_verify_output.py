"""`gitreg verify`'s OK line says whether a trust root was pinned.

Without ``--trust-root`` the repository's first policy is trusted as found:
the OK line says so and names its fingerprint, so the user can pin it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitreg.model.policy import fingerprint
from tests.fixtures.env import RunCli
from tests.registry_simulator import RegistrySimulator, new_id, ssh_signer


@pytest.fixture
def registry(tmp_path: Path) -> tuple[RegistrySimulator, str]:
    sim = RegistrySimulator.create(tmp_path / "registry.git")
    root = fingerprint(sim.policy.canonical_bytes())
    endorser = ssh_signer("endorser")
    sim.add_endorser("e", [endorser.public_key()], ["imagelists/*"])
    sim.publish(endorser, {new_id(): []})
    return sim, root


def test_unpinned_verify_says_what_it_trusted(registry: tuple[RegistrySimulator, str],
                                              run_cli: RunCli) -> None:
    sim, root = registry
    done = run_cli(["verify", sim.path])
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"OK: {sim.path}: 3 commit(s) verified up to {sim.head[:12]}; nothing pinned: "
        f"trusted the repository's first policy {root} as found (pin it with --trust-root)"]
    report = json.loads(run_cli(["verify", sim.path, "--json"]).stdout)
    assert (report["trust_root"], report["trust_root_pinned"]) == (root, False)


def test_pinned_verify_says_nothing_more(registry: tuple[RegistrySimulator, str],
                                         run_cli: RunCli) -> None:
    sim, root = registry
    done = run_cli(["verify", sim.path, "--trust-root", root])
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"OK: {sim.path}: 3 commit(s) verified up to {sim.head[:12]}"]
    report = json.loads(run_cli(["verify", sim.path, "--json", "--trust-root", root]).stdout)
    assert (report["trust_root"], report["trust_root_pinned"]) == (root, True)
