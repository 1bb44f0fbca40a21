"""`gitreg site sync` from cron: a plain command line runs without typer.

The registry is built with the simulator and served by its local path; the
CLI runs as a real subprocess.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitreg.cli.site_sync import SyncArguments, plain_sync_arguments
from gitreg.model.policy import fingerprint
from tests.fixtures.env import RunCli, run_main
from tests.registry_simulator import RegistrySimulator, new_id, ssh_signer
from tests.site_registry import site_toml

HEAVY = ("typer", "click", "pydantic", "rich", "requests", "urllib3")


@pytest.mark.parametrize(("argv", "expected"), [
    (["site", "sync", "--config", "s.toml"], SyncArguments(Path("s.toml"))),
    (["site", "sync", "-c", "s.toml", "--json"], SyncArguments(Path("s.toml"), json_output=True)),
    (["--verbose", "site", "sync", "--dry-run", "--config=s.toml"],
     SyncArguments(Path("s.toml"), dry_run=True, verbose=True)),
    (["-v", "site", "sync", "--json", "--dry-run", "-c", "a b.toml"],
     SyncArguments(Path("a b.toml"), dry_run=True, json_output=True, verbose=True)),
])
def test_plain_command_lines_are_parsed(argv: list[str], expected: SyncArguments) -> None:
    assert plain_sync_arguments(argv) == expected


@pytest.mark.parametrize("argv", [
    [], ["--version"], ["site", "status", "--config", "s.toml"], ["site", "sync"],
    ["site", "sync", "--help"], ["site", "sync", "--config"], ["site", "sync", "--config="],
    ["site", "sync", "--config", "--json"], ["site", "sync", "--confi", "s.toml"],
    ["site", "sync", "--config", "a", "--config", "b"], ["site", "sync", "-c", "a", "--json",
                                                         "--json"],
    ["site", "sync", "-cs.toml"], ["site", "sync", "--config", "s.toml", "extra"],
    ["site", "--verbose", "sync", "--config", "s.toml"],
])
def test_anything_else_is_left_to_typer(argv: list[str]) -> None:
    assert plain_sync_arguments(argv) is None


@pytest.fixture
def site_config(tmp_path: Path) -> Path:
    sim = RegistrySimulator.create(tmp_path / "registry.git")
    trust_root = fingerprint(sim.policy.canonical_bytes())
    endorser = ssh_signer("endorser")
    sim.add_endorser("e", [endorser.public_key()], ["imagelists/*"])
    sim.publish(endorser, {new_id(): [] for _ in range(20)})
    config = tmp_path / "site.toml"
    config.write_text(site_toml([{"name": "r", "remotes": [sim.path], "trust_root": trust_root}]),
                      encoding="utf-8")
    return config


def test_plain_sync_runs_without_typer_rich_or_http(site_config: Path,
                                                    run_cli: RunCli) -> None:
    first = run_cli(["site", "sync", "--config", site_config])
    assert first.returncode == 0, first.stderr
    done = run_main(["site", "sync", "--config", site_config], watched=HEAVY)

    assert (done.code, done.loaded) == (0, []), done.stderr
    # Off a terminal the messages are plain text, as rich would have written them.
    assert done.stderr.splitlines()[-1].startswith("OK: sync: 0 downloaded")
    assert "\x1b[" not in done.stderr


def test_typer_and_plain_paths_run_the_same_sync(site_config: Path, run_cli: RunCli) -> None:
    plain = run_cli(["site", "sync", "--config", site_config, "--json"])
    # An option given twice is not a plain line: typer parses it (the last wins).
    through_typer = run_cli(["site", "sync", "--config", "/nonexistent.toml", "--config",
                             site_config, "--json"])

    assert plain.returncode == through_typer.returncode == 0, through_typer.stderr
    first, second = json.loads(plain.stdout), json.loads(through_typer.stdout)
    assert first["registries"][0]["target"] == second["registries"][0]["target"]
    assert second["registries"][0]["remotes"][0]["state"] == "current"


def test_plain_path_reports_errors_like_typer_path(tmp_path: Path, run_cli: RunCli) -> None:
    missing = tmp_path / "missing.toml"
    plain = run_cli(["site", "sync", "--config", missing])
    assert plain.returncode == 2
    assert f"site config not found: {missing}" in plain.stderr
    assert "Traceback" not in plain.stderr
    loud = run_cli(["--verbose", "site", "sync", "--config", missing])
    assert loud.returncode == 2 and "Traceback" in loud.stderr

    typo = run_cli(["site", "sync", "--confg", missing])
    assert typo.returncode == 2 and "No such option" in typo.stderr
