"""Attestation counts follow the attesters' expiry, as lists follow their endorsers'.

A statement counts while its attester's policy entry has not expired at the
reference time: in ``gitreg search``, on the web pages and in the rebuilt
catalogue alike.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from gitreg.catalogue.search import parse_filters, search
from gitreg.catalogue.sources import read_snapshot, snapshots
from gitreg.catalogue.status import stamp
from gitreg.catalogue.web.build import build_site
from gitreg.publish import policy_edit
from tests.catalogue_world import standard_world
from tests.registry_simulator import ssh_signer
from tests.test_catalogue_incremental import _tree, stamp_after


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, str, str]:
    """The records, an attested image, the reference time and site-a's expiry an hour later."""
    catalogue, ids = standard_world(tmp_path_factory.mktemp("attesters") / "r.git")
    for site in ("site-a", "site-b"):
        catalogue.sim.change_policy(lambda p, site=site: policy_edit.add_attester(
            p, site, [ssh_signer(site).public_key()]))
    [snapshot] = snapshots([catalogue.sim.path])
    registry = copy.deepcopy(read_snapshot(snapshot))
    image = registry["lists"][ids["ubuntu"]]["images"][0]["id"]
    # The statements as the reader finds them; site-a's entry with an expiry.
    now = stamp(catalogue.sim.clock)
    until = stamp_after(now, 3600)  # before any list expires: only the attester changes
    registry["policy"]["attesters"]["site-a"]["expires"] = until
    registry["policy_blob"] = "f" * 40  # another policy than the one read
    registry["attestations"] = {image: [
        {"image": image, "attester": "site-a", "result": "passed", "kind": "boot-test",
         "time": "2026-12-01T00:00:00Z", "note": ""},
        {"image": image, "attester": "site-b", "result": "failed", "kind": "boot-test",
         "time": "2026-12-01T00:00:00Z", "note": ""}]}
    return registry, image, now, until


def _counts(registry: dict[str, Any], image: str, now: str) -> dict[str, Any]:
    [row] = search([registry], parse_filters([f"image={image}"]), now, valid_only=False)
    return dict(row["attestations"])


def test_an_expired_attester_counts_no_more(
        world: tuple[dict[str, Any], str, str, str]) -> None:
    registry, image, now, until = world
    assert _counts(registry, image, now)["passed"] == 1
    later = stamp_after(until, 0)
    assert _counts(registry, image, later) == {
        "passed": 0, "failed": 1, "by": ["site-b: failed (boot-test, 2026-12-01T00:00:00Z)"]}


def test_the_rebuild_after_an_attester_expired_is_the_full_build(
        world: tuple[dict[str, Any], str, str, str], tmp_path: Path) -> None:
    registry, image, now, until = world
    later = stamp_after(until, 60)
    out, full = tmp_path / "site", tmp_path / "full"
    build_site([registry], out, now=now)
    assert "1 passed · 1 failed" in (out / f"images/{image}.html").read_text(encoding="utf-8")
    report = build_site([registry], out, now=later)
    assert f"images/{image}.html" in report.rendered
    page = (out / f"images/{image}.html").read_text(encoding="utf-8")
    assert "0 passed · 1 failed" in page and "site-a" not in page
    build_site([registry], full, now=later)
    incremental, fresh = _tree(out), _tree(full)
    assert incremental.keys() == fresh.keys()
    for path, data in fresh.items():
        assert incremental[path].replace(now.encode(), later.encode()) == data, path
