"""`gitreg search`: filters, validity, latest, and equal results from every kind of source."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pygit2
import pytest

from gitreg.catalogue.search import parse_filters, search
from gitreg.catalogue.sources import read_snapshot, snapshots
from gitreg.catalogue.status import stamp
from gitreg.catalogue.web.build import build_site
from gitreg.errors import UsageError
from gitreg.model.dates import format_date
from gitreg.model.policy import fingerprint
from tests.catalogue_world import CatalogueWorld, standard_world
from tests.fixtures.env import RunCli


def _titles(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["title"], r["version"]) for r in result["results"]]


def _search(run_cli: RunCli, source: Path, *filters: str, at: str | None = None
            ) -> dict[str, Any]:
    extra = ["--at", at] if at else []
    done = run_cli(["search", "-r", source, "--json", *extra, *filters])
    assert done.returncode == 0, done.stderr
    assert f"{json.loads(done.stdout)['count']} image(s) found" in done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def world(tmp_path: Path) -> tuple[CatalogueWorld, dict[str, str]]:
    return standard_world(tmp_path / "registry.git")


def test_filters_narrow_the_rows(world: tuple[CatalogueWorld, dict[str, str]],
                                 run_cli: RunCli) -> None:
    sim = world[0].sim
    assert _titles(_search(run_cli, sim.path)) == [
        ("AlmaLinux 9 base", "9.3"), ("AlmaLinux 9 base", "9.4"), ("CentOS 7", "7.9"),
        ("Ubuntu 22.04 server", "22.04.3")]
    assert _titles(_search(run_cli, sim.path, "sl:arch=aarch64")) == [
        ("Ubuntu 22.04 server", "22.04.3")]
    assert _titles(_search(run_cli, sim.path, "ad:appid=1234")) == [
        ("Ubuntu 22.04 server", "22.04.3")]
    assert _titles(_search(run_cli, sim.path, "alma", "sl:arch=x86_64")) == [
        ("AlmaLinux 9 base", "9.3"), ("AlmaLinux 9 base", "9.4")]
    assert _titles(_search(run_cli, sim.path, "series=alma9", "--latest")) == [
        ("AlmaLinux 9 base", "9.4")]
    assert _titles(_search(run_cli, sim.path, "dc:title~^ubu")) == [
        ("Ubuntu 22.04 server", "22.04.3")]
    assert len(_search(run_cli, sim.path, "endorser=alice")["results"]) == 4
    assert _search(run_cli, sim.path, "endorser=bob")["results"] == []
    row = _search(run_cli, sim.path, "series=ubuntu-lts")["results"][0]
    assert row["signed_by"] == world[0].alice.public_key().key_id
    assert row["attestations"] == {"passed": 0, "failed": 0, "by": []}


def test_expired_lists_leave_valid_only(world: tuple[CatalogueWorld, dict[str, str]],
                                        run_cli: RunCli) -> None:
    sim = world[0].sim
    later = format_date(sim.clock + timedelta(days=3))
    assert ("CentOS 7", "7.9") not in _titles(_search(run_cli, sim.path, at=later))
    every = _search(run_cli, sim.path, "--all", "status=expired", at=later)
    assert _titles(every) == [("CentOS 7", "7.9")]
    assert every["results"][0]["reason"].startswith("the list expired at")


def test_removed_image_and_removed_endorser_are_revoked(
        world: tuple[CatalogueWorld, dict[str, str]], run_cli: RunCli) -> None:
    catalogue, ids = world
    alma = catalogue.images[ids["alma"]]
    catalogue.publish(ids["alma"], "AlmaLinux", alma[:1])  # 9.4 is withdrawn
    assert _titles(_search(run_cli, catalogue.sim.path, "series=alma9", "--latest")) == [
        ("AlmaLinux 9 base", "9.3")]
    records = read_snapshot(snapshots([catalogue.sim.path])[0])
    revoked = records["lists"][ids["alma"]]["revoked"]
    assert [r["id"] for r in revoked] == [alma[1]["dc:identifier"]]

    catalogue.sim.remove_endorser("alice")
    assert _search(run_cli, catalogue.sim.path)["results"] == []
    every = _search(run_cli, catalogue.sim.path, "--all")["results"]
    assert {r["status"] for r in every} == {"revoked"}


def test_an_unverifiable_head_is_refused_and_nothing_is_cached(
        world: tuple[CatalogueWorld, dict[str, str]], run_cli: RunCli) -> None:
    catalogue, ids = world
    sim = catalogue.sim
    _search(run_cli, sim.path)
    cache = sim.path / "gitreg-catalogue.cache"
    before = cache.read_bytes()
    good = sim.head
    # An unsigned commit forced onto main (no hook saw it).
    sim.commit({"imagelists/" + ids["ubuntu"] + ".json": b"{}"}, None)
    done = run_cli(["search", "-r", sim.path, "--json"])
    assert done.returncode == 1
    assert "commit is not signed" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert cache.read_bytes() == before
    sim.set_main(good)
    assert len(_search(run_cli, sim.path)["results"]) == 4


def test_bad_filters_are_usage_errors(world: tuple[CatalogueWorld, dict[str, str]],
                                      run_cli: RunCli) -> None:
    with pytest.raises(UsageError, match="unknown field 'arch'"):
        parse_filters(["arch=x86_64"])
    with pytest.raises(UsageError, match="not a regular expression"):
        parse_filters(["dc:title~("])
    done = run_cli(["search", "-r", world[0].sim.path, "colour=red"])
    assert done.returncode == 2
    assert "unknown field 'colour'" in done.stderr


def _site(tmp_path: Path, sim_path: Path, run_cli: RunCli) -> Path:
    repo = pygit2.Repository(str(sim_path))
    root = repo.revparse_single("main")
    while root.parents:
        root = root.parents[0]
    policy = repo[root.tree["policy.json"].id].data
    site = tmp_path / "site"
    site.mkdir()
    config = site / "site.toml"
    # A subscription that wants no image: the sync verifies and records the
    # trusted state without downloading anything.
    config.write_text(f"""[site]
state_dir = "state"

[[registry]]
name = "public"
remotes = ["{sim_path}"]
trust_root = "{fingerprint(policy)}"

[[subscription]]
registry = "public"
imagelists = ["*"]
match = {{ "sl:arch" = "none" }}
""", encoding="utf-8")
    done = run_cli(["site", "sync", "-c", config])
    assert done.returncode == 0, done.stderr
    return config


CASES = [
    [],
    ["sl:arch=x86_64"],
    ["sl:arch=aarch64"],
    ["alma"],
    ["ALMA", "9"],
    ["series=alma9"],
    ["series=alma9", "--latest"],
    ["--latest"],
    ["dc:title~^(ubuntu|centos)"],
    ["sl:osversion~alma ?9"],
    ["endorser=alice", "hv:version=9.4"],
    ["ad:appid=1234"],
    ["--all"],
    ["--all", "status=expired"],
    ["--all", "--latest"],
    ["nothing-matches-this"],
]


def test_equal_results_across_sources_and_the_static_index(tmp_path: Path,
                                                           run_cli: RunCli) -> None:
    """One table of filters: working copy, bare clone, site state and the JSON index agree."""
    catalogue, _ids = standard_world(tmp_path / "origin.git")
    sim = catalogue.sim
    later = format_date(sim.clock + timedelta(days=3))  # CentOS has expired by then
    working = tmp_path / "working"
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", str(sim.path), str(working)], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(sim.path), str(bare)], check=True)
    config = _site(tmp_path, sim.path, run_cli)
    out = tmp_path / "web"
    build = run_cli(["web", "build", out, "-r", sim.path, "--at", later])
    assert build.returncode == 0, build.stderr
    index = json.loads((out / "api" / "index.json").read_bytes())

    sources = (("working copy", working), ("bare clone", bare), ("site state", config))
    loaded = {name: [read_snapshot(s) for s in snapshots([source])] for name, source in sources}
    for case in CASES:
        results = {}
        for name, source in sources:
            if case in CASES[:3] or case == CASES[6]:
                rows = _search(run_cli, source, *case, at=later)["results"]
            else:  # the same code as the command, without a process per case
                rows = search(loaded[name], parse_filters(c for c in case if c[:2] != "--"),
                              later, valid_only="--all" not in case,
                              latest_only="--latest" in case)
            results[name] = [{k: v for k, v in r.items() if k not in ("registry_name", "keys")}
                             for r in rows]
        flags = [c for c in case if c.startswith("--")]
        filters = parse_filters([c for c in case if not c.startswith("--")])
        from_index = [r for r in index["rows"]
                      if ("--all" in flags or r["status"] == "valid")
                      and all(f.matches(r) for f in filters)]
        if "--latest" in flags:
            best: dict[str, dict[str, Any]] = {}
            for r in from_index:
                if r["series"] and (r["series"] not in best
                                    or r["series_rank"] > best[r["series"]]["series_rank"]):
                    best[r["series"]] = r
            from_index = [r for r in from_index if not r["series"] or best[r["series"]] is r]
        results["static index"] = [
            {k: v for k, v in r.items() if k not in ("keys", "registry_name", "series_rank")}
            for r in from_index]
        reference = results["working copy"]
        for name, found in results.items():
            assert found == reference, f"{case}: {name} differs from the working copy"
    assert results["working copy"] == []  # the last case matches nothing


def test_library_search_and_build(tmp_path: Path) -> None:
    """The library path: records of a snapshot, filtered, and a site built from them."""
    catalogue, _ = standard_world(tmp_path / "r.git")
    [snap] = snapshots([catalogue.sim.path])
    registries = [read_snapshot(snap)]
    found = search(registries, parse_filters(["sl:arch=x86_64"]), stamp(catalogue.sim.clock))
    assert len(found) == 3
    out = tmp_path / "site"
    build_site(registries, out, now=stamp(catalogue.sim.clock))
    assert (out / "index.html").exists()


def test_incremental_records_equal_a_fresh_read(tmp_path: Path) -> None:
    """Records updated state by state equal the records read from scratch at the end."""
    catalogue, ids = standard_world(tmp_path / "r.git")
    [snap] = snapshots([catalogue.sim.path])
    read_snapshot(snap)
    alma = catalogue.images[ids["alma"]]
    catalogue.publish(ids["alma"], "AlmaLinux", alma[:1])
    read_snapshot(snapshots([catalogue.sim.path])[0])
    catalogue.publish(ids["ubuntu"], "Ubuntu", [])  # decommissioned
    catalogue.publish(ids["alma"], "AlmaLinux", alma)  # 9.4 is back
    [snap] = snapshots([catalogue.sim.path])
    incremental = read_snapshot(snap)
    fresh = read_snapshot(snap, refresh=True)
    assert incremental == fresh
    history = fresh["lists"][ids["alma"]]["history"]
    assert [e["version"] for e in history] == ["1", "2", "3", "4"]
    assert history[2]["removed"] == [alma[1]["dc:identifier"]]
    assert fresh["lists"][ids["alma"]]["revoked"] == []
    ubuntu = fresh["lists"][ids["ubuntu"]]
    assert [r["id"] for r in ubuntu["revoked"]] == ubuntu["history"][0]["added"]


def test_several_registries_a_table_off_a_terminal_and_the_default_directory(
        tmp_path: Path, run_cli: RunCli) -> None:
    first, _ = standard_world(tmp_path / "first.git")
    second = CatalogueWorld.create(tmp_path / "second.git")
    # A second registry, with its own identity, endorser and list.
    second.publish("0f5b7c9e-0000-4000-8000-000000000001", "Private",
                   [second.image("Private build", version="1", arch="riscv64")])
    both = _search(run_cli, first.sim.path, "--registry", str(second.sim.path))
    assert len(both["results"]) == 5
    assert {r["registry_name"] for r in both["results"]} == {"Catalogue test registry"}
    assert len({r["registry"] for r in both["results"]}) == 2
    only = _search(run_cli, second.sim.path, "sl:arch=riscv64")
    assert _titles(only) == [("Private build", "1")]

    done = run_cli(["search", "sl:arch=aarch64"], cwd=first.sim.path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split("\t") == ["title", "version", "arch", "os", "series", "status",
                                    "endorser", "image"]
    assert lines[1].split("\t")[:3] == ["Ubuntu 22.04 server", "22.04.3", "aarch64"]
    assert len(lines) == 2
    assert "1 image(s) found in 1 registry" in done.stderr
