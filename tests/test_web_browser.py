"""The web catalogue in a real headless Chromium (Selenium with Debian's chromedriver).

`gitreg web serve` runs as a user would start it, over a registry whose
images live on a local HTTP server, so that following the latest link lands
on a real page. Screenshots go to the test's temporary directory
(``index.png``, ``image.png``). CI installs Chromium (scripts/chromium-setup,
called by .ci/run) and must run these tests; elsewhere they skip if it is
missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.catalogue_world import HOSTILE_MD, CatalogueWorld
from tests.registry_simulator import new_id

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the browser tests: scripts/chromium-setup did not "
                           "install chromium and chromium-driver")
    pytest.skip("chromium and chromium-driver are not installed (run scripts/chromium-setup)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


class _ImageHost(BaseHTTPRequestHandler):
    """Stands in for the image mirror: every path answers with its own name."""

    def do_GET(self) -> None:
        body = f"image file {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHost)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


class Browsed:
    def __init__(self, world: CatalogueWorld, ids: dict[str, str], host: str,
                 base: str) -> None:
        self.world = world
        self.ids = ids
        self.host = host
        self.base = base

    def image(self, title: str, version: str, **kw: Any) -> dict[str, Any]:
        name = title.split(maxsplit=1)[0]
        return self.world.image(title, version=version, seed=f"{title}-{version}",
                                extra={"hv:uri": f"{self.host}/{name}-{version}.img"}, **kw)


def _start_server(registry: Path, tmp: Path) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "gitreg", "web", "serve", "-r", str(registry),
               "--port", "0", "--poll", "0", "--out", str(tmp / "served")]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True)
    assert process.stderr is not None
    line = process.stderr.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if match is None:
        process.kill()
        raise AssertionError(f"gitreg web serve did not start: {line}{process.stderr.read()}")
    return process, f"http://127.0.0.1:{match.group(1)}"


@pytest.fixture(scope="module")
def browsed(tmp_path_factory: pytest.TempPathFactory,
            image_host: str) -> Iterator[Browsed]:
    tmp = tmp_path_factory.mktemp("browsed")
    world = CatalogueWorld.create(tmp / "registry.git")
    ids = {"alma": new_id("b-alma"), "ubuntu": new_id("b-ubuntu"), "old": new_id("b-old")}
    state = Browsed(world, ids, image_host, "")
    alma = state.image("AlmaLinux 9", "9.3", series="alma9", md=HOSTILE_MD)
    world.publish(ids["alma"], "AlmaLinux", [alma], md="The **AlmaLinux** images.")
    world.publish(ids["ubuntu"], "Ubuntu", [state.image(
        "Ubuntu 22.04", "22.04.3", arch="aarch64", series="ubuntu-lts",
        osversion="Ubuntu 22.04")])
    world.publish(ids["old"], "Old CentOS", [state.image("CentOS 7", "7.9", series="centos7")])
    world.publish(ids["alma"], "AlmaLinux",
                  [alma, state.image("AlmaLinux 9", "9.4", series="alma9", md=HOSTILE_MD)])
    process, state.base = _start_server(world.sim.path, tmp)
    try:
        yield state
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stderr:
            process.stderr.close()


def _driver(tmp: Path, *, javascript: bool = True) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and DRIVER is not None
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000",
                     f"--user-data-dir={tmp / 'profile'}"):
        options.add_argument(argument)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    driver = _driver(tmp_path)
    try:
        yield driver
    finally:
        driver.quit()


def _ready(driver: webdriver.Chrome) -> None:
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")


def _visible_images(driver: webdriver.Chrome) -> list[str]:
    return [row.find_element(By.TAG_NAME, "a").text
            for row in driver.find_elements(By.CSS_SELECTOR, "#images tbody tr")
            if row.is_displayed()]


def _image_uuid(browsed: Browsed, version: str) -> str:
    [image] = [i for i in browsed.world.images[browsed.ids["alma"]]
               if i["hv:version"] == version]
    return str(image["dc:identifier"])


def test_index_lists_the_lists_and_filters_by_architecture(
        browsed: Browsed, browser: webdriver.Chrome, tmp_path: Path) -> None:
    browser.get(f"{browsed.base}/")
    _ready(browser)
    lists = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#lists tbody tr")]
    assert any(text.startswith("AlmaLinux") for text in lists)
    assert any(text.startswith("Ubuntu") for text in lists)
    assert any(text.startswith("Old CentOS") for text in lists)
    assert len(_visible_images(browser)) == 4
    browser.save_screenshot(str(tmp_path / "index.png"))

    box = browser.find_element(By.ID, "filter")
    box.send_keys("sl:arch=aarch64")
    WebDriverWait(browser, 10).until(lambda d: len(_visible_images(d)) == 1)
    assert _visible_images(browser) == ["Ubuntu 22.04"]
    assert browser.find_element(By.ID, "count").text == "1 image(s)"
    visible_lists = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#lists tbody tr")
                     if r.is_displayed()]
    assert len(visible_lists) == 1 and visible_lists[0].startswith("Ubuntu")
    box.clear()
    box.send_keys("series=alma9")
    browser.find_element(By.ID, "latest").click()
    WebDriverWait(browser, 10).until(lambda d: len(_visible_images(d)) == 1)
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#images tbody tr")
               if r.is_displayed())
    assert "9.4" in row.text
    browser.save_screenshot(str(tmp_path / "index-filtered.png"))


def test_image_page_shows_markdown_badges_history_and_nothing_runs(
        browsed: Browsed, browser: webdriver.Chrome, tmp_path: Path) -> None:
    browser.get(f"{browsed.base}/images/{_image_uuid(browsed, '9.4')}.html")
    description = browser.find_element(By.ID, "description")
    assert description.find_element(By.TAG_NAME, "h1").text == "Hardened image"
    assert description.find_element(By.TAG_NAME, "strong").text == "fast"
    # The hostile parts are text, not elements, and nothing they carry ran.
    assert description.find_elements(By.TAG_NAME, "script") == []
    assert description.find_elements(By.TAG_NAME, "img") == []
    assert "<script>window.__pwned" in description.text
    assert "onerror" in description.text
    hrefs = [a.get_attribute("href") for a in description.find_elements(By.TAG_NAME, "a")]
    assert hrefs == ["https://docs.example.org/alma"]
    assert "[click me](javascript:" in description.text
    attributes = browser.execute_script(
        "return Array.from(document.querySelectorAll('*')).flatMap(e => "
        "Array.from(e.attributes).map(a => a.name)).filter(n => n.startsWith('on'))")
    assert attributes == []
    assert browser.execute_script("return window.__pwned === undefined") is True
    badges = browser.find_element(By.CLASS_NAME, "badges").text
    assert "valid" in badges and "signed by alice" in badges and "expires" in badges
    assert "0 passed · 0 failed" in badges
    history = browser.find_elements(By.CSS_SELECTOR, "table.history tbody tr")
    assert len(history) == 1 and "alice" in history[0].text
    browser.save_screenshot(str(tmp_path / "image.png"))


def test_an_inline_script_is_refused_by_the_csp(browsed: Browsed, browser: webdriver.Chrome
                                                ) -> None:
    """Even markup that got into a page could not run inline script: the CSP forbids it."""
    browser.get(f"{browsed.base}/lists/{browsed.ids['alma']}.html")
    ran = browser.execute_script("""
        const s = document.createElement('script');
        s.textContent = 'window.__inline = 1';
        document.body.appendChild(s);
        return window.__inline === 1;""")
    assert ran is False


def test_pages_work_without_javascript(browsed: Browsed, tmp_path: Path) -> None:
    driver = _driver(tmp_path, javascript=False)
    try:
        driver.get(f"{browsed.base}/")
        assert len(_visible_images(driver)) == 4
        assert driver.find_element(By.CLASS_NAME, "noscript-hint").is_displayed()
        driver.find_element(By.LINK_TEXT, "Ubuntu").click()
        assert driver.find_element(By.TAG_NAME, "h1").text == "Ubuntu"
        assert len(driver.find_elements(By.CSS_SELECTOR, "table.history tbody tr")) == 1
    finally:
        driver.quit()


def test_the_filter_in_the_browser_equals_gitreg_search(
        browsed: Browsed, browser: webdriver.Chrome) -> None:
    browser.get(f"{browsed.base}/")
    _ready(browser)
    for case in (["sl:arch=x86_64"], ["alma"], ["series=alma9", "--latest"],
                 ["dc:title~^(ubuntu|centos)"], ["--all"], ["hv:version=9.4"]):
        filters = [c for c in case if not c.startswith("--")]
        in_browser = browser.execute_async_script("""
            const [filters, valid, latest, done] = arguments;
            fetch('api/index.json').then(r => r.json()).then(index => done(
              window.gitregCatalogue.search(index.rows, filters, valid, latest)
                .map(r => r.image)));""", filters, "--all" not in case, "--latest" in case)
        done = subprocess.run([sys.executable, "-m", "gitreg", "search", "--json", "-r",
                               str(browsed.world.sim.path), *case],
                              capture_output=True, text=True, check=True)
        assert in_browser == [r["image"] for r in json.loads(done.stdout)["results"]], case


def _follow_latest(browser: webdriver.Chrome, browsed: Browsed) -> str:
    browser.get(f"{browsed.base}/series/alma9/latest")
    WebDriverWait(browser, 10).until(lambda d: d.current_url.startswith(browsed.host))
    return str(browser.current_url)


def test_latest_link_redirects_and_moves(browsed: Browsed, browser: webdriver.Chrome) -> None:
    world, ids = browsed.world, browsed.ids
    browser.get(f"{browsed.base}/series/alma9.html")
    browser.find_element(By.ID, "latest-link").click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.startswith(browsed.host))
    assert browser.current_url == f"{browsed.host}/AlmaLinux-9.4.img"
    assert "image file /AlmaLinux-9.4.img" in browser.find_element(By.TAG_NAME, "body").text

    images = world.images[ids["alma"]]
    world.publish(ids["alma"], "AlmaLinux",
                  [*images, browsed.image("AlmaLinux 9", "9.5", series="alma9")])
    time.sleep(0.05)
    assert _follow_latest(browser, browsed) == f"{browsed.host}/AlmaLinux-9.5.img"

    world.publish(ids["alma"], "AlmaLinux", images)  # 9.5 is revoked
    assert _follow_latest(browser, browsed) == f"{browsed.host}/AlmaLinux-9.4.img"
    browser.get(f"{browsed.base}/series/alma9/latest.json")
    document = json.loads(browser.find_element(By.TAG_NAME, "body").text)
    assert document["latest"]["version"] == "9.4"
    assert document["latest"]["status"] == "valid"
