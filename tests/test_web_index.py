"""The web index's rows leave out keys their columns repeat, and filter the same."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from gitreg.catalogue.search import LIFTED, compact_keys, key_value, rows
from gitreg.catalogue.sources import read_snapshot, snapshots
from gitreg.catalogue.status import stamp
from gitreg.catalogue.web.build import build_site
from tests.catalogue_world import standard_world
from tests.seeds import seeded

APP_JS = Path(__file__).resolve().parents[1] / "gitreg/catalogue/web/static/app.js"


def test_app_js_reads_the_same_lifted_keys() -> None:
    match = re.search(r"var LIFTED = (\{.*?\});", APP_JS.read_text(encoding="utf-8"), re.S)
    assert match is not None
    assert json.loads(match.group(1)) == LIFTED


def test_index_rows_give_every_key_the_full_rows_give(tmp_path: Path) -> None:
    catalogue, _ids = standard_world(tmp_path / "r.git")
    registries = [read_snapshot(s) for s in snapshots([catalogue.sim.path])]
    now = stamp(catalogue.sim.clock)
    out = tmp_path / "site"
    build_site(registries, out, now=now)
    index = json.loads((out / "api/index.json").read_bytes())
    full = rows(registries, now)
    assert len(index["rows"]) == len(full)
    smaller = 0
    for compact, row in zip(index["rows"], full, strict=True):
        assert compact["image"] == row["image"]
        smaller += len(compact["keys"]) < len(row["keys"])
        for key in {*row["keys"], *LIFTED, "ad:missing"}:
            assert key_value(compact, key) == row["keys"].get(key), key
    assert smaller == len(full)


def _random_row(rng: random.Random) -> dict[str, Any]:
    values: list[Any] = ["x86_64", "1024", 1024, None, True, 1, "", "a"]
    row: dict[str, Any] = {column: rng.choice(values) for column in LIFTED.values()}
    keys = {}
    for key in [*LIFTED, "sl:comments", "ad:appid"]:
        if rng.random() < 0.7:
            column = LIFTED.get(key)
            same = column is not None and rng.random() < 0.5
            keys[key] = row[column] if same else rng.choice(values)
    row["keys"] = keys
    return row


def test_compact_keys_keep_what_key_value_reads() -> None:
    seed, rng = seeded()
    for _ in range(3000):
        row = _random_row(rng)
        compact = {**row, "keys": compact_keys(row)}
        for key in [*LIFTED, "sl:comments", "ad:appid", "ad:other"]:
            expected = row["keys"].get(key)
            assert key_value(compact, key) == expected and \
                type(key_value(compact, key)) is type(expected), f"seed {seed}: {row} {key}"


def test_index_rows_escape_as_the_templates_do() -> None:
    from markupsafe import escape

    from gitreg.catalogue.web.build import _h

    seed, rng = seeded()
    for _ in range(2000):
        text = "".join(rng.choice("&<>'\"a é\n;#") for _ in range(rng.randrange(8)))
        assert _h(text) == str(escape(text)), f"seed {seed}: {text!r}"
    for value in (None, 0, 12, True, 1.5):
        assert _h(value) == str(escape(value))
