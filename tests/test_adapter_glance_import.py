"""Glance's interoperable import against the real Glance 33: web-download and conversion.

The test Glance (tests/fixtures/glance.py) enables glance-direct and
web-download, the image-conversion import plugin (output raw) and
web-download from 127.0.0.1, so a site's ``upload = "web-download"`` and
``convert = "glance"`` run end to end: Glance fetches from the test image
server on 127.0.0.1 and converts with its own plugin.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.cloud_site import add
from tests.fixtures.glance import CountingProxy, GlanceServer
from tests.site_registry import SiteWorld
from tests.test_adapter_glance import GlanceSite

pytestmark = pytest.mark.slow


@pytest.fixture
def site(world: SiteWorld, glance_server: GlanceServer, glance_proxy: CountingProxy,
         monkeypatch: pytest.MonkeyPatch) -> GlanceSite:
    return GlanceSite(world, glance_server, glance_proxy, monkeypatch)


def _paths(site: GlanceSite, image_id: str) -> list[tuple[str, str]]:
    return [(m, p.split("?")[0]) for m, p in site.proxy.requests if image_id in p]


def test_web_download_full_cycle(site: GlanceSite) -> None:
    site.cloud_toml = 'upload = "web-download"\nvisibility = "public"'
    body = os.urandom(400000)
    image = add(site, "fetched", body, version="2")
    site.publish("one image")
    report = site.sync()
    cloud = site.cloud(report)
    assert (cloud["error"], cloud["uploaded"], cloud["failed"]) == (None, [image], []), cloud
    glance = site.image(image)
    digest = hashlib.sha512(body).hexdigest()
    assert (glance["status"], glance["visibility"], glance["os_hidden"]) == (
        "active", "public", False)
    assert (glance["os_hash_algo"], glance["os_hash_value"]) == ("sha512", digest)
    assert glance["gitreg_sha512"] == glance["gitreg_uploaded_sha512"] == digest
    assert glance["image_source"].endswith("/fetched.img") and glance["size"] == len(body)
    # Glance fetched the bytes itself (the site's download, then Glance's), and no
    # byte went through the Image API; the image was made public only once checked.
    assert len(site.world.images.hits("/fetched.img", at_least=2)) == 2
    calls = _paths(site, glance["id"])
    assert ("POST", f"/v2/images/{glance['id']}/import") in calls
    assert not [c for c in calls if c[0] == "PUT"], calls
    (created,) = [b for m, p, b in site.proxy.json_bodies if (m, p) == ("POST", "/v2/images")]
    assert (created["visibility"], created["os_hidden"]) == ("private", True)
    (imported,) = [b for m, p, b in site.proxy.json_bodies if p.endswith("/import")]
    assert imported == {"method": {"name": "web-download", "uri": glance["image_source"]}}
    site.proxy.requests.clear()
    again = site.sync()
    assert site.proxy.writes == [] and site.cloud(again)["writes"] == 0


def test_wrong_bytes_at_the_url_never_become_a_visible_image(site: GlanceSite) -> None:
    site.cloud_toml = 'upload = "web-download"\nvisibility = "public"'
    body = os.urandom(120000)
    image = add(site, "swapped", body)
    site.publish("image")
    site.write_config(cloud=False)
    assert site.sync()["exit_code"] == 0  # the site verified the right bytes
    site.world.images.serve("/swapped.img", os.urandom(len(body)))  # then the URL changed
    site.write_config(cloud=True)
    report = site.sync()
    cloud = site.cloud(report)
    (failed,) = cloud["failed"]
    assert failed["uuid"] == image and "SHA-512" in failed["reason"], cloud
    assert "image deleted" in failed["reason"] and report["exit_code"] == 1
    assert site.images() == []
    # Created private and hidden, never changed before it was deleted.
    (created,) = [b for m, p, b in site.proxy.json_bodies if (m, p) == ("POST", "/v2/images")]
    assert (created["visibility"], created["os_hidden"]) == ("private", True)
    assert not [r for r in site.proxy.requests if r[0] == "PATCH"], site.proxy.requests
    assert (site.world.state_dir / "cache" / image).read_bytes() == body
    # Refused for good, as a wrong upload is: no new request on the next run.
    site.proxy.requests.clear()
    assert site.cloud(site.sync())["writes"] == 0


def test_a_url_glance_cannot_fetch_fails_this_run_and_the_next_run_imports(
        site: GlanceSite) -> None:
    site.cloud_toml = 'upload = "web-download"'
    body = os.urandom(50000)
    image = add(site, "gone", body)
    site.publish("image")
    site.write_config(cloud=False)
    site.sync()
    site.world.images.serve("/gone.img", status=404)
    site.write_config(cloud=True)
    cloud = site.cloud(site.sync())
    (failed,) = cloud["failed"]
    assert "web-download import failed" in failed["reason"], failed
    assert site.images() == []
    site.world.images.serve("/gone.img", body)
    again = site.cloud(site.sync())
    assert (again["uploaded"], again["failed"]) == ([image], [])
    assert site.image(image)["os_hash_value"] == hashlib.sha512(body).hexdigest()


def _qcow2_with_data(tmp_path: Path) -> tuple[bytes, bytes]:
    """A qcow2 holding 1 MiB of random data: its bytes and the raw disk it converts to."""
    raw = os.urandom(1024 * 1024)
    (tmp_path / "disk.raw").write_bytes(raw)
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2",
                    str(tmp_path / "disk.raw"), str(tmp_path / "disk.qcow2")], check=True)
    return (tmp_path / "disk.qcow2").read_bytes(), raw


@pytest.mark.parametrize("upload", ["stream", "web-download"])
def test_qcow2_converted_by_glance_arrives_raw_with_both_hashes(
        site: GlanceSite, tmp_path: Path, upload: str) -> None:
    site.cloud_toml = f'disk_formats = ["raw"]\nconvert = "glance"\nupload = "{upload}"'
    qcow2_bytes, raw = _qcow2_with_data(tmp_path)
    image = add(site, f"converted-{upload}", qcow2_bytes, fmt="qcow2")
    site.publish("qcow2")
    cloud = site.cloud(site.sync())
    assert (cloud["uploaded"], cloud["failed"]) == ([image], []), cloud
    glance = site.image(image)
    assert (glance["status"], glance["disk_format"], glance["size"]) == (
        "active", "raw", len(raw))
    assert glance["os_hash_value"] == glance["gitreg_uploaded_sha512"] == \
        hashlib.sha512(raw).hexdigest()
    assert glance["gitreg_sha512"] == hashlib.sha512(qcow2_bytes).hexdigest()
    assert glance["gitreg_source_format"] == "qcow2"
    calls = _paths(site, glance["id"])
    # glance-direct stages the qcow2 (through the withholding check); web-download
    # lets Glance fetch it. Glance converts either way; no raw byte is uploaded.
    staged = ("PUT", f"/v2/images/{glance['id']}/stage")
    assert (staged in calls) == (upload == "stream"), calls
    assert ("PUT", f"/v2/images/{glance['id']}/file") not in calls
    (imported,) = [b for m, p, b in site.proxy.json_bodies if p.endswith("/import")]
    assert imported["method"]["name"] == ("glance-direct" if upload == "stream"
                                          else "web-download")
    assert not list((site.world.state_dir / "convert").iterdir())
    site.proxy.requests.clear()
    assert site.cloud(site.sync())["writes"] == 0


def test_glance_conversion_is_refused_when_the_result_could_not_be_checked(
        site: GlanceSite, tmp_path: Path) -> None:
    site.cloud_toml = 'disk_formats = ["vmdk"]\nconvert = "glance"'
    qcow2_bytes, _ = _qcow2_with_data(tmp_path)
    image = add(site, "unchecked", qcow2_bytes, fmt="qcow2")
    site.publish("qcow2")
    cloud = site.cloud(site.sync())
    (failed,) = cloud["failed"]
    assert failed["uuid"] == image and "only into raw" in failed["reason"]
    assert site.images() == [] and cloud["writes"] == 0
