"""The OpenNebula adapter: the Glance scenario against the XML-RPC stand-in, through pyone.

tests/fixtures/opennebula.py is a stand-in built from the XML-RPC API
reference, not OpenNebula. ``test_a_real_opennebula`` talks to a real one
when ``ONE_XMLRPC`` (endpoint), ``ONE_AUTH`` (a file holding user:password)
and ``ONE_DATASTORE`` are set, and the front-end can read this machine's
cache files.
"""

from __future__ import annotations

import hashlib
import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cloud_site import DAY, CloudSite, add, qcow2
from tests.fixtures.opennebula import DISABLED, READY, OpenNebulaStandIn
from tests.site_registry import SiteWorld

pytestmark = pytest.mark.slow


class NebulaSite(CloudSite):
    def __init__(self, world: SiteWorld, one: OpenNebulaStandIn) -> None:
        auth = world.root / "one_auth"
        auth.write_text(one.auth + "\n")
        super().__init__(world, f'type = "opennebula"\nendpoint = "{one.url}"\n'
                                f'auth_file = "{auth}"\ndatastore = 1\ntemplate = true\n'
                                'permissions = "640"')
        self.one = one

    def images(self) -> list[dict[str, Any]]:
        return [{"id": i, **image} for i, image in sorted(self.one.images.items())
                if image["TEMPLATE"].get("GITREG_CLOUD") == self.name]

    def image(self, image_uuid: str) -> dict[str, Any]:
        (found,) = [i for i in self.images() if i["TEMPLATE"]["GITREG_IMAGE"] == image_uuid]
        return found


@pytest.fixture
def site(world: SiteWorld, opennebula: OpenNebulaStandIn) -> NebulaSite:
    return NebulaSite(world, opennebula)


def test_full_cycle_creates_image_and_template_and_a_rerun_writes_nothing(
        site: NebulaSite) -> None:
    body = os.urandom(300000)
    image = add(site, "ubuntu-22.04", body, sl_osname="Ubuntu", hv_ram_minimum="2048",
                hv_core_minimum="2", ad_mpuri="https://appdb.example.org/x:1/")
    site.publish("one image")
    report = site.sync()
    assert site.cloud(report)["uploaded"] == [image], site.cloud(report)
    one = site.image(image)
    assert (one["NAME"], one["STATE"]) == ("ubuntu-22.04", READY)
    assert Path(one["SOURCE"]).read_bytes() == body
    assert one["PERMISSIONS"] == [1, 1, 0, 1, 0, 0, 0, 0, 0]  # "640"
    template = one["TEMPLATE"]
    assert (template["TYPE"], template["DESCRIPTION"]) == ("OS", "ubuntu-22.04")
    assert template["GITREG_IMAGE"] == image and template["GITREG_HIDDEN"] == "NO"
    assert template["GITREG_SHA512"] == hashlib.sha512(body).hexdigest()
    assert template["VMCATCHER_EVENT_DC_TITLE"] == "ubuntu-22.04"
    assert template["VMCATCHER_EVENT_AD_MPURI"] == "https://appdb.example.org/x:1/"
    assert (template["OS_DISTRO"], template["ARCHITECTURE"]) == ("ubuntu", "x86_64")
    (vm,) = site.one.templates.values()
    assert (vm["MEMORY"], vm["CPU"], vm["VCPU"], vm["OS"], vm["DISK"]) == (
        "2048", "2", "2", {"ARCH": "x86_64"}, {"IMAGE_ID": str(one["id"])})
    site.one.calls.clear()
    again = site.sync()
    assert site.one.writes == [] and site.cloud(again)["writes"] == 0


def test_conversion_backing_files_and_wrong_bytes(site: NebulaSite, tmp_path: Path) -> None:
    site.cloud_toml = 'disk_formats = ["raw"]'
    plain = add(site, "plain", qcow2(tmp_path / "plain.qcow2"), fmt="qcow2")
    base = tmp_path / "base.qcow2"
    qcow2(base)
    backed = add(site, "backed", qcow2(tmp_path / "over.qcow2", backing=base), fmt="qcow2")
    tampered = add(site, "tampered", os.urandom(70000))
    site.publish("three")
    site.write_config(cloud=False)
    site.sync()
    cached = site.world.state_dir / "cache" / tampered
    cached.write_bytes(cached.read_bytes()[:-1] + b"!")
    site.write_config(cloud=True)
    cloud = site.cloud(site.sync())
    reasons = {f["uuid"]: f["reason"] for f in cloud["failed"]}
    assert "backing file" in reasons[backed] and "SHA-512" in reasons[tampered]
    (one,) = site.images()
    assert one["TEMPLATE"]["GITREG_IMAGE"] == plain
    assert Path(one["SOURCE"]).read_bytes() == bytes(2 * 1024 * 1024)


def test_series_retirement_and_restoration(site: NebulaSite) -> None:
    site.cloud_toml = 'retire = { hide = "0d", deactivate = "2d", delete = "5d" }'
    old = add(site, "alma-9.3", os.urandom(50000), version="9.3", series="AlmaLinux 9")
    site.publish("9.3")
    site.sync()
    new = add(site, "alma-9.4", os.urandom(50000), version="9.4", series="AlmaLinux 9")
    site.publish("9.4")
    site.sync()
    assert site.image(new)["NAME"] == "AlmaLinux 9"
    assert site.image(old)["NAME"] == "AlmaLinux 9 (9.3)"
    assert site.image(old)["PERMISSIONS"] == [1, 1, 0, 0, 0, 0, 0, 0, 0]  # hidden: owner only
    site.world.remove_image(site.list_uuid, old)
    site.publish("revoke 9.3")
    site.sync(site.t0 + timedelta(hours=1))
    assert site.image(old)["NAME"].startswith("EXPIRED_")
    site.sync(site.t0 + 2 * DAY + timedelta(hours=2))
    assert site.image(old)["STATE"] == DISABLED
    site.one.use(site.image(new)["id"])  # a VM runs from 9.4
    site.world.remove_image(site.list_uuid, new)
    site.publish("revoke 9.4")
    site.sync(site.t0 + 3 * DAY)
    site.sync(site.t0 + 9 * DAY)
    assert [i["TEMPLATE"]["GITREG_IMAGE"] for i in site.images()] == [new]  # still in use
    assert site.image(new)["NAME"].startswith("EXPIRED_")
    site.one.images[site.image(new)["id"]]["RUNNING_VMS"] = 0
    site.one.images[site.image(new)["id"]]["STATE"] = READY
    site.sync(site.t0 + 10 * DAY)
    assert site.images() == [] and site.one.templates == {}


def test_a_restored_image_is_enabled_again_not_uploaded(site: NebulaSite) -> None:
    site.cloud_toml = 'retire = { hide = "0d", deactivate = "1d", delete = "5d" }'
    body = os.urandom(40000)
    image = add(site, "back", body)
    site.publish("image")
    site.sync()
    first = site.image(image)["id"]
    site.world.remove_image(site.list_uuid, image)
    site.publish("revoke")
    site.sync(site.t0 + timedelta(hours=1))  # the grace periods start here
    site.sync(site.t0 + DAY + timedelta(hours=2))
    assert site.image(image)["STATE"] == DISABLED
    add(site, "back", body, image_uuid=image)
    site.publish("restore")
    report = site.sync(site.t0 + 3 * DAY)
    assert site.cloud(report)["restored"] == [image]
    one = site.image(image)
    assert (one["id"], one["STATE"], one["NAME"]) == (first, READY, "back")


def test_stand_in_down_mid_sync_is_reported_and_the_next_run_converges(
        site: NebulaSite) -> None:
    images = [add(site, f"img-{i}", os.urandom(30000 + i)) for i in range(3)]
    site.publish("three")
    site.one.down_after_writes = 3
    report = site.sync()
    assert site.cloud(report)["error"] and report["exit_code"] == 3
    assert all((site.world.state_dir / "cache" / i).exists() for i in images)
    site.one.down_after_writes = None
    site.one.down = False
    again = site.sync()
    assert site.cloud(again)["error"] is None and again["exit_code"] == 0
    assert sorted(i["TEMPLATE"]["GITREG_IMAGE"] for i in site.images()) == sorted(images)


def test_sigkill_between_upload_and_record_leaves_no_duplicate(
        site: NebulaSite, run_cli: Any) -> None:
    image = add(site, "killed", os.urandom(60000))
    site.publish("image")
    config = site.write_config()
    done = run_cli(["site", "sync", "--config", config, "--json"],
                   env={"GITREG_TEST_CRASH_AT": "cloud-upload"})
    assert done.returncode == -signal.SIGKILL, done.stderr
    (first,) = site.images()
    done = run_cli(["site", "sync", "--config", config, "--json"])
    assert done.returncode == 0, done.stderr
    (kept,) = site.images()
    assert kept["id"] == first["id"] and kept["TEMPLATE"]["GITREG_IMAGE"] == image
    assert kept["TEMPLATE"]["GITREG_HIDDEN"] == "NO"


@pytest.mark.skipif(not (os.environ.get("ONE_XMLRPC") and os.environ.get("ONE_AUTH")
                         and os.environ.get("ONE_DATASTORE")),
                    reason="set ONE_XMLRPC, ONE_AUTH and ONE_DATASTORE to test a real "
                           "OpenNebula")
def test_a_real_opennebula(world: SiteWorld) -> None:
    site = CloudSite(world, f'type = "opennebula"\nendpoint = "{os.environ["ONE_XMLRPC"]}"\n'
                            f'auth_file = "{os.environ["ONE_AUTH"]}"\n'
                            f'datastore = {int(os.environ["ONE_DATASTORE"])}\n'
                            'retire = { hide = "0d", deactivate = "0d", delete = "0d" }')
    image = add(site, "gitreg-test", os.urandom(1024 * 1024))
    site.publish("image")
    first = site.cloud(site.sync())
    assert first["error"] is None and first["uploaded"] == [image], first
    assert site.cloud(site.sync())["writes"] == 0
    world.remove_image(site.list_uuid, image)
    site.publish("revoke")
    retired = site.cloud(site.sync(site.t0 + DAY))
    assert {"deleted"} <= {r["action"] for r in retired["retired"]}, retired
