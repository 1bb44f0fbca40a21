"""`gitreg site hold` / `release`: an image whose URL is gone must not fail every cron run."""

from __future__ import annotations

import json

from tests.site_registry import SiteWorld


def test_a_held_image_failure_exits_0_until_released(world: SiteWorld) -> None:
    list_uuid = world.new_list("Base images")
    gone = world.add_image(list_uuid, "gone", b"gone image bytes\n" * 40)
    kept = world.add_image(list_uuid, "kept", b"kept image bytes\n" * 40)
    world.publish("two images")
    config = world.site_config([world.server("a")])
    world.images.serve("/gone.img", b"", status=404)  # the endorser's URL is gone

    code, report = world.sync(config)
    assert code == 1 and [f["uuid"] for f in report["failed"]] == [gone]
    assert report["downloaded"] == [kept]

    held = world.run_cli(["site", "hold", gone, "--config", config,
                          "--reason", "URL gone, endorser told"])
    assert held.returncode == 0, held.stderr
    done = world.run_cli(["site", "sync", "--config", config])
    assert done.returncode == 0, done.stderr
    assert "1 failed (1 held)" in done.stderr
    assert f"image {gone} failed (held: does not fail the sync)" in done.stderr
    code, report = world.sync(config)
    assert code == 0 and report["failed"] == [{"uuid": gone, "reason": report["failed"][0][
        "reason"], "held": True}]

    status = world.run_cli(["site", "status", "--config", config, "--json"])
    assert [(h["uuid"], h["reason"]) for h in json.loads(status.stdout)["held"]] == [
        (gone, "URL gone, endorser told")]
    shown = world.run_cli(["site", "status", "--config", config])
    assert f"image {gone} held since" in shown.stdout

    released = world.run_cli(["site", "release", gone, "--config", config])
    assert released.returncode == 0, released.stderr
    assert world.sync(config)[0] == 1
    again = world.run_cli(["site", "release", gone, "--config", config])
    assert again.returncode == 2 and f"image {gone} is not held" in again.stderr


def test_holding_an_unknown_image_is_a_usage_error_and_changes_nothing(
        world: SiteWorld) -> None:
    list_uuid = world.new_list("Base images")
    world.add_image(list_uuid, "one", b"one image\n" * 40)
    world.publish("one image")
    config = world.site_config([world.server("a")])
    assert world.sync(config)[0] == 0
    before = world.run_cli(["site", "status", "--config", config, "--json"]).stdout

    unknown = "12345678-1234-4234-8234-123456789012"
    done = world.run_cli(["site", "hold", unknown, "--config", config])

    assert done.returncode == 2
    assert f"no image {unknown} in the site's records" in done.stderr
    assert "Traceback" not in done.stderr
    assert world.run_cli(["site", "status", "--config", config, "--json"]).stdout == before
