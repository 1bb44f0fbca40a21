"""hv:version ordering is numeric-aware, total, and bump_version always moves up."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitreg.model.versions import bump_version, compare_versions, version_key


@pytest.mark.parametrize(("lower", "higher"), [
    ("3.3.0-1", "3.10.0"),
    ("20141029", "20150618211400"),
    ("1.0", "1.0.0"),          # shorter first
    ("1", "2"),
    ("9", "10"),
    ("1.9", "1.10"),
    ("1-2", "1-10"),
    ("1,2", "1,10"),
    ("1/2", "1/10"),
    ("rc2", "rc10"),           # numbers inside a part compare as numbers
    ("1.0.beta", "1.0.1"),     # text ranks below numbers
    ("1.0.alpha", "1.0.beta"),
    ("", "0"),
    ("1.01", "1.1"),           # numerically equal: raw string decides, deterministically
    ("1-0", "1.0"),
    ("0", "1"),
    ("1" * 5000, "1" * 5001),  # no int() digit limit
])
def test_ordering_examples(lower: str, higher: str) -> None:
    assert compare_versions(lower, higher) == -1
    assert compare_versions(higher, lower) == 1
    assert version_key(lower) < version_key(higher)


def test_equal_only_when_identical() -> None:
    assert compare_versions("3.3.0-1", "3.3.0-1") == 0
    assert compare_versions("01", "1") != 0


def test_sorting_a_realistic_history() -> None:
    history = ["3.10.0", "3.3.0-1", "3.3.0", "3.3.0-10", "3.3.0-2", "3.9", "20141029", "3.3.0.rc1"]
    assert sorted(history, key=version_key) == [
        "3.3.0", "3.3.0.rc1", "3.3.0-1", "3.3.0-2", "3.3.0-10", "3.9", "3.10.0", "20141029",
    ]


@pytest.mark.parametrize(("before", "after"), [
    ("", "1"),
    ("0", "1"),
    ("1.0", "1.1"),
    ("3.3.0-1", "3.3.0-2"),
    ("1.9", "1.10"),
    ("09", "10"),
    ("007", "008"),
    ("rc9", "rc10"),
    ("1.0-beta", "1.1-beta"),
    ("abc", "abc.1"),
    ("20150618211400", "20150618211401"),
    ("9" * 5000, "1" + "0" * 5000),
])
def test_bump_examples(before: str, after: str) -> None:
    assert bump_version(before) == after
    assert compare_versions(after, before) == 1


versions = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"[0-9a-c]{0,3}([-.,/][0-9a-c]{0,3}){0,4}", fullmatch=True),
    st.lists(st.integers(0, 12).map(str), max_size=4).map(".".join),
)


@settings(max_examples=300, deadline=None)
@given(versions, versions)
def test_compare_is_antisymmetric_and_equal_only_for_identical(a: str, b: str) -> None:
    assert compare_versions(a, b) == -compare_versions(b, a)
    assert (compare_versions(a, b) == 0) == (a == b)


@settings(max_examples=300, deadline=None)
@given(st.lists(versions, min_size=3, max_size=8))
def test_compare_is_transitive(sample: list[str]) -> None:
    for a, b, c in itertools.permutations(sample, 3):
        if compare_versions(a, b) <= 0 and compare_versions(b, c) <= 0:
            assert compare_versions(a, c) <= 0


@settings(max_examples=300, deadline=None)
@given(versions)
def test_bump_is_strictly_greater(v: str) -> None:
    bumped = bump_version(v)
    assert compare_versions(bumped, v) == 1
    assert compare_versions(bump_version(bumped), bumped) == 1
