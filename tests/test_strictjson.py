"""The strict JSON parser rejects every deviation with a path, and the canonical form is stable."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitreg.errors import EXIT_REJECTED, InvalidDocumentError
from gitreg.model.strictjson import (
    DEFAULT_MAX_SIZE,
    MAX_DEPTH,
    MAX_PROBLEMS,
    canonical_dumps,
    loads,
)


def problems_of(data: bytes, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidDocumentError) as info:
        loads(data, **kwargs)
    assert info.value.exit_code == EXIT_REJECTED
    return [(p.path, p.message) for p in info.value.problems]


def test_plain_json_parses_with_surrounding_whitespace() -> None:
    assert loads(b' \n{"a": [1, 2.5, "x\\u00e9", true, null]}\r\n\t') == {
        "a": [1, 2.5, "xé", True, None]}


@pytest.mark.parametrize(("data", "path", "message"), [
    (b'{"a": 1, "a": 2}', "", 'duplicate key "a"'),
    (b'{"x": {"y": [{"k": 1, "k": 1}]}}', "x.y[0]", 'duplicate key "k"'),
    (b'{"hv:imagelist": {"hv:images": [{"hv:image": {"hv:uri": "a", "hv:uri": "b"}}]}}',
     "hv:imagelist.hv:images[0].hv:image", 'duplicate key "hv:uri"'),
    (b'{"n": NaN}', "n", "NaN is not a JSON number"),
    (b'{"n": Infinity}', "n", "Infinity is not a JSON number"),
    (b'[-Infinity]', "[0]", "-Infinity is not a JSON number"),
    (b'{"big": 1e400}', "big", "1e400 is not a JSON number"),
    (b'\xef\xbb\xbf{"a": 1}', "", "byte order mark (BOM)"),
    (b'\xff\xfe{\x00}\x00', "", "UTF-16 byte order mark"),
    (b'{"name": "Endors\xe9r"}', "", "invalid byte 0xe9 at byte offset 16"),
    (b'{"a": 1} {"b": 2}', "", "trailing data after the JSON document at line 1 column 10"),
    (b'{"a": 1}\ngarbage', "", "trailing data after the JSON document at line 2 column 1"),
    (b'', "", "not valid JSON: Expecting value"),
    (b'{"a": 1,}', "", "not valid JSON"),
    (b'{"a": "\\ud800"}', "a", "lone UTF-16 surrogate"),
    (b'{"\\udfff": 1}', "", "lone UTF-16 surrogate"),
    (b'[' + b'1' * 5000 + b']', "", "not valid JSON: Exceeds the limit"),
])
def test_each_bad_input_is_one_typed_problem_with_its_path(data: bytes, path: str,
                                                          message: str) -> None:
    problems = problems_of(data)
    assert len(problems) == 1
    assert problems[0][0] == path
    assert message in problems[0][1]


def test_all_problems_of_a_document_are_reported_at_once() -> None:
    data = (b'{"a": NaN, "b": {"c": 1, "c": 2}, "d": [0, Infinity], '
            b'"e": {"f": 1, "f": 2, "g": 3, "g": 4}}')
    assert problems_of(data) == [
        ("a", "NaN is not a JSON number (NaN, Infinity and overflowing numbers are rejected)"),
        ("b", 'duplicate key "c"'),
        ("d[1]", "Infinity is not a JSON number (NaN, Infinity and overflowing numbers are "
                 "rejected)"),
        ("e", 'duplicate key "f"'),
        ("e", 'duplicate key "g"'),
    ]


def test_problems_are_capped_with_a_count_of_the_rest() -> None:
    data = json.dumps([{"k": 1}] * 250).replace('{"k": 1}', '{"k": 1, "k": 2}').encode()
    problems = problems_of(data)
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1] == ("", f"... and {250 - MAX_PROBLEMS} more problems")


def test_error_names_the_source() -> None:
    with pytest.raises(InvalidDocumentError) as info:
        loads(b'{"a": NaN}', source="imagelists/x.json")
    assert info.value.source == "imagelists/x.json"
    assert str(info.value.problems[0]).startswith("imagelists/x.json: a: NaN")
    assert info.value.diagnostics().startswith("imagelists/x.json: 1 problem\n  a: NaN")


def test_a_10_mb_document_is_rejected_by_size_before_decoding() -> None:
    # Invalid UTF-8 throughout: only a size check that runs first names the size.
    data = b"\xff" * (10 * 1024 * 1024)
    start = time.perf_counter()
    problems = problems_of(data)
    elapsed = time.perf_counter() - start
    assert problems == [("", f"document is {len(data)} bytes, over the limit of "
                             f"{DEFAULT_MAX_SIZE}")]
    assert elapsed < 0.5


def test_size_limit_is_configurable_and_inclusive() -> None:
    data = b'{"a": "' + b"x" * 100 + b'"}'
    assert loads(data, max_size=len(data)) == {"a": "x" * 100}
    assert "over the limit of 50" in problems_of(data, max_size=50)[0][1]


def test_absurd_nesting_is_rejected_without_recursion_error() -> None:
    problems = problems_of(b"[" * 200_000 + b"]" * 200_000)
    assert problems == [("", f"nested deeper than {MAX_DEPTH} levels at line 1 column "
                             f"{MAX_DEPTH + 1}")]


def test_nesting_up_to_the_limit_is_accepted_and_brackets_in_strings_do_not_count() -> None:
    at_limit = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert loads(at_limit) is not None
    problems_of(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    in_string = b'["' + b"[{" * 1000 + b'\\"]"]'
    assert loads(in_string) == ["[{" * 1000 + '"]']


def test_canonical_form_is_sorted_indented_utf8_with_trailing_newline() -> None:
    out = canonical_dumps({"b": [1, {"z": None, "a": "é"}], "a": "\u2603"})
    assert out == (
        '{\n    "a": "\u2603",\n    "b": [\n        1,\n        {\n'
        '            "a": "é",\n            "z": null\n        }\n    ]\n}\n'
    ).encode()


def test_canonical_form_refuses_nan() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        canonical_dumps({"a": math.nan})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_round_trip_is_byte_stable(value: Any) -> None:
    once = canonical_dumps(value)
    parsed = loads(once)
    assert parsed == value
    assert canonical_dumps(parsed) == once


def _nested(rng: Any, depth: int) -> str:
    """A random JSON-ish text of brackets and strings holding brackets."""
    parts: list[str] = []
    for _ in range(rng.randint(0, 3)):
        kind = rng.random()
        if kind < 0.3 and depth < MAX_DEPTH + 5:
            inner = _nested(rng, depth + 1)
            parts.append(f"[{inner}]" if rng.random() < 0.5 else f'{{"k": [{inner}]}}')
        elif kind < 0.6:
            parts.append(rng.choice(['"[["', '"}\\"{"', '"\\\\"', "1"]))
        elif kind < 0.65:
            parts.append(rng.choice(["[", "]", "{", "}", '"']))  # unbalanced
        else:
            parts.append("[" * rng.randint(0, 70) + "]" * rng.randint(0, 70))
    return ", ".join(parts)


def test_the_fast_depth_bound_never_passes_what_the_exact_scan_refuses() -> None:
    """_too_deep(data) False must imply the exact scan finds nothing (seeded)."""
    import random

    from gitreg.model.strictjson import _depth_problem, _too_deep

    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    refused = 0
    for _ in range(3000):
        text = _nested(rng, 0)
        exact = _depth_problem(text)
        refused += exact is not None
        if exact is not None:
            assert _too_deep(text.encode()), f"seed {seed}: {text!r}"
    assert refused > 0, f"seed {seed}: no deep document generated"


def test_a_document_with_escaped_surrogate_pairs_parses() -> None:
    """A valid pair makes the fast path walk the document, which finds nothing."""
    assert loads(b'{"smile": "\\ud83d\\ude00"}') == {"smile": "\U0001f600"}
