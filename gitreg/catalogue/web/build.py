"""`gitreg web build`: the catalogue as static files any web server or CDN can host.

Layout of the output directory (every link is relative, so a mirror may
host it under any path):

    index.html                      every image and list; live filtering by app.js
    lists/<uuid>.html               one list: badges, Markdown, images, history
    images/<uuid>.html              one image (revoked ones too): badges, Markdown, history
    series/<slug>.html              one series, newest first
    series/<slug>/latest/index.html the latest valid image (a meta refresh to hv:uri)
    api/index.json                  the search index app.js filters (rows of `gitreg search`)
    api/lists/<uuid>.json           a list's catalogue record
    api/series/<slug>/latest.json   the latest valid image of a series
    static/app.js, static/style.css

A rebuild renders only the pages whose inputs changed: each page's inputs
are hashed into ``.gitreg-web.json`` and a page whose hash is unchanged is
left as it is; a list whose inputs did not change is not even hashed again
(``units``). New files are staged and committed together (``staging``).
Templates escape everything (Jinja2 autoescape); the only markup not
escaped is the Markdown renderer's, which allows no raw HTML.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

from gitreg.catalogue import markdown
from gitreg.catalogue.search import attestation_counts, compact_keys, newness
from gitreg.catalogue.status import REVOKED, VALID
from gitreg.catalogue.web import units
from gitreg.catalogue.web.staging import Staging, recover

# Bumped with any template change, so a rebuild renders every page again.
TEMPLATE_VERSION = "4"
MANIFEST = ".gitreg-web.json"
# No inline script anywhere: app.js is the only script, loaded from 'self'.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'")
_SAFE_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def slug(name: str) -> str:
    """A file- and URL-safe name for a series (its own name when that is safe)."""
    if _SAFE_SLUG.fullmatch(name) and ".." not in name:
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:40] or "series"
    return f"{cleaned}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:10]}"


def http_url(value: Any) -> str | None:
    """``value`` if it is an http(s) URL (a link target), else None."""
    if isinstance(value, str) and re.match(r"https?://", value, re.IGNORECASE):
        return value
    return None


@dataclass
class BuildReport:
    rendered: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)


def _environment() -> Any:
    import jinja2

    loader = jinja2.DictLoader({
        path.name: path.read_text(encoding="utf-8")
        for path in resources.files("gitreg.catalogue.web").joinpath("templates").iterdir()
        if path.name.endswith(".html")})
    env = jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["http_url"] = http_url

    def title_of(image_id: str, entry: dict[str, Any]) -> str:
        return str(entry["images"].get(image_id, ["", image_id])[1] or image_id)

    env.filters["title_of"] = title_of
    env.globals["slug"] = slug
    env.globals["csp"] = CSP
    return env


def _markdown(text: str | None) -> Any:
    from markupsafe import Markup

    # The renderer's output is the one thing templates do not escape: it is safe by construction.
    return Markup(markdown.render(text))  # noqa: S704


# Made once: json.dumps with options builds an encoder per call, which was a
# tenth of a rebuild's 45,000 page digests.
_DIGEST_JSON = json.JSONEncoder(sort_keys=True, default=str)
_COMPACT_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(*parts: Any) -> str:
    text = _DIGEST_JSON.encode([TEMPLATE_VERSION, *parts])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _quick_digest(*parts: str | Sequence[Any] | None) -> str:
    """``_digest`` of text, None, numbers and tuples of them, by their repr.

    A rebuild hashes every series page's rows (30,000 in all): as JSON that
    was a tenth of it. repr is exact for these types.
    """
    return hashlib.sha256(repr((TEMPLATE_VERSION, *parts)).encode("utf-8")).hexdigest()


def _json_bytes(value: Any) -> bytes:
    return _COMPACT_JSON.encode(value).encode("utf-8")


class _Writer:
    """Stages pages whose input hash changed; remembers every page it was asked for."""

    def __init__(self, out: Path, manifest: dict[str, str], report: BuildReport) -> None:
        self.out = out
        self.old = manifest
        self.new: dict[str, str] = {}
        self.report = report
        self.staging = Staging(out)
        self._present: dict[str, set[str]] = {}
        self._listed: set[str] | None = None

    def _exists(self, path: str) -> bool:
        # One listing of each big directory (images/, lists/, ...) instead of a
        # stat per page: 57,000 stats took seconds of a rebuild that renders a
        # dozen pages. A series' own directories hold one file: a stat each.
        directory, _, name = path.rpartition("/")
        if directory.count("/") > 1 or directory.startswith("api/series/"):
            return (self.out / path).is_file()
        return name in self._names(directory)

    def _names(self, directory: str) -> set[str]:
        names = self._present.get(directory)
        if names is None:
            try:
                with os.scandir(self.out / directory) as found:
                    names = {e.name for e in found if e.is_file()}
            except OSError:
                names = set()
            self._present[directory] = names
        return names

    def current(self, pages: dict[str, str]) -> bool:
        """Whether every page of a unit the last build made is still on disk, as it made it.

        The manifest holds the last maker's hash of each page: a page another
        list made after this one (an image in both) is not this unit's any more.
        """
        if self._listed is None:
            self._listed = {f"{directory}/{name}" for directory in units.DIRECTORIES
                            for name in self._names(directory)}
        old = self.old
        return self._listed.issuperset(pages) and all(
            old.get(path) == digest for path, digest in pages.items())

    def keep(self, pages: dict[str, str]) -> None:
        """Pages a rebuild leaves as they are (``current`` said so)."""
        self.new.update(pages)
        self.report.unchanged += len(pages)

    def page(self, path: str, digest: str, make: Callable[[], bytes | str]) -> None:
        # A page two lists make (an image moved from one to the other): the
        # last one made is the page, whatever an earlier one staged.
        again = path in self.new
        self.new[path] = digest
        if not again and self.old.get(path) == digest and self._exists(path):
            self.report.unchanged += 1
            return
        content = make()
        self.staging.write(path, content.encode("utf-8") if isinstance(content, str)
                           else content)
        self.report.rendered.append(path)

    def finish(self, files: dict[str, bytes], drop: list[str]) -> None:
        """Stage the manifest and ``files``, then commit everything at once."""
        gone = sorted(set(self.old) - set(self.new))
        self.report.removed.extend(gone)
        self.staging.write(MANIFEST, _json_bytes(self.new))
        for name, data in files.items():
            self.staging.write(name, data)
        self.staging.commit(gone + drop)


def _read_manifest(out: Path) -> dict[str, str]:
    try:
        value = json.loads((out / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _by_series(found: Iterable[dict[str, Any]]
               ) -> dict[str, list[tuple[Any, dict[str, Any]]]]:
    """Series name -> ``(newness, row)`` of its rows, oldest first (``search.newer``)."""
    series: dict[str, list[tuple[Any, dict[str, Any]]]] = defaultdict(list)
    for row in found:
        if row["series"] is not None:
            series[row["series"]].append((newness(row), row))
    return {name: sorted(members, key=_first) for name, members in series.items()}


def _first(member: tuple[Any, dict[str, Any]]) -> Any:
    return member[0]


def latest_rows(found: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Series name -> its newest valid row."""
    best: dict[str, tuple[Any, dict[str, Any]]] = {}
    for row in found:
        if row["series"] is None or row["status"] != VALID:
            continue
        key = newness(row)
        current = best.get(row["series"])
        if current is None or key > current[0]:
            best[row["series"]] = (key, row)
    return {name: row for name, (_key, row) in best.items()}


def _h(value: Any) -> str:
    """``markupsafe.escape(value)`` as text: the same entities, without a Markup per value."""
    if type(value) is str:
        return (value.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")
                .replace("'", "&#39;").replace('"', "&#34;"))
    from markupsafe import escape

    return str(escape(value))


def image_rows(found: Iterable[dict[str, Any]]) -> Any:
    """The index's table rows of ``found`` (markup: every value escaped here).

    Written in Python rather than a template loop: for 30,000 images the
    loop was most of a rebuild after one change.
    """
    from markupsafe import Markup

    lines = []
    for row in found:
        status = _h(row["status"])
        image = _h(row["image"])
        series = row["series"]
        link = (f'<a href="series/{_h(slug(series))}.html">{_h(series)}</a>'
                if series else "")
        counts = row["attestations"]
        lines.append(
            f'<tr data-key="{_h(row["registry"])}/{image}" data-status="{status}"'
            f'{"" if row["status"] == "valid" else " hidden"}>\n'
            f'<td><a href="images/{image}.html">{_h(row["title"])}</a></td>\n'
            f'<td>{_h(row["version"])}</td><td>{_h(row["arch"])}</td>'
            f'<td>{_h(row["os"])} {_h(row["osversion"])}</td>\n'
            f'<td>{link}</td>\n'
            f'<td><a href="lists/{_h(row["list"])}.html">{_h(row["list_title"])}</a></td>\n'
            f'<td><span class="badge status-{status}" title="{_h(row["reason"])}">'
            f'{status}</span></td>\n'
            f'<td><span class="badge attest">{_h(counts["passed"])} passed · '
            f'{_h(counts["failed"])} failed</span></td>\n</tr>\n')
    return Markup("".join(lines))  # noqa: S704 (escaped above, value by value)


def list_rows(items: Iterable[dict[str, Any]]) -> Any:
    """The index's table rows of the lists (markup, as ``image_rows``)."""
    from markupsafe import Markup

    lines = []
    for item in items:
        list_id = _h(item["id"])
        lines.append(
            f'<tr data-list="{list_id}"><td><a href="lists/{list_id}.html">'
            f'{_h(item["title"])}</a></td>\n'
            f'<td>{_h(item["version"])}</td>'
            f'<td>{_h(item["signature"].get("endorser") or "-")}</td>'
            f'<td>{_h(item["expires"])}</td>\n'
            f'<td>{len(item["images"])}</td><td><span class="badge status-'
            f'{_h(item["status"])}" title="{_h(item["reason"])}">'
            f'{_h(item["status"])}</span></td></tr>\n')
    return Markup("".join(lines))  # noqa: S704 (escaped above, value by value)


def latest_document(row: dict[str, Any] | None, name: str, now: str) -> dict[str, Any]:
    """``latest.json``: the image entry with its list, version and signature status."""
    if row is None:
        return {"series": name, "at": now, "latest": None}
    image = {k: v for k, v in row.items() if k != "keys"}
    return {"series": name, "at": now, "latest": image, "image": row["keys"]}


class _Site:
    """One build: the writer, the templates and what every page shows."""

    def __init__(self, writer: _Writer, now: str) -> None:
        self.writer = writer
        self.env = _environment()
        self.common = {"generated": now}

    def html(self, path: str, digest: str, template: str, **context: Any) -> None:
        self.writer.page(path, digest, partial(self._render, template, context))

    def _render(self, template: str, context: dict[str, Any]) -> str:
        return str(self.env.get_template(template).render(**self.common, **context))

    def json(self, path: str, digest: str, value: Callable[[], Any]) -> None:
        self.writer.page(path, digest, lambda: _json_bytes(value()))

    def list_page(self, item: dict[str, Any], registry: dict[str, Any]) -> str:
        return self._render("list.html", {"root": "../", "item": item, "registry": registry,
                                          "markdown": _markdown(item["description_md"])})

    @staticmethod
    def image_digest(list_digest: str, image: dict[str, Any], state: tuple[str, str],
                     attestations: dict[str, Any]) -> str:
        """An image page's hash; ``list_digest`` covers the list record it is made from."""
        return _digest("image", list_digest, image["id"], image["title"], state, attestations)

    def image_page(self, item: dict[str, Any], image: dict[str, Any], state: tuple[str, str],
               attestations: dict[str, Any]) -> str:
        history = [e for e in item["history"]
                   if image["id"] in e["added"] or image["id"] in e["removed"]
                   or image["id"] in e["changed"]]
        context = {"image": image, "status": state[0], "reason": state[1], "history": history,
                   "attestations": attestations,
                   "item": {k: item[k] for k in ("id", "title", "version", "expires",
                                                 "signature")}}
        return self._render("image.html", {"root": "../",
                                           "markdown": _markdown(image["description_md"]),
                                           **context})


def build_site(registries: Sequence[dict[str, Any]], out: Path, *, now: str,
               base_url: str | None = None) -> BuildReport:
    """Write (or bring up to date) the static catalogue of ``registries`` in ``out``.

    A list whose inputs (its record's digest, its and its images' status,
    attestations and series ranks) are those of the last build keeps its
    pages and its index rows as that build made them (``units``); the rest
    is made as a first build would, so the output is the same byte for byte.
    Every file changes at once (``staging``).
    """
    out.mkdir(parents=True, exist_ok=True)
    recover(out)
    report = BuildReport()
    writer = _Writer(out, _read_manifest(out), report)
    site = _Site(writer, now)
    kept = units.load(out)
    cached = kept.units
    ranks = units.series_ranks(registries)
    shared = units.shared_pages(registries)
    made: dict[str, dict[str, Any]] = {}
    for index, registry in enumerate(registries):
        for record in registry["lists"].values():
            key, inputs = units.inputs(index, registry, record, now, ranks)
            unit = cached.get(key)
            if (unit is not None and unit["inputs"] == inputs and key not in shared
                    and writer.current(unit["pages"])):
                writer.keep(unit["pages"])
            else:
                unit = _list_unit(site, index, registry, record, inputs)
            made[key] = unit

    for name in ("app.js", "style.css"):
        data = resources.files("gitreg.catalogue.web").joinpath("static", name).read_bytes()
        writer.page(f"static/{name}", _digest(hashlib.sha256(data).hexdigest()),
                    partial(bytes, data))
    # The rows in `gitreg search` order: by title, version, image (stable).
    found = sorted((entry for unit in made.values() for entry in unit["rows"]), key=_first)
    light = [entry[3] for entry in found]
    _series_pages(site, registries, light, now)

    head = _json_bytes({"generated": now, "base_url": base_url, "count": len(found),
                        "registries": [{k: r[k] for k in ("registry", "name", "head")}
                                       for r in registries]})
    # The index as one encoding of {..., "rows": [...]} would give it ("rows" sorts last).
    index_bytes = b"".join((head[:-1], b',"rows":[',
                            ",".join(entry[1] for entry in found).encode("utf-8"), b"]}"))
    index_digest = hashlib.sha256(index_bytes).hexdigest()
    writer.page("api/index.json", _digest(index_digest), partial(bytes, index_bytes))
    items = sorted((unit["item"] for unit in made.values()), key=_first)
    series = sorted({r["series"] for r in light if r["series"] is not None})
    writer.page("index.html", _digest("index", index_digest), lambda: site._render(
        "index.html", {"root": "", "image_rows": _markup("".join(e[2] for e in found)),
                       "list_rows": _markup("".join(item[1] for item in items)),
                       "series": series,
                       "valid_count": sum(1 for r in light if r["status"] == VALID)}))
    writer.finish(*units.save(kept, made))
    return report


def _markup(text: str) -> Any:
    from markupsafe import Markup

    return Markup(text)  # noqa: S704 (made of image_rows / list_rows, escaped value by value)


def _list_unit(site: _Site, index: int, registry: dict[str, Any], record: dict[str, Any],
               inputs: tuple[Any, ...]) -> dict[str, Any]:
    """A list's pages (staged where changed), its index rows and its line in the index."""
    record_digest, (status, reason), head, image_inputs, revoked_inputs, _gone = inputs
    now = site.common["generated"]
    registry_head = dict(zip(("registry", "name", "policy_expires"), head, strict=True))
    digest = _digest("list", record_digest, status, reason, registry_head)
    token = _digest(inputs)
    pages: dict[str, str] = {}

    def page(path: str, page_digest: str, make: Callable[[], bytes | str]) -> None:
        pages[path] = page_digest
        site.writer.page(path, page_digest, make)

    item = {k: v for k, v in record.items() if k != "digest"}
    item.update(status=status, reason=reason)
    page(f"lists/{record['id']}.html", digest, partial(site.list_page, item, registry))
    page(f"api/lists/{record['id']}.json", digest,
         lambda: _json_bytes(dict(item, registry=registry_head)))
    found = []
    for position, (image, (state, _found, rank)) in enumerate(
            zip(record["images"], image_inputs, strict=True)):
        row = units.full_row(registry, record, image, state, rank, now=now)
        page(f"images/{image['id']}.html",
             site.image_digest(digest, image, state, row["attestations"]),
             partial(site.image_page, item, image, state, row["attestations"]))
        index_json = _COMPACT_JSON.encode({**row, "keys": compact_keys(row)})
        found.append(units.row_entry(row, index_json, str(image_rows([row])), token,
                                     [index, record["id"], position]))
    current = {image["id"] for image in record["images"]}
    for gone, _found in zip(record["revoked"], revoked_inputs, strict=True):
        if gone["id"] in current:
            continue
        stub = {"id": gone["id"], "title": gone["title"], "version": None,
                "expires": None, "series": None, "uri": None, "description": None,
                "description_md": None, "keys": {}}
        state = (REVOKED, f"removed from the list in version {gone['version']}")
        counts = attestation_counts(registry, gone["id"], now)
        page(f"images/{gone['id']}.html", site.image_digest(digest, stub, state, counts),
             partial(site.image_page, item, stub, state, counts))
    return {"inputs": inputs, "pages": pages, "rows": found,
            "item": [(item["title"], item["id"]), str(list_rows([item]))]}


def _series_pages(site: _Site, registries: Sequence[dict[str, Any]],
                  found: list[dict[str, Any]], now: str) -> None:
    """Per series: its page, its fixed latest link and ``latest.json`` (from light rows)."""
    best = latest_rows(found)
    for name, members in sorted(_by_series(found).items()):
        ordered = [row for _key, row in sorted(members, key=_first, reverse=True)]
        top = best.get(name)
        key = slug(name)
        # Everything the two pages show of a row (the reason is the badge's title).
        digest = _quick_digest("series", name, [
            (r["image"], r["status"], r["reason"], r["version"], r["title"], r["list"],
             r["list_title"], r["uri"]) for r in ordered])
        site.html(f"series/{key}.html", digest, "series.html", root="../", name=name,
                  rows=ordered, latest=top)
        site.html(f"series/{key}/latest/index.html", digest, "latest.html", name=name,
                  latest=top)
        # Hashed without the time: "at" says when the answer was last judged
        # to change, and a rebuild at a later time leaves it (and 2,000 like it).
        # The row's unit inputs stand for the row (the full row is made if written).
        site.json(f"api/series/{key}/latest.json",
                  _quick_digest("latest", name,
                                None if top is None else (top["token"], *top["ref"])),
                  partial(_latest_json, registries, top, name, now))


def _latest_json(registries: Sequence[dict[str, Any]], top: dict[str, Any] | None,
                 name: str, now: str) -> dict[str, Any]:
    return latest_document(top and units.row_of(registries, top, now), name, now)
