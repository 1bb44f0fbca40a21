"""Glance's interoperable import against the real Glance 33: web-download and conversion.

The test Glance (tests/fixtures/glance.py) enables glance-direct and
web-download, gitreg's verify plugin (contrib/glance-verify-plugin) then
the image-conversion import plugin (output raw), and web-download from
127.0.0.1, so a site's ``upload = "web-download"``, ``verify_plugin = true``
and ``convert = "glance"`` run end to end: Glance fetches from the test
image server on 127.0.0.1, checks the bytes with gitreg's plugin before
activation and converts with its own plugin.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.cloud_site import add
from tests.fixtures.glance import CountingProxy, GlanceServer
from tests.site_registry import SiteWorld
from tests.test_adapter_glance import GlanceSite

pytestmark = pytest.mark.slow


@pytest.fixture
def site(world: SiteWorld, glance_server: GlanceServer, glance_proxy: CountingProxy,
         monkeypatch: pytest.MonkeyPatch) -> GlanceSite:
    return GlanceSite(world, glance_server, glance_proxy, monkeypatch)


WEB_DOWNLOAD = 'upload = "web-download"\nverify_plugin = true'


def _paths(site: GlanceSite, image_id: str) -> list[tuple[str, str]]:
    return [(m, p.split("?")[0]) for m, p in site.proxy.requests if image_id in p]


class StatusWatch:
    """Every status Glance shows for one gitreg image, polled from a thread while a sync runs."""

    def __init__(self, glance: GlanceServer, image_uuid: str) -> None:
        self.glance, self.image_uuid = glance, image_uuid
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                found = [i for i in self.glance.images()
                         if i.get("gitreg_image") == self.image_uuid]
            except (OSError, ValueError):  # Glance busy: look again
                found = []
            self.seen.extend(str(i["status"]) for i in found)
            self._stop.wait(0.02)

    def __enter__(self) -> StatusWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _records(site: GlanceSite, image_uuid: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(site.world.state_dir / "state.sqlite") as db:
        return db.execute("SELECT state, remote_id FROM cloud_image WHERE cloud = ? AND "
                          "image_uuid = ?", (site.name, image_uuid)).fetchall()


def test_web_download_full_cycle(site: GlanceSite) -> None:
    site.cloud_toml = WEB_DOWNLOAD + '\nvisibility = "public"'
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
    # gitreg's plugin checked the staged bytes inside Glance's task, before activation.
    assert glance["gitreg_import_verified"] == digest and glance["gitreg_size"] == str(len(body))
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


@pytest.mark.parametrize("served", ["same size", "other size"])
def test_wrong_bytes_at_the_url_never_become_an_active_image(site: GlanceSite,
                                                              served: str) -> None:
    site.cloud_toml = WEB_DOWNLOAD + '\nvisibility = "public"'
    body = os.urandom(120000)
    image = add(site, "swapped", body)
    site.publish("image")
    site.write_config(cloud=False)
    assert site.sync()["exit_code"] == 0  # the site verified the right bytes
    wrong = os.urandom(len(body) if served == "same size" else len(body) + 4096)
    # Then the URL changed; served slowly (about 1 s) so the watch sees the import.
    site.world.images.serve("/swapped.img", wrong, rate=120000)
    site.write_config(cloud=True)
    with StatusWatch(site.glance, image) as watch:
        report = site.sync()
    # The plugin failed Glance's task before _ImportToStore: the image went from
    # importing back to queued and was deleted; no poll ever saw it active.
    assert watch.seen and "active" not in watch.seen, watch.seen
    cloud = site.cloud(report)
    (failed,) = cloud["failed"]
    assert (failed["uuid"], failed["imagelist"]) == (image, site.list_uuid), cloud
    reason = failed["reason"]
    assert "refused by gitreg's verify plugin in Glance before activation" in reason, reason
    assert ("not gitreg_sha512" if served == "same size" else
            f"staged {len(wrong)} bytes, not gitreg_size {len(body)}") in reason, reason
    assert "never active, image deleted" in reason and report["exit_code"] == 1
    assert site.images() == []
    (created,) = [b for m, p, b in site.proxy.json_bodies if (m, p) == ("POST", "/v2/images")]
    assert (created["visibility"], created["os_hidden"]) == ("private", True)
    assert (created["gitreg_sha512"], created["gitreg_size"]) == (
        hashlib.sha512(body).hexdigest(), str(len(body)))
    assert not [r for r in site.proxy.requests if r[0] == "PATCH"], site.proxy.requests
    assert (site.world.state_dir / "cache" / image).read_bytes() == body
    assert _records(site, image) == [("failed", None)]  # nothing registered
    # Refused for good, as a wrong upload is: no new request on the next run.
    site.proxy.requests.clear()
    assert site.cloud(site.sync())["writes"] == 0


@pytest.fixture(scope="module")
def glance_without_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GlanceServer]:
    server = GlanceServer(tmp_path_factory.mktemp("glance-bare"),
                          import_plugins=("image_conversion",))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_glance_without_the_plugin_is_found_out_and_its_import_deleted(
        world: SiteWorld, glance_without_plugin: GlanceServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The site says verify_plugin = true, Glance does not run it: the image goes
    # active unverified (the window the plugin closes), then gitreg finds no
    # gitreg_import_verified, deletes it and says what to fix.
    proxy = CountingProxy(glance_without_plugin)
    try:
        site = GlanceSite(world, glance_without_plugin, proxy, monkeypatch)
        site.cloud_toml = WEB_DOWNLOAD
        image = add(site, "unchecked", os.urandom(80000))
        site.publish("image")
        report = site.sync()
        (failed,) = site.cloud(report)["failed"]
        assert failed["uuid"] == image, failed
        assert failed["reason"].startswith("Glance made the web-download import active without "
                                           "gitreg's verify plugin's gitreg_import_verified")
        assert "image_import_plugins" in failed["reason"]
        assert site.images() == [] and report["exit_code"] == 1
        assert _records(site, image) == []  # an import failure: tried again next run
    finally:
        proxy.close()


def test_a_url_glance_cannot_fetch_fails_this_run_and_the_next_run_imports(
        site: GlanceSite) -> None:
    site.cloud_toml = WEB_DOWNLOAD
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
    site.cloud_toml = f'disk_formats = ["raw"]\nconvert = "glance"\nupload = "{upload}"\n' \
        'verify_plugin = true'
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
    # gitreg's plugin ran first, on the qcow2 bytes the list vouches for.
    assert glance["gitreg_import_verified"] == glance["gitreg_sha512"]
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


def _import_directly(glance: GlanceServer, body: bytes, **props: str) -> dict[str, Any]:
    """glance-direct by hand (no gitreg): create, stage ``body``, import, wait for the task."""
    api = f"{glance.url}/v2/images"
    created = requests.post(api, json={"name": "by-hand", "disk_format": "raw",
                                       "container_format": "bare", **props}, timeout=30).json()
    staged = requests.put(f"{api}/{created['id']}/stage", data=body, timeout=30,
                          headers={"Content-Type": "application/octet-stream"})
    assert staged.status_code == 204, staged.text
    started = requests.post(f"{api}/{created['id']}/import", timeout=30,
                            json={"method": {"name": "glance-direct"}})
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 120
    seen: tuple[Any, ...] = ()
    while time.monotonic() < deadline:
        image: dict[str, Any] = requests.get(f"{api}/{created['id']}", timeout=30).json()
        done = image["status"] == "active" or image.get("os_glance_failed_import")
        tasks = requests.get(f"{api}/{created['id']}/tasks", timeout=30).json()["tasks"]
        # The image is reverted before the task is marked failed: wait for both.
        ended = bool(tasks) and tasks[-1]["status"] in ("failure", "success")
        if done and ended and not image.get("os_glance_import_task"):
            image["task_message"] = tasks[-1]["message"]
            requests.delete(f"{api}/{created['id']}", timeout=30)
            return image
        seen = (image["status"], image.get("os_glance_failed_import"),
                image.get("os_glance_import_task"),
                [(t["status"], t["message"]) for t in tasks])
        time.sleep(0.1)
    # What Glance last said (image status, failed stores, task lock, tasks) tells a
    # hung task from a lock left behind.
    raise AssertionError(f"import of {created['id']} did not end: {seen}; see {glance.log}")


def test_the_plugin_refuses_staged_bytes_on_glance_direct_and_leaves_other_images_alone(
        glance_server: GlanceServer) -> None:
    # glance-direct as any client may do it: the plugin's own revert (no download
    # task here) puts the image back to queued with the store failed.
    body = os.urandom(70000)
    wrong = _import_directly(glance_server, body,
                             gitreg_sha512=hashlib.sha512(b"other").hexdigest())
    assert (wrong["status"], wrong["os_glance_failed_import"]) == ("queued", "file"), wrong
    assert wrong["task_message"].startswith("gitreg_verify refused: image "), wrong
    assert "gitreg_import_verified" not in wrong
    right = _import_directly(glance_server, body, gitreg_sha512=hashlib.sha512(body).hexdigest(),
                             gitreg_size=str(len(body)))
    assert right["status"] == "active"
    assert right["gitreg_import_verified"] == right["os_hash_value"] == \
        hashlib.sha512(body).hexdigest()
    other = _import_directly(glance_server, body)  # not gitreg's: imported unchecked
    assert other["status"] == "active" and "gitreg_import_verified" not in other
