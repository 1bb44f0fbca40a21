"""A plain `gitreg search` line skips typer and prints exactly what the typer path prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitreg.cli.search_run import SearchArguments, plain_search_arguments
from tests.catalogue_world import standard_world
from tests.fixtures.env import RunCli


def test_plain_lines_are_parsed() -> None:
    parsed = plain_search_arguments(
        ["search", "sl:arch=x86_64", "-r", "a", "--registry=b", "--registry", "c", "alma",
         "--all", "--latest", "--at=2026-01-01T00:00:00Z", "--json"])
    assert parsed == SearchArguments(
        filters=["sl:arch=x86_64", "alma"], registries=[Path("a"), Path("b"), Path("c")],
        valid_only=False, latest=True, at="2026-01-01T00:00:00Z", json_output=True)
    assert plain_search_arguments(["-v", "search"]) == SearchArguments(verbose=True)
    assert plain_search_arguments(["search", "--valid-only", "--at", "x"]) == \
        SearchArguments(at="x")


@pytest.mark.parametrize("line", [
    ["search", "--help"], ["search", "--", "-x"], ["search", "--json", "--json"],
    ["search", "--all", "--valid-only"], ["search", "-r"], ["search", "-r", "--json"],
    ["search", "--at", "a", "--at", "b"], ["search", "-rX"], ["search", "--colour"],
    ["search", "-v"], ["web", "build", "out"], [], ["--verbose"],
])
def test_anything_else_goes_through_typer(line: list[str]) -> None:
    assert plain_search_arguments(line) is None


def test_both_paths_print_the_same(tmp_path: Path, run_cli: RunCli) -> None:
    catalogue, _ids = standard_world(tmp_path / "r.git")
    for case, code in ((["--json", "--latest"], 0), (["--all", "sl:arch=x86_64"], 0),
                       (["alma"], 0), (["colour=red"], 2), (["--at", "yesterday"], 2),
                       (["-r", tmp_path / "none"], 2)):
        args = ["search", "-r", catalogue.sim.path, *case]
        if "--at" not in case:
            args += ["--at", "2026-06-01T00:00:00Z"]
        # A flag given twice means the same to typer, but is not a plain line.
        twice = ["--all", "--all"] if "--all" in case else ["--valid-only", "--valid-only"]
        assert plain_search_arguments([str(a) for a in args]) is not None
        assert plain_search_arguments([str(a) for a in [*args, *twice]]) is None
        plain, typer = run_cli(args), run_cli([*args, *twice])
        assert (plain.returncode, plain.stdout, plain.stderr) == \
            (typer.returncode, typer.stdout, typer.stderr), case
        assert plain.returncode == code, (case, plain.stderr)
