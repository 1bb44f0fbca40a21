"""`gitreg site available` and subscriptions by list title or image series."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitreg.errors import GitregError
from gitreg.site.config import Subscription
from gitreg.site.names import ListNames, is_name, resolve
from tests.site_registry import SiteWorld


def _by(config: Path, selector: str, name: str) -> Path:
    """A copy of ``config`` in its own site directory, subscribed to ``selector``."""
    site = config.parent.parent / name
    site.mkdir()
    text = config.read_text(encoding="utf-8").replace(
        'imagelists = ["*"]', f"imagelists = [{json.dumps(selector)}]")
    (site / "site.toml").write_text(text.replace(str(config.parent), str(site)),
                                    encoding="utf-8")
    return site / "site.toml"


def _held(world: SiteWorld, config: Path) -> list[str]:
    done = world.run_cli(["site", "images", "--config", config, "--json"])
    return sorted(row["uuid"] for row in json.loads(done.stdout))


def test_available_shows_the_trusted_lists_and_names_subscribe(world: SiteWorld) -> None:
    base = world.new_list("Base images")
    alpha = world.add_image(base, "alpha", b"alpha image bytes\n" * 50)
    beta = world.add_image(base, "beta", b"beta image bytes\n" * 50)
    world.cli("image", "set", base, alpha, "gitreg:series", "alma-9")
    extra = world.new_list("Extra images")
    gamma = world.add_image(extra, "gamma", b"gamma image bytes\n" * 50)
    world.publish("two lists")
    config = world.site_config([world.server("a")])
    before = world.run_cli(["site", "available", "--config", config])
    assert before.returncode == 0 and "nothing trusted yet" in before.stdout
    assert world.sync(config)[0] == 0

    shown = world.run_cli(["site", "available", "--config", config, "--json"])
    assert shown.returncode == 0, shown.stderr
    [offer] = json.loads(shown.stdout)
    lists = {row["uuid"]: row for row in offer["lists"]}
    assert sorted(lists) == sorted([base, extra])
    assert lists[base]["title"] == "Base images" and lists[base]["subscribed"]
    images = {i["uuid"]: i for i in lists[base]["images"]}
    assert sorted(images) == sorted([alpha, beta]) and images[alpha]["series"] == "alma-9"
    text = world.run_cli(["site", "available", "--config", config]).stdout
    assert f"list {extra} 'Extra images' v" in text
    assert f"image {alpha} 'alpha' v" in text and "series 'alma-9'" in text

    by_title = _by(config, "Extra images", "by-title")
    by_series = _by(config, "alma-9", "by-series")
    for site in (by_title, by_series):
        code, report = world.sync(site)
        assert code == 0, report
    assert _held(world, by_title) == [gamma]
    assert _held(world, by_series) == [alpha]

    # A second list with the same title: the name no longer says which.
    again = world.new_list("Extra images")
    world.add_image(again, "delta", b"delta image bytes\n" * 50)
    world.publish("a list with the same title")
    world.push("a")
    done = world.run_cli(["site", "sync", "--config", by_title])
    assert done.returncode != 0
    assert "'Extra images' is ambiguous" in done.stderr
    assert extra in done.stderr and again in done.stderr
    assert "Traceback" not in done.stderr
    assert _held(world, by_title) == [gamma]  # nothing changed


def test_resolving_names() -> None:
    catalogue = [ListNames("11111111-1111-4111-8111-111111111111", "Base", ("alma-9",)),
                 ListNames("22222222-2222-4222-8222-222222222222", "Extra", ()),
                 ListNames("33333333-3333-4333-8333-333333333333", "alma-9", ())]
    [title] = resolve([Subscription("r", imagelists=("Extra",))], catalogue, registry="r")
    assert title.imagelists == ("22222222-2222-4222-8222-222222222222",)
    [both] = resolve([Subscription("r", imagelists=("Base", catalogue[0].list_uuid))],
                     catalogue[:2], registry="r")
    assert both.imagelists == (catalogue[0].list_uuid,)  # named twice, taken once
    [by_series] = resolve([Subscription("r", imagelists=("alma-9",))], catalogue[:2],
                          registry="r")
    assert by_series.imagelists == ("*",) and by_series.match == {"gitreg:series": "alma-9"}
    for name, message in (("alma-9", "is ambiguous"), ("Missing", "has no list titled")):
        with pytest.raises(GitregError, match=message):
            resolve([Subscription("r", imagelists=(name,))], catalogue, registry="r")
    assert not is_name("*") and not is_name(catalogue[0].list_uuid) and is_name("Base")
