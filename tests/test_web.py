"""`gitreg web build` and `gitreg web serve` without a browser: files, escaping, latest URLs."""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gitreg.catalogue.markdown import render, safe_url
from gitreg.catalogue.web.build import CSP, slug
from gitreg.catalogue.web.serve import Catalogue, make_handler
from tests.catalogue_world import CatalogueWorld, standard_world
from tests.fixtures.env import RunCli


@pytest.fixture
def world(tmp_path: Path) -> tuple[CatalogueWorld, dict[str, str]]:
    return standard_world(tmp_path / "registry.git")


def _build(run_cli: RunCli, out: Path, registry: Path) -> dict[str, Any]:
    done = run_cli(["web", "build", out, "-r", registry, "--json"])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_build_writes_every_page_with_the_csp(world: tuple[CatalogueWorld, dict[str, str]],
                                              tmp_path: Path, run_cli: RunCli) -> None:
    catalogue, ids = world
    out = tmp_path / "site"
    _build(run_cli, out, catalogue.sim.path)
    pages = sorted(out.rglob("*.html"))
    assert {p.relative_to(out).as_posix() for p in pages} >= {
        "index.html", f"lists/{ids['alma']}.html", "series/alma9.html",
        "series/alma9/latest/index.html"}
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert CSP.replace("'", "&#39;") in text, page
        # No inline script: the only script element loads static/app.js.
        for script in re.findall(r"<script[^>]*>", text):
            assert re.fullmatch(r'<script src="(\.\./)*static/app\.js" defer>', script), page
        assert " on" not in re.sub(r"<code>.*?</code>|<p>.*?</p>", "", text, flags=re.S) \
            or "onerror" not in text.split("<main>")[0]
    index = json.loads((out / "api/index.json").read_bytes())
    assert len(index["rows"]) == 4
    latest = json.loads((out / "api/series/alma9/latest.json").read_bytes())
    assert latest["latest"]["version"] == "9.4"
    assert latest["latest"]["endorser"] == "alice"
    redirect = (out / "series/alma9/latest/index.html").read_text(encoding="utf-8")
    assert f'url={latest["latest"]["uri"]}' in redirect


def test_markdown_is_rendered_and_defused(world: tuple[CatalogueWorld, dict[str, str]],
                                          tmp_path: Path, run_cli: RunCli) -> None:
    catalogue, ids = world
    out = tmp_path / "site"
    _build(run_cli, out, catalogue.sim.path)
    image = catalogue.images[ids["alma"]][1]["dc:identifier"]
    html = (out / f"images/{image}.html").read_text(encoding="utf-8")
    description = html.split('<div class="markdown" id="description">')[1].split("</div>")[0]
    assert "<h1>Hardened image</h1>" in description
    assert "<strong>fast</strong>" in description
    assert '<a href="https://docs.example.org/alma" rel="nofollow noopener noreferrer">' \
        in description
    assert "<script" not in description and "<img" not in description
    assert "&lt;script&gt;" in description and "&lt;img src=x onerror" in description
    assert 'href="javascript' not in description.lower()
    assert 'href="data' not in description.lower()
    history = html.split('<table class="history">')[1]
    assert "alice" in history


@pytest.mark.parametrize("url", [
    "javascript:alert(1)", "JAVASCRIPT:alert(1)", " javascript:alert(1)", "java\tscript:x",
    "data:text/html,<b>", "vbscript:msgbox", "file:///etc/passwd"])
def test_unsafe_urls_are_refused(url: str) -> None:
    assert not safe_url(url)
    assert "href" not in render(f"[x]({url}) ![y]({url}) <{url}>").replace(
        'href="java%09script:x"', "")  # a percent-escaped tab is a harmless relative link


def test_safe_urls_are_kept() -> None:
    for url in ("https://a.example/x", "http://a.example", "mailto:a@example.org",
                "../images/x.html", "#top"):
        assert safe_url(url)


def test_series_slugs_are_safe_names() -> None:
    assert slug("alma9") == "alma9"
    for name in ("../../etc", "a/b", "white space", "..", "<script>"):
        made = slug(name)
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", made), made
        assert "/" not in made and ".." not in made


def test_rebuild_renders_only_what_changed(world: tuple[CatalogueWorld, dict[str, str]],
                                           tmp_path: Path, run_cli: RunCli) -> None:
    catalogue, ids = world
    out = tmp_path / "site"
    first = _build(run_cli, out, catalogue.sim.path)
    assert first["unchanged"] == 0
    ubuntu_page = out / f"lists/{ids['ubuntu']}.html"
    stamp = ubuntu_page.stat().st_mtime_ns
    revoked = catalogue.images[ids["alma"]][1]["dc:identifier"]
    catalogue.publish(ids["alma"], "AlmaLinux", catalogue.images[ids["alma"]][:1])
    second = _build(run_cli, out, catalogue.sim.path)
    assert ubuntu_page.stat().st_mtime_ns == stamp
    # The alma list (page + JSON), its two image pages, the series pages, the index.
    assert second["rendered"] < first["rendered"] / 2
    assert second["unchanged"] > 0
    page = (out / f"images/{revoked}.html").read_text(encoding="utf-8")
    assert "status-revoked" in page


class _Server:
    def __init__(self, catalogue: Catalogue) -> None:
        from http.server import ThreadingHTTPServer

        self.catalogue = catalogue
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(catalogue))
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def get(self, path: str) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response

    def body(self, path: str) -> bytes:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connection.request("GET", path)
        data = connection.getresponse().read()
        connection.close()
        return data

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def served(world: tuple[CatalogueWorld, dict[str, str]], tmp_path: Path
           ) -> Iterator[tuple[_Server, list[datetime]]]:
    clock = [world[0].sim.clock + timedelta(seconds=5)]
    catalogue = Catalogue([world[0].sim.path], tmp_path / "served", poll=0,
                          clock=lambda: clock[0])
    server = _Server(catalogue)
    try:
        yield server, clock
    finally:
        server.close()


def _latest_uri(world: tuple[CatalogueWorld, dict[str, str]], version: str) -> str:
    catalogue, ids = world
    [image] = [i for i in catalogue.images[ids["alma"]] if i["hv:version"] == version]
    return str(image["hv:uri"])


def test_latest_redirects_and_moves(world: tuple[CatalogueWorld, dict[str, str]],
                                    served: tuple[_Server, list[datetime]]) -> None:
    server, _clock = served
    catalogue, ids = world
    response = server.get("/series/alma9/latest")
    assert response.status == 302
    assert response.getheader("Location") == _latest_uri(world, "9.4")
    assert "script-src 'self'" in (response.getheader("Content-Security-Policy") or "")
    document = json.loads(server.body("/series/alma9/latest.json"))
    assert document["latest"]["version"] == "9.4"
    assert document["latest"]["list_version"] == "2"
    assert document["latest"]["signed_by"] == catalogue.alice.public_key().key_id

    newer = catalogue.image("AlmaLinux 9 base", version="9.5", series="alma9", seed="a95")
    catalogue.publish(ids["alma"], "AlmaLinux", [*catalogue.images[ids["alma"]], newer])
    assert server.get("/series/alma9/latest").getheader("Location") == newer["hv:uri"]

    catalogue.publish(ids["alma"], "AlmaLinux", catalogue.images[ids["alma"]][:2])  # revoke 9.5
    assert server.get("/series/alma9/latest").getheader("Location") == _latest_uri(world, "9.4")
    assert server.catalogue.builds == 3


def test_latest_never_points_at_an_expired_image(
        world: tuple[CatalogueWorld, dict[str, str]],
        served: tuple[_Server, list[datetime]]) -> None:
    server, clock = served
    assert server.get("/series/centos7/latest").status == 302
    clock[0] += timedelta(days=3)  # the CentOS list has expired; nothing was rebuilt
    assert server.get("/series/centos7/latest").status == 404
    assert json.loads(server.body("/series/centos7/latest.json"))["latest"] is None
    assert server.get("/series/no-such-series/latest").status == 404


def test_server_serves_only_the_built_site(served: tuple[_Server, list[datetime]]) -> None:
    server, _ = served
    assert server.get("/").status == 200
    assert server.get("/index.html").getheader("Content-Type") == "text/html; charset=utf-8"
    for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/.gitreg-web.json",
                 "/static/../../x"):
        assert server.get(path).status == 404, path
