"""The deterministic merge rule on its own (gitreg.verify.merge.merge_trees).

The rule reads its parents through the small ``MergeFacts`` protocol, so
these tests give it in-memory trees: seeded random parents (the seed is
printed, and ``GITREG_MERGE_SEED`` replays one), checked for order
independence, monotone versions (image conflicts included: a list variant
``z`` carries one image every other ``z`` list carries too), revocation
winning, and equivocation and image-conflict reporting.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from gitreg.errors import PolicyViolationError
from gitreg.model.versions import compare_versions
from gitreg.verify import layout
from gitreg.verify.merge import Equivocation, merge_trees

LISTS = [f"0000000{i}-0000-4000-8000-000000000000" for i in range(4)]
VERSIONS = ["1", "1.1", "2", "2.0.1", "10"]
SHARED = "00000009-0000-4000-8000-000000000000"


@dataclass
class FakeFacts:
    """Trees as dicts; a list blob is ``L:<list>:<version>:<variant>``; variant ``z``
    carries the image ``SHARED``."""

    trees: dict[str, dict[str, str]]
    base: dict[str, str] = field(default_factory=dict)
    # List blobs whose signer the merged policy (any policy of version >= 2) revoked.
    revoked: set[str] = field(default_factory=set)

    def tree(self, commit: str) -> Mapping[str, str]:
        return self.trees[commit]

    def base_tree(self, commits: tuple[str, ...]) -> Mapping[str, str]:
        return self.base

    def policy_version(self, blob: str) -> int:
        return int(blob.split(":")[1])

    def list_version(self, blob: str, *, path: str,
                     policy_blob: str) -> tuple[str, tuple[str, ...]]:
        _, list_id, version, variant = blob.split(":")
        return version, (SHARED if variant == "z" else f"{list_id}-{version}-{variant}",)

    def signer_allowed(self, policy_blob: str, *, path: str, list_blob: str,
                       sig_blob: str) -> bool:
        return not (self.policy_version(policy_blob) >= 2 and list_blob in self.revoked)

    def attestation_time(self, blob: str, *, path: str, policy_blob: str) -> str:
        return blob.rsplit(":", maxsplit=1)[-1]  # ``A:<path>:<time>``

    def attestation_allowed(self, policy_blob: str, *, path: str, blob: str,
                            sig_blob: str) -> bool:
        return True


def _tree(lists: Mapping[str, tuple[str, str]], policy: str) -> dict[str, str]:
    tree = {layout.REGISTRY_FILE: "gitreg", layout.POLICY_FILE: policy}
    for list_id, (version, variant) in lists.items():
        blob = f"L:{list_id}:{version}:{variant}"
        tree[layout.list_path(list_id)] = blob
        tree[layout.sig_path(list_id)] = "S" + blob
    return tree


def _random_world(rng: random.Random) -> FakeFacts:
    parents = rng.randint(2, 4)
    trees = {}
    for n in range(parents):
        lists = {lid: (rng.choice(VERSIONS), rng.choice("xyz"))
                 for lid in rng.sample(LISTS, rng.randint(0, len(LISTS)))}
        trees[f"c{n}"] = _tree(lists, f"P:{rng.randint(1, 3)}:{rng.choice('pq')}")
    blobs = {b for t in trees.values() for p, b in t.items() if layout.is_list(p)}
    revoked = {b for b in blobs if rng.random() < 0.2}
    base = _tree({LISTS[0]: ("1", "x")}, "P:1:p")
    return FakeFacts(trees, base=base, revoked=revoked)


def _seeds() -> list[int]:
    if "GITREG_MERGE_SEED" in os.environ:
        return [int(os.environ["GITREG_MERGE_SEED"])]
    master = random.Random()
    return [master.randrange(2**32) for _ in range(int(os.environ.get("GITREG_MERGE_RUNS",
                                                                      "300")))]


def test_merge_is_canonical_monotone_and_lets_revocation_win() -> None:
    for seed in _seeds():
        rng = random.Random(seed)
        facts = _random_world(rng)
        commits = list(facts.trees)
        try:
            first = merge_trees(facts, tuple(commits))
            for order in itertools.permutations(commits):
                again = merge_trees(facts, tuple(order))
                assert again.tree == first.tree and again.findings == first.findings
            # Duplicated parents change nothing either.
            assert merge_trees(facts, (*commits, commits[0])).tree == first.tree
            _check_monotone(facts, first.tree)
            _check_conflicts_reported(facts, first.tree, first.findings)
        except AssertionError as exc:
            raise AssertionError(f"merge property failed for seed {seed} "
                                 f"(replay: GITREG_MERGE_SEED={seed}): {exc}") from exc


def _check_monotone(facts: FakeFacts, merged: Mapping[str, str]) -> None:
    policy_versions = [facts.policy_version(t[layout.POLICY_FILE]) for t in facts.trees.values()]
    assert facts.policy_version(merged[layout.POLICY_FILE]) == max(policy_versions)
    for list_id in LISTS:
        path = layout.list_path(list_id)
        offered = {t[path] for t in facts.trees.values() if path in t}
        if not offered:
            assert path not in merged
            continue
        allowed = offered if len(offered) == 1 else {
            b for b in offered
            if facts.signer_allowed(merged[layout.POLICY_FILE], path=path, list_blob=b,
                                    sig_blob="S" + b)}
        if not allowed:
            assert merged.get(path) == facts.base.get(path)  # every offer revoked
            continue
        top = max((b.split(":")[2] for b in allowed), key=_Version)
        assert path in merged and compare_versions(merged[path].split(":")[2], top) == 0
        tied = sorted(b for b in allowed if compare_versions(b.split(":")[2], top) == 0)
        assert merged[path] == tied[0] and merged[layout.sig_path(list_id)] == "S" + tied[0]


def _check_conflicts_reported(facts: FakeFacts, merged: Mapping[str, str],
                              findings: list[Equivocation]) -> None:
    carriers = tuple(sorted(p for p, b in merged.items() if layout.is_list(p)
                            and b.endswith(":z")))
    changed = [p for p in carriers if len({t.get(p) for t in facts.trees.values()}) > 1]
    reported = [f for f in findings if f.reason == "image-conflict"]
    if len(carriers) > 1 and changed:
        [finding] = reported
        assert finding.image == SHARED and finding.claimants == carriers
        assert finding.path == min(changed)
    else:
        assert not reported


class _Version:
    def __init__(self, text: str) -> None:
        self.text = text

    def __lt__(self, other: _Version) -> bool:
        return compare_versions(self.text, other.text) < 0


def test_equivocation_names_the_path_the_commits_and_the_choice() -> None:
    lid = LISTS[1]
    facts = FakeFacts({"c1": _tree({lid: ("2", "x")}, "P:1:p"),
                       "c2": _tree({lid: ("2", "y")}, "P:1:p")})
    result = merge_trees(facts, ("c2", "c1"))
    [finding] = result.findings
    assert finding.path == layout.list_path(lid) and finding.version == "2"
    assert finding.commits == ("c1", "c2") and finding.chosen == f"L:{lid}:2:x"
    assert "equivocation" in result.equivocations[0]


def test_a_concurrent_revocation_wins() -> None:
    lid = LISTS[2]
    facts = FakeFacts({"old": _tree({lid: ("1", "x")}, "P:1:p"),
                       "new-list": _tree({lid: ("5", "x")}, "P:1:p"),
                       "revoking": _tree({lid: ("1", "x")}, "P:2:p")},
                      revoked={f"L:{lid}:5:x"})
    result = merge_trees(facts, ("old", "new-list", "revoking"))
    assert result.tree[layout.POLICY_FILE] == "P:2:p"
    assert result.tree[layout.list_path(lid)] == f"L:{lid}:1:x"


def test_different_registries_are_not_merged() -> None:
    one = _tree({}, "P:1:p")
    other = {**one, layout.REGISTRY_FILE: "another"}
    with pytest.raises(PolicyViolationError) as caught:
        merge_trees(FakeFacts({"a": one, "b": other}), ("a", "b"))
    assert caught.value.rule == "merge-registry"
