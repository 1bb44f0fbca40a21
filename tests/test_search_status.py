"""Catalogue status follows the trust core's state verdict (``judge_state``)."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

from gitreg.catalogue.search import parse_filters, search
from gitreg.catalogue.sources import read_snapshot, snapshots
from gitreg.catalogue.status import (
    CONFLICT,
    INERT,
    POLICY_EXPIRED,
    VALID,
    list_status,
    stamp,
    verdict,
)
from gitreg.model.dates import parse_date
from tests.catalogue_world import standard_world


def _records(tmp_path: Path) -> tuple[Any, dict[str, Any], dict[str, str]]:
    catalogue, ids = standard_world(tmp_path / "r.git")
    [registry] = [read_snapshot(s) for s in snapshots([catalogue.sim.path])]
    return catalogue, registry, ids


def _with_alice_expiring(registry: dict[str, Any], when: str) -> dict[str, Any]:
    """The same records under a policy whose endorser alice expires at ``when``."""
    policy = copy.deepcopy(registry["policy"])
    policy["endorsers"]["alice"]["expires"] = when
    return {**registry, "policy": policy, "policy_blob": f"edited-{when}"}


def test_policy_expiry_is_the_cores(tmp_path: Path) -> None:
    catalogue, registry, ids = _records(tmp_path)
    alma = registry["lists"][ids["alma"]]
    now = stamp(catalogue.sim.clock)
    assert list_status(registry, alma, now) == (VALID, "")
    after = stamp(parse_date(registry["policy_expires"]) + timedelta(seconds=1))
    assert verdict(registry, after).policy_expired is not None
    assert list_status(registry, alma, after) == (
        POLICY_EXPIRED, f"the registry's policy expired at {registry['policy_expires']}")
    # Back at the earlier time the state is judged again, not taken from the later verdict.
    assert list_status(registry, alma, now) == (VALID, "")


def test_an_expired_endorser_makes_its_lists_inert_from_its_expiry_on(tmp_path: Path) -> None:
    catalogue, registry, ids = _records(tmp_path)
    clock = catalogue.sim.clock
    expiry = stamp(clock + timedelta(hours=1))
    edited = _with_alice_expiring(registry, expiry)
    before, after = stamp(clock), stamp(clock + timedelta(hours=2))
    early = verdict(edited, before)
    assert early.inert == {}
    assert stamp(early.valid_until) == expiry  # type: ignore[arg-type]
    # Within the verdict's span the core is not asked again; past it, it is.
    assert verdict(edited, stamp(clock + timedelta(minutes=30))) is early
    late = verdict(edited, after)
    assert set(late.inert) == set(ids.values())
    alma = edited["lists"][ids["alma"]]
    assert list_status(edited, alma, before) == (VALID, "")
    assert list_status(edited, alma, after) == (INERT, f"endorser alice expired at {expiry}")
    found = search([edited], parse_filters([]), after, valid_only=False)
    assert {row["status"] for row in found} == {INERT}
    assert search([edited], parse_filters([]), after) == []


def test_an_image_two_current_lists_carry_is_a_conflict_until_one_stops(
        tmp_path: Path) -> None:
    catalogue, registry, ids = _records(tmp_path)
    now = stamp(catalogue.sim.clock)
    alma, ubuntu = registry["lists"][ids["alma"]], registry["lists"][ids["ubuntu"]]
    shared = alma["images"][0]
    # The records a merge of an image conflict gives: ubuntu carries alma's image too.
    lists = {**registry["lists"], ids["ubuntu"]: {**ubuntu, "images": [*ubuntu["images"],
                                                                        shared]}}
    merged = {**registry, "lists": lists, "head": "merged-" + registry["head"]}
    rows = {(r["list"], r["image"]): r for r in search([merged], parse_filters([]), now,
                                                       valid_only=False)}
    for list_id in (ids["alma"], ids["ubuntu"]):
        assert rows[(list_id, shared["id"])]["status"] == CONFLICT
    others = [r for key, r in rows.items() if key[1] != shared["id"]]
    assert others and CONFLICT not in {r["status"] for r in others}
    assert shared["id"] not in {r["image"] for r in search([merged], parse_filters([]), now)}
    # Past the ubuntu list's expiry only alma's claim counts: valid again there.
    later = stamp(parse_date(ubuntu["expires"]) + timedelta(seconds=1))
    assert parse_date(later) < parse_date(alma["expires"])
    after = {(r["list"], r["image"]): r["status"]
             for r in search([merged], parse_filters([]), later, valid_only=False)}
    assert after[(ids["alma"], shared["id"])] == VALID
    assert after[(ids["ubuntu"], shared["id"])] == "expired"
