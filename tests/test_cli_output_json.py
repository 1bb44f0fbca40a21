"""``output.dumps_indented`` writes exactly what ``json.dumps(indent=2, sort_keys=True)`` does."""

from __future__ import annotations

import json
import random
from collections import OrderedDict
from typing import Any

from gitreg.cli.output import dumps_indented
from tests.seeds import seeded

_CHARS = 'ab"\\\n\t\u00e9\u2028\x00\x7f\U0001f600 /<'


def _value(rng: random.Random, depth: int) -> Any:
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.randint(-10**20, 10**20)
    if choice == 3:
        return rng.choice([0.1, -2.5e300, float("nan"), float("inf"), -0.0, 1.0, 3.0e-8])
    if choice in (4, 5):
        return "".join(rng.choice(_CHARS) for _ in range(rng.randrange(6)))
    if choice == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if choice == 7:
        return tuple(_value(rng, depth + 1) for _ in range(rng.randrange(3)))
    return {"".join(rng.choice(_CHARS) for _ in range(rng.randrange(4))): _value(rng, depth + 1)
            for _ in range(rng.randrange(5))}


def test_same_text_as_the_json_module() -> None:
    seed, rng = seeded()
    for _ in range(2000):
        value = _value(rng, 0)
        expected = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
        assert dumps_indented(value) == expected, f"seed {seed}: {value!r}"


def test_unusual_values_are_left_to_the_json_module() -> None:
    ordered = OrderedDict([("b", 1), ("a", [2, {"c": None}])])
    assert dumps_indented(ordered) == json.dumps(ordered, indent=2, sort_keys=True)
    assert dumps_indented({1: "one"}) == json.dumps({1: "one"}, indent=2, sort_keys=True)
