"""Handlers written for vmcatcher: a shell script like glancepush's gpvmcupdate.

gpvmcupdate builds the image path as ``${VMCATCHER_CACHE_DIR_CACHE}`` directly
followed by ``${VMCATCHER_EVENT_DC_IDENTIFIER}`` and exits non-zero on the
events it does not handle. Real syncs (registry over HTTP, image server,
the gitreg CLI) run the script below with /bin/sh.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gitreg.errors import InvalidDocumentError
from gitreg.site.config import load_config
from gitreg.site.state import SiteState
from tests.site_registry import SiteWorld, sha512

GPVMCUPDATE = """#!/bin/sh
# Like glancepush-vmcatcher's gpvmcupdate: hands Available images to a spool.
spool="$1"
case "$VMCATCHER_EVENT_TYPE" in
  AvailablePostfix)
    image="${VMCATCHER_CACHE_DIR_CACHE}${VMCATCHER_EVENT_DC_IDENTIFIER}"
    test -f "$image" || { echo "no image at $image" >&2; exit 2; }
    cp "$image" "$spool/$VMCATCHER_EVENT_DC_IDENTIFIER"
    ;;
  ExpirePostfix)
    test -f "${VMCATCHER_CACHE_DIR_EXPIRE}${VMCATCHER_EVENT_FILENAME}" || exit 2
    rm -f "$spool/$VMCATCHER_EVENT_DC_IDENTIFIER"
    ;;
  *)
    echo "gpvmcupdate: event $VMCATCHER_EVENT_TYPE not handled" >&2
    exit 1
    ;;
esac
"""


def _site_with_gpvmcupdate(world: SiteWorld, handler_keys: str) -> tuple[Path, Path]:
    config = world.site_config([world.server("a")])
    script = config.parent / "gpvmcupdate"
    script.write_text(GPVMCUPDATE, encoding="utf-8")
    spool = config.parent / "spool"
    spool.mkdir()
    with config.open("a", encoding="utf-8") as out:
        out.write(f'\n[[handler]]\ncommand = ["/bin/sh", "{script}", "{spool}"]\n'
                  f"{handler_keys}\n")
    return config, spool


def _two_images(world: SiteWorld) -> tuple[str, str, str]:
    list_uuid = world.new_list("Base images")
    first = world.add_image(list_uuid, "alpha", b"alpha image bytes\n" * 50)
    second = world.add_image(list_uuid, "beta", b"beta image bytes\n" * 70)
    world.publish("two images")
    return list_uuid, first, second


def test_a_handler_given_only_its_events_sees_the_images_and_never_fails(
        world: SiteWorld) -> None:
    list_uuid, first, second = _two_images(world)
    config, spool = _site_with_gpvmcupdate(
        world, 'events = ["AvailablePostfix", "ExpirePostfix"]')

    code, report = world.sync(config)

    assert code == 0 and report["handler_failures"] == [], report["handler_failures"]
    assert sorted(p.name for p in spool.iterdir()) == sorted([first, second])
    assert sha512((spool / first).read_bytes()) == sha512(b"alpha image bytes\n" * 50)

    world.remove_image(list_uuid, first)
    world.publish("revoke alpha")
    world.push("a")
    code, report = world.sync(config)

    assert code == 0 and report["handler_failures"] == []
    assert [p.name for p in spool.iterdir()] == [second]
    with SiteState.open(load_config(config).state_db) as state:
        assert state.pending_events() == []


def test_failures_on_unhandled_events_are_given_up_after_max_attempts(
        world: SiteWorld) -> None:
    _, first, second = _two_images(world)
    config, spool = _site_with_gpvmcupdate(world, "max_attempts = 2")
    script = next(h.name for h in load_config(config).handlers if "gpvmcupdate" in h.name)

    code, first_run = world.sync(config)
    # Process*, AvailablePrefix: refused by the script; the Postfix copies work.
    assert code == 0 and len(first_run["handler_failures"]) == 4
    assert sorted(p.name for p in spool.iterdir()) == sorted([first, second])
    code, second_run = world.sync(config)
    assert code == 0 and len(second_run["handlers_given_up"]) == 4
    assert all("given up" in f for f in second_run["handlers_given_up"])
    code, third_run = world.sync(config)
    assert code == 0 and len(third_run["handlers_given_up"]) == 2  # the 2nd sync's Process*

    with SiteState.open(load_config(config).state_db) as state:
        open_for_script = [e for e in state.pending_events() if script in e.pending_handlers]
        dropped = [d for e in state.events() for d in e.deliveries
                   if d.handler == script and d.status == "dropped"]
    # Only the last sync's two Process events are still open: nothing piles up.
    assert len(open_for_script) == 2
    assert len(dropped) == 6
    assert all(d.detail.startswith("given up after 2 failed attempts: ") for d in dropped)
    status = world.run_cli(["site", "sync", "--config", config])
    assert "not retried any more" in status.stderr


def test_an_unknown_event_name_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('[site]\nstate_dir = "s"\n[[registry]]\nname = "r"\n'
                      'remotes = ["https://127.0.0.1:1/r.git"]\ntrust_root = "sha256:' + "0" * 64
                      + '"\n\n[[handler]]\ncommand = ["/bin/true"]\n'
                      'events = ["AvailablePostfx"]\n', encoding="utf-8")

    with pytest.raises(InvalidDocumentError) as info:
        load_config(config)

    problems = {p.path: p.message for p in info.value.problems}
    assert "did you mean 'AvailablePostfix'?" in problems["handler[0].events[0]"]
