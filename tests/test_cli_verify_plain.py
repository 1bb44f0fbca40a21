"""A plain `gitreg verify` line skips typer and prints exactly what the typer path prints;
its pre-verification workers fail loudly, never silently or by hanging."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from gitreg.cli.verify_run import PreverificationPool, VerifyArguments, plain_verify_arguments
from gitreg.model.policy import fingerprint
from tests.fixtures.env import RunCli, run_main
from tests.registry_simulator import RegistrySimulator, new_id, ssh_signer

HEAVY = ("typer", "click", "pydantic", "rich")
ENDORSER = ssh_signer("endorser")
MAIN = "refs/heads/main"


def test_plain_lines_are_parsed() -> None:
    assert plain_verify_arguments(["verify"]) == VerifyArguments()
    assert plain_verify_arguments(
        ["-v", "verify", "--json", "reg.git", "--since", "HEAD~1", "--trust-root=sha256:ab",
         "--ref", "refs/heads/x", "--at=2026-01-01T00:00:00Z"]) == VerifyArguments(
        Path("reg.git"), since="HEAD~1", trust_root="sha256:ab", ref="refs/heads/x",
        at="2026-01-01T00:00:00Z", json_output=True, verbose=True)
    assert plain_verify_arguments(["--verbose", "verify", "."]) == \
        VerifyArguments(Path(), verbose=True)


@pytest.mark.parametrize("line", [
    ["verify", "--help"], ["verify", "a", "b"], ["verify", "--json", "--json"],
    ["verify", "--ref"], ["verify", "--ref", "--json"], ["verify", "--at", "a", "--at", "b"],
    ["verify", "--", "-dir"], ["verify", "-dir"], ["verify", "--jsn"], ["verify", "-v"],
    ["verify", "--json=1"], ["--version"], ["verify-all"], ["check", "x"], [],
])
def test_anything_else_goes_through_typer(line: list[str]) -> None:
    assert plain_verify_arguments(line) is None


@pytest.fixture
def registry(tmp_path: Path) -> tuple[RegistrySimulator, str]:
    sim = RegistrySimulator.create(tmp_path / "registry.git")
    root = fingerprint(sim.policy.canonical_bytes())
    sim.add_endorser("e", [ENDORSER.public_key()], ["imagelists/*"])
    sim.publish(ENDORSER, {new_id(): [new_id()] for _ in range(3)})
    return sim, root


def _tampered(sim: RegistrySimulator) -> str:
    """A head whose new list is signed by a key of no endorser (in a commit of one)."""
    target = new_id()
    data = sim.list_version(target, version="1", images=[new_id()])
    return sim.commit(sim.signed_list(target, data, ssh_signer("mallory")), ENDORSER,
                      message="tamper")


def _shown(done: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr, with the reference time (now, by default) masked."""
    stdout = re.sub(r'"at": "[^"]*"', '"at": "<now>"', done.stdout)
    return done.returncode, stdout, done.stderr


def test_both_paths_print_the_same(registry: tuple[RegistrySimulator, str], tmp_path: Path,
                                   run_cli: RunCli) -> None:
    sim, root = registry
    cases: list[tuple[list[str | Path], str, int]] = [
        ([sim.path], MAIN, 0), ([sim.path, "--json"], MAIN, 0),
        ([sim.path, "--trust-root", root, "--json"], MAIN, 0),
        ([sim.path, f"--trust-root=sha256:{'0' * 64}"], MAIN, 1),
        ([sim.path, "--since", "HEAD~1", "--json"], MAIN, 0),
        ([sim.path, "--at", "2026-06-01T00:00:00Z", "--json"], MAIN, 0),
        ([sim.path, "--at", "yesterday"], MAIN, 2),
        ([sim.path, "--json"], "refs/heads/none", 1),
        ([sim.path, "--json"], "", 1),  # an empty --ref is a name, not the default
        ([tmp_path / "nothing"], MAIN, 2),
        ([], MAIN, 0),  # the current directory
    ]
    for case, ref, code in cases:
        args: list[str | Path] = ["verify", *case]
        assert plain_verify_arguments([str(a) for a in [*args, "--ref", ref]]) is not None
        # An option given twice is not a plain line: typer parses it (the last wins).
        plain = run_cli([*args, "--ref", ref], cwd=sim.path)
        typer = run_cli([*args, "--ref", ref, "--ref", ref], cwd=sim.path)
        assert _shown(plain) == _shown(typer), case
        assert plain.returncode == code, (case, plain.stderr)
    _tampered(sim)
    plain = run_cli(["verify", sim.path, "--json"])
    typer = run_cli(["verify", sim.path, "--json", "--json"])
    assert _shown(plain) == _shown(typer)
    assert plain.returncode == 1 and json.loads(plain.stdout)["error"]["rule"] == \
        "list-signature"


# Workers start at once, whatever the number of lists.
_AT_ONCE = "from gitreg.cli import verify_run\nverify_run.IN_PROCESS_JOBS = 0\n"


def test_plain_verify_runs_on_worker_processes_without_typer(
        registry: tuple[RegistrySimulator, str]) -> None:
    sim, _ = registry
    # Run anywhere but in a worker, a job fails the run (exit 3).
    done = run_main(["verify", sim.path, "--json"], watched=HEAVY, setup=_AT_ONCE + (
        "import os\nfrom gitreg.verify import batch\n"
        "parent, original = os.getpid(), batch.check_list_job\n"
        "def elsewhere(job):\n"
        "    assert os.getpid() != parent, 'a job ran in the parent'\n"
        "    return original(job)\n"
        "batch.check_list_job = elsewhere"))
    assert (done.code, done.loaded) == (0, []), done.stderr
    assert json.loads(done.stdout)["valid"] is True


@pytest.mark.parametrize(("job", "said"), [
    ("os.kill(os.getpid(), signal.SIGKILL)",
     "error: pre-verification: a worker process ended abruptly (killed, or out of memory?); "
     "nothing was judged\nhint: run gitreg verify again\n"),
    ("raise MemoryError('no room for the list')",
     "error: internal error: MemoryError: no room for the list "
     "(run with --verbose for a traceback)\n"),
])
def test_a_worker_that_dies_or_fails_ends_the_run_with_one_clear_error(
        registry: tuple[RegistrySimulator, str], job: str, said: str) -> None:
    sim, _ = registry
    # run_main's own timeout (60 s) fails the test if the run hangs instead.
    done = run_main(["verify", sim.path, "--json"], setup=_AT_ONCE + (
        "import os, signal\nfrom gitreg.verify import batch\n"
        f"def broken(job):\n    {job}\nbatch.check_list_job = broken"))
    assert (done.code, done.stdout, done.stderr) == (3, "", said)


def test_small_ranges_and_single_cores_start_no_workers() -> None:
    with PreverificationPool(workers=2, in_process_jobs=4) as pool:
        assert list(pool.map(str, [1, 2, 3])) == ["1", "2", "3"]
        assert pool._pool is None
    with PreverificationPool(workers=1, in_process_jobs=0) as pool:
        assert list(pool.map(str, [1, 2, 3])) == ["1", "2", "3"]
        assert pool._pool is None


def test_threads_where_the_platform_cannot_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    with PreverificationPool(workers=2, in_process_jobs=0) as pool:
        assert list(pool.map(str, range(5), chunksize=2)) == ["0", "1", "2", "3", "4"]
        assert isinstance(pool._pool, ThreadPoolExecutor)
    assert pool._pool is None  # shut down on the way out
