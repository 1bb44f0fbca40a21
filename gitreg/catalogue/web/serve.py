"""`gitreg web serve`: the static catalogue served live, plus the fixed "latest" URLs.

The server keeps the built site in a directory and checks the registries'
heads at most every ``poll`` seconds; when one moved it reads and verifies
what changed and rebuilds (incrementally) before answering. ``GET
/series/<name>/latest`` answers 302 to the ``hv:uri`` of the newest image of
the series that is valid *at the time of the request* (an image that expired
since the last build is passed over), and ``/series/<name>/latest.json``
gives that image's entry with its list, version and signature status.
"""

from __future__ import annotations

import json
import mimetypes
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from gitreg.catalogue.search import newness, rows
from gitreg.catalogue.status import VALID, image_status, list_status, stamp
from gitreg.catalogue.web.build import CSP, build_site, http_url, latest_document, slug
from gitreg.model.dates import utcnow

SECURITY_HEADERS = {
    "Content-Security-Policy": f"{CSP}; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Catalogue:
    """The registries' records, the built site, and the series index, kept current."""

    def __init__(self, paths: Sequence[Path], out: Path, *, poll: float = 2.0,
                 clock: Any = utcnow) -> None:
        self.paths = list(paths)
        self.out = out
        self.poll = poll
        self.clock = clock
        self._lock = threading.Lock()
        self._checked = 0.0
        self._heads: tuple[str, ...] = ()
        self.registries: list[dict[str, Any]] = []
        self._series: dict[str, list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]] = {}
        self.builds = 0
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> None:
        """Rebuild if a registry head moved (checked at most every ``poll`` seconds)."""
        from gitreg.catalogue.sources import read_snapshot, snapshots

        if not force and time.monotonic() - self._checked < self.poll:
            return
        with self._lock:
            if not force and time.monotonic() - self._checked < self.poll:
                return
            found = snapshots(self.paths)
            heads = tuple(s.head for s in found)
            if force or heads != self._heads:
                moment = self.clock()
                registries = [read_snapshot(s, now=moment) for s in found]
                build_site(registries, self.out, now=stamp(moment))
                self.registries = registries
                self._series = _series_index(registries)
                self._heads = heads
                self.builds += 1
            self._checked = time.monotonic()

    def latest(self, name: str, now: datetime) -> dict[str, Any] | None:
        """The newest image of series ``name`` (or its slug) valid at ``now``."""
        at = stamp(now)
        candidates = self._series.get(name)
        if candidates is None:
            candidates = next((v for k, v in self._series.items() if slug(k) == name), [])
        for registry, record, row in candidates:
            state = image_status(registry, list_status(registry, record, at),
                                 _image(record, row), at)
            if state[0] == VALID:
                return {**row, "status": VALID, "reason": ""}
        return None


def _image(record: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    for image in record["images"]:
        if image["id"] == row["image"]:
            return dict(image)
    return {}


def _series_index(registries: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Series -> (registry, list record, row), newest first, whatever their status."""
    records = {(r["registry"], rec["id"]): (r, rec) for r in registries
               for rec in r["lists"].values()}
    # Rows are judged once with the earliest possible time: status is re-judged per request.
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows(registries, "0001-01-01T00:00:00Z"):
        if row["series"] is not None:
            grouped[row["series"]].append(row)
    index: dict[str, list[Any]] = {}
    for name, members in grouped.items():
        ordered = sorted(members, key=newness, reverse=True)
        index[name] = [(*records[(r["registry"], r["list"])], r) for r in ordered]
    return index


def make_handler(catalogue: Catalogue) -> type[BaseHTTPRequestHandler]:
    root = catalogue.out.resolve()

    class Handler(BaseHTTPRequestHandler):
        server_version = "gitreg-web"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            pass  # access logs stay off stderr, which carries messages only

        def _send(self, status: int, body: bytes, content_type: str,
                  extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            for key, value in {**SECURITY_HEADERS, **(extra or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            catalogue.refresh()
            path = unquote(urlsplit(self.path).path)
            parts = [p for p in path.split("/") if p]
            if len(parts) == 3 and parts[0] == "series" and parts[2] in (
                    "latest", "latest.json"):
                self._latest(parts[1], as_json=parts[2] == "latest.json")
                return
            self._file(parts)

        def _latest(self, name: str, *, as_json: bool) -> None:
            now = catalogue.clock()
            row = catalogue.latest(name, now)
            if as_json:
                document = latest_document(row, name, stamp(now))
                body = json.dumps(document, sort_keys=True).encode("utf-8")
                self._send(HTTPStatus.OK if row else HTTPStatus.NOT_FOUND, body,
                           "application/json")
                return
            target = http_url(row["uri"]) if row else None
            if target is None:
                self._send(HTTPStatus.NOT_FOUND, f"no valid image in series {name}\n".encode(),
                           "text/plain; charset=utf-8")
                return
            self._send(HTTPStatus.FOUND, b"", "text/plain", {"Location": target})

        def _file(self, parts: list[str]) -> None:
            if any(p.startswith(".") for p in parts):
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
                return
            target = root.joinpath(*parts) if parts else root
            if target.is_dir():
                target = target / "index.html"
            try:
                resolved = target.resolve()
                resolved.relative_to(root)
                body = resolved.read_bytes()
            except (OSError, ValueError):
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
                return
            kind = mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind in ("application/javascript",
                                                    "application/json"):
                kind += "; charset=utf-8"
            self._send(HTTPStatus.OK, body, kind)

    return Handler


def serve(catalogue: Catalogue, host: str, port: int,
          ready: Any = None) -> None:
    """Serve until interrupted; ``ready(address)`` is called once listening."""
    server = ThreadingHTTPServer((host, port), make_handler(catalogue))
    server.daemon_threads = True
    if ready is not None:
        ready(server.server_address)
    try:
        server.serve_forever()
    finally:
        server.server_close()
