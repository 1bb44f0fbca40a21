"""The Glance adapter against a real Glance 33 on 127.0.0.1 (tests/fixtures/glance.py).

The adapter's Image API v2 calls pass through a counting proxy, so "a re-run
writes nothing" is counted on the wire, and the proxy can take Glance down
at an exact request. tests/fixtures/cloud_site.py builds the registry and
the site; see tests/test_adapter_opennebula.py for the same scenario against
the OpenNebula stand-in.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.cloud_site import DAY, CloudSite, add, qcow2
from tests.fixtures.glance import CountingProxy, GlanceServer
from tests.site_registry import SiteWorld

pytestmark = pytest.mark.slow


class GlanceSite(CloudSite):
    def __init__(self, world: SiteWorld, glance: GlanceServer, proxy: CountingProxy,
                 env: pytest.MonkeyPatch) -> None:
        super().__init__(world, 'type = "glance"\ncloud = "test"')
        self.glance = glance
        self.proxy = proxy
        clouds = glance.clouds_yaml(world.root / "clouds.yaml", endpoint=proxy.url)
        env.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))

    def images(self) -> list[dict[str, Any]]:
        return [i for i in self.glance.images() if i.get("gitreg_cloud") == self.name]

    def image(self, image_uuid: str) -> dict[str, Any]:
        (found,) = [i for i in self.images() if i.get("gitreg_image") == image_uuid]
        return found



@pytest.fixture
def site(world: SiteWorld, glance_server: GlanceServer, glance_proxy: CountingProxy,
         monkeypatch: pytest.MonkeyPatch) -> GlanceSite:
    return GlanceSite(world, glance_server, glance_proxy, monkeypatch)


def test_full_cycle_registers_every_property_and_a_rerun_writes_nothing(site: GlanceSite) -> None:
    body = os.urandom(3 * 1024 * 1024)
    image = add(site, "ubuntu-22.04", body, sl_osname="Ubuntu", hv_ram_minimum="2048",
                ad_mpuri="https://appdb.example.org/store/vm/image/x:1/")
    site.publish("one image")
    report = site.sync()
    assert site.cloud(report)["error"] is None, report
    assert site.cloud(report)["uploaded"] == [image]
    glance = site.image(image)
    assert glance["status"] == "active"
    assert glance["os_hidden"] is False
    assert glance["name"] == "ubuntu-22.04"
    assert glance["disk_format"] == "raw" and glance["container_format"] == "bare"
    assert glance["os_hash_algo"] == "sha512"
    assert glance["os_hash_value"] == hashlib.sha512(body).hexdigest()
    assert glance["visibility"] == "private"
    assert "gitreg" in glance["tags"]
    expected = {
        "os_distro": "ubuntu", "os_version": "22.04", "architecture": "x86_64",
        "hypervisor_type": "qemu", "image_original_user": "ubuntu",
        "image_description": "ubuntu-22.04", "uuid_validity": "none",
        "gitreg_image": image, "gitreg_imagelist": site.list_uuid, "gitreg_registry": "test",
        "gitreg_version": "1", "gitreg_sha512": hashlib.sha512(body).hexdigest(),
        "vmcatcher_event_dc_title": "ubuntu-22.04",
        "vmcatcher_event_dc_description": "ubuntu-22.04",
        "vmcatcher_event_ad_mpuri": "https://appdb.example.org/store/vm/image/x:1/",
        "vmcatcher_event_sl_arch": "amd64", "vmcatcher_event_hv_format": "raw",
        "vmcatcher_event_il_dc_identifier": site.list_uuid,
    }
    assert {k: glance.get(k) for k in expected} == expected
    assert glance["image_source"] == glance["vmcatcher_event_hv_uri"]
    assert glance["image_source"].endswith("/ubuntu-22.04.img")
    assert glance["min_ram"] == 2048 and glance["min_disk"] == 1
    assert len(glance["gitreg_commit"]) == 40
    assert glance["provided_until"][:2] == "20" and glance["image_build_date"][:2] == "20"

    before = site.images()
    site.proxy.requests.clear()
    again = site.sync()
    assert site.proxy.writes == [], site.proxy.writes
    assert site.cloud(again)["writes"] == 0 and site.cloud(again)["uploaded"] == []
    assert site.images() == before


def test_qcow2_is_converted_for_a_raw_only_cloud_and_a_backing_file_is_refused(
        site: GlanceSite, tmp_path: Path) -> None:
    site.cloud_toml = 'disk_formats = ["raw"]'
    plain = add(site, "plain", qcow2(tmp_path / "plain.qcow2"), fmt="qcow2")
    base = tmp_path / "base.qcow2"
    qcow2(base)
    backed = add(site, "backed", qcow2(tmp_path / "over.qcow2", backing=base), fmt="qcow2")
    liar = add(site, "liar", os.urandom(65536), fmt="qcow2")
    site.publish("three qcow2")
    report = site.sync()
    cloud = site.cloud(report)
    assert cloud["uploaded"] == [plain]
    assert "backing file" in dict((f["uuid"], f["reason"]) for f in cloud["failed"])[backed]
    assert "the file is raw" in dict((f["uuid"], f["reason"]) for f in cloud["failed"])[liar]
    assert report["exit_code"] == 1
    converted = site.image(plain)
    raw = bytes(2 * 1024 * 1024)  # an empty 2 MiB qcow2 reads as 2 MiB of zeros
    assert converted["disk_format"] == "raw" and converted["status"] == "active"
    assert converted["os_hash_value"] == hashlib.sha512(raw).hexdigest()
    assert converted["gitreg_uploaded_sha512"] == hashlib.sha512(raw).hexdigest()
    assert converted["gitreg_sha512"] != converted["os_hash_value"]
    assert converted["gitreg_source_format"] == "qcow2"
    assert [i["gitreg_image"] for i in site.images()] == [plain]
    assert not list((site.world.state_dir / "convert").iterdir())
    # The refused images stay refused without new requests; the cache is untouched.
    site.proxy.requests.clear()
    assert site.cloud(site.sync())["writes"] == 0
    assert (site.world.state_dir / "cache" / backed).exists()


def test_a_new_version_of_a_series_takes_the_fixed_name(site: GlanceSite) -> None:
    old = add(site, "alma-9.3", os.urandom(70000), version="9.3", series="AlmaLinux 9")
    site.publish("9.3")
    site.sync()
    assert site.image(old)["name"] == "AlmaLinux 9"
    new = add(site, "alma-9.4", os.urandom(70000), version="9.4", series="AlmaLinux 9")
    site.publish("9.4")
    report = site.sync()
    assert site.cloud(report)["uploaded"] == [new]
    assert (site.image(new)["name"], site.image(new)["os_hidden"]) == ("AlmaLinux 9", False)
    assert (site.image(old)["name"], site.image(old)["os_hidden"]) == ("AlmaLinux 9 (9.3)",
                                                                       True)
    assert site.image(old)["status"] == "active"


def test_revocation_hides_then_deactivates_then_deletes_and_restores_in_time(
        site: GlanceSite) -> None:
    site.cloud_toml = 'retire = { hide = "0d", deactivate = "2d", delete = "5d" }'
    body = os.urandom(50000)
    image = add(site, "revoked", body)
    site.publish("image")
    site.sync()
    first_id = site.image(image)["id"]
    site.world.remove_image(site.list_uuid, image)
    site.publish("revoke")
    site.sync(site.t0 + timedelta(hours=1))
    glance = site.image(image)
    assert (glance["status"], glance["os_hidden"], glance["name"]) == (
        "active", True, "revoked (1)")
    site.sync(site.t0 + 2 * DAY + timedelta(hours=2))
    assert site.image(image)["status"] == "deactivated"
    # Published again within the grace period: the same Glance image comes back.
    add(site, "revoked", body, image_uuid=image)
    site.publish("restore")
    report = site.sync(site.t0 + 3 * DAY)
    assert site.cloud(report)["restored"] == [image] and site.cloud(report)["uploaded"] == []
    glance = site.image(image)
    assert (glance["id"], glance["status"], glance["os_hidden"], glance["name"]) == (
        first_id, "active", False, "revoked")
    site.world.remove_image(site.list_uuid, image)
    site.publish("revoke again")
    site.sync(site.t0 + 4 * DAY)
    site.sync(site.t0 + 6 * DAY)
    assert site.image(image)["status"] == "deactivated"  # the clock restarted at day 4
    report = site.sync(site.t0 + 9 * DAY + timedelta(hours=1))
    assert {"uuid": image, "id": first_id, "action": "deleted"} in site.cloud(report)["retired"]
    assert site.images() == []


def test_wrong_bytes_never_become_an_active_image(site: GlanceSite) -> None:
    body = os.urandom(200000)
    image = add(site, "tampered", body)
    site.publish("image")
    site.write_config(cloud=False)
    site.sync()
    cached = site.world.state_dir / "cache" / image
    flipped = bytearray(cached.read_bytes())
    flipped[-1] ^= 1
    cached.write_bytes(bytes(flipped))
    site.write_config(cloud=True)
    report = site.sync()
    cloud = site.cloud(report)
    assert image in {f["uuid"] for f in cloud["failed"]}, cloud
    assert "SHA-512" in cloud["failed"][0]["reason"]
    assert site.images() == []
    assert report["exit_code"] == 1


def test_glance_stopped_mid_sync_is_reported_and_the_next_run_converges(
        site: GlanceSite) -> None:
    images = [add(site, f"img-{i}", os.urandom(40000 + i)) for i in range(3)]
    site.publish("three")
    site.proxy.stop_glance_after_writes = 4  # the first image: POST, PUT, PATCH + 1
    report = site.sync()
    cloud = site.cloud(report)
    assert cloud["error"] and "cloud" in cloud["error"], cloud
    assert report["exit_code"] == 3
    assert sorted(report["downloaded"]) == sorted(images)
    for image in images:
        assert (site.world.state_dir / "cache" / image).exists()
    site.proxy.stop_glance_after_writes = None
    site.glance.start()
    again = site.sync()
    assert site.cloud(again)["error"] is None and again["exit_code"] == 0
    assert sorted(i["gitreg_image"] for i in site.images()) == sorted(images)
    assert all(i["status"] == "active" and not i["os_hidden"] for i in site.images())


def test_sigkill_between_upload_and_record_leaves_no_duplicate(
        site: GlanceSite, run_cli: Any) -> None:
    image = add(site, "killed", os.urandom(90000))
    site.publish("image")
    config = site.write_config()
    done = run_cli(["site", "sync", "--config", config, "--json"],
                   env={"GITREG_TEST_CRASH_AT": "cloud-upload"})
    assert done.returncode == -9, done.stderr
    (uploaded,) = site.images()
    assert uploaded["status"] == "active" and uploaded["os_hidden"] is True
    # A second copy, as two interrupted runs would leave: the next run keeps one.
    copy = {k: v for k, v in uploaded.items() if k.startswith(("gitreg_", "vmcatcher_"))}
    created = requests.post(f"{site.glance.url}/v2/images", timeout=30, json={
        "name": "killed", "disk_format": "raw", "container_format": "bare",
        "tags": ["gitreg"], **copy}).json()
    requests.put(f"{site.glance.url}/v2/images/{created['id']}/file", timeout=30,
                 data=(site.world.state_dir / "cache" / image).read_bytes(),
                 headers={"Content-Type": "application/octet-stream"})
    done = run_cli(["site", "sync", "--config", config, "--json"])
    assert done.returncode == 0, done.stderr
    (kept,) = site.images()
    assert kept["id"] in (uploaded["id"], created["id"])
    assert (kept["status"], kept["os_hidden"]) == ("active", False)
    assert kept["os_hash_value"] == uploaded["os_hash_value"]
    (cleaned,) = json.loads(done.stdout)["clouds"][0]["cleaned"]
    assert cleaned["reason"].startswith("duplicate of ") and cleaned["id"] != kept["id"]


def test_shared_images_are_shared_with_the_project_of_their_vo(site: GlanceSite) -> None:
    site.cloud_toml = 'visibility = "shared"\nprojects = { "vo.example.org" = "project-a" }'
    site.world.cli("list", "set", site.list_uuid, "ad:vo", "vo.example.org")
    image = add(site, "shared", os.urandom(30000))
    site.publish("shared image")
    report = site.sync()
    assert site.cloud(report)["error"] is None, report
    glance = site.image(image)
    assert glance["visibility"] == "shared" and glance["vmcatcher_event_vo"] == "vo.example.org"
    members = requests.get(f"{site.glance.url}/v2/images/{glance['id']}/members",
                           timeout=30).json()["members"]
    assert [(m["member_id"], m["status"]) for m in members] == [("project-a", "accepted")]
    # The VO now maps to another project: the old member goes, the new one comes.
    site.cloud_toml = 'visibility = "shared"\nprojects = { "vo.example.org" = "project-b" }'
    site.write_config()
    site.sync()
    members = requests.get(f"{site.glance.url}/v2/images/{glance['id']}/members",
                           timeout=30).json()["members"]
    assert [(m["member_id"], m["status"]) for m in members] == [("project-b", "accepted")]
    site.proxy.requests.clear()
    site.sync()
    assert site.proxy.writes == []
