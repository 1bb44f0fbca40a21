"""A threshold not met says how many more signatures are needed and who could give them.

"signed by 1 of 2 ... missing: alice, bob" read as if both were needed.
"""

from __future__ import annotations

import pytest

from gitreg.verify.policy_rules import ThresholdResult

NAMES = (("K1", "alice"), ("K2", "bob"), ("K3", "carol"))


def _result(signed: tuple[str, ...], missing: tuple[str, ...], threshold: int) -> ThresholdResult:
    return ThresholdResult(signed_by=signed, missing=missing, invalid=(), threshold=threshold,
                           enough=len(signed) >= threshold, listed=len(signed) + len(missing),
                           names=NAMES)


@pytest.mark.parametrize(("signed", "missing", "threshold", "text"), [
    (("K1",), ("K2",), 2,
     "signed by 1 of 2 root keys required (2 listed); needs 1 more signature, by K2 (bob)"),
    (("K1",), ("K2", "K3"), 2,
     "signed by 1 of 2 root keys required (3 listed); needs 1 more signature, "
     "by any 1 of: K2 (bob), K3 (carol)"),
    ((), ("K1", "K2", "K3"), 2,
     "signed by 0 of 2 root keys required (3 listed); needs 2 more signatures, "
     "by any 2 of: K1 (alice), K2 (bob), K3 (carol)"),
    ((), ("K1", "K2"), 2,
     "signed by 0 of 2 root keys required (2 listed); needs 2 more signatures, "
     "by K1 (alice), K2 (bob)"),
    ((), ("K1",), 2,
     "signed by 0 of 2 root keys required (1 listed); needs 2 more signatures, but only 1 "
     "of the root keys has not signed: K1 (alice) (the threshold cannot be met)"),
    (("K1", "K2"), ("K3",), 2, "signed by 2 of 2 root keys required (3 listed)"),
], ids=["one-of-one-left", "one-of-two-left", "two-of-three", "all-left", "impossible",
        "enough"])
def test_shortfall_says_how_many_and_who(signed: tuple[str, ...], missing: tuple[str, ...],
                                         threshold: int, text: str) -> None:
    assert _result(signed, missing, threshold).describe() == text
