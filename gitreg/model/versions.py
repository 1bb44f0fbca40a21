"""Numeric-aware ordering of ``hv:version`` strings.

The order, total over all strings:

1. A version splits on ``-`` ``.`` ``,`` ``/`` into parts; empty parts are
   dropped. Each part splits further into runs of ASCII digits and runs of
   other characters, so ``rc2`` < ``rc10``.
2. Parts compare left to right. Runs within a part compare left to right:
   a digit run compares as a number (leading zeros ignored, no size limit);
   a text run compares by code point; a text run ranks below a digit run
   (``1.0.beta`` < ``1.0.1``).
3. When one version's parts are a prefix of the other's, the shorter ranks
   first (``1.0`` < ``1.0.0``); likewise for runs within a part.
4. Versions equal under 1-3 but spelled differently (``1.01`` and ``1.1``,
   ``1-0`` and ``1.0``) are ordered by their raw strings, so only identical
   strings compare equal.

So "3.3.0-1" < "3.10.0" and "20150618211400" > "20141029".
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[-.,/]")
_RUNS = re.compile(r"[0-9]+|[^0-9]+")

_TEXT = 0
_NUMBER = 1

# (kind, number of significant digits, text): numbers compare by length then
# digits, which is numeric order without int() and its 4300-digit limit.
Run = tuple[int, int, str]
VersionKey = tuple[tuple[tuple[Run, ...], ...], str]


def _is_digit(char: str) -> bool:
    return "0" <= char <= "9"


def _run(text: str) -> Run:
    if _is_digit(text[0]):
        digits = text.lstrip("0") or "0"
        return (_NUMBER, len(digits), digits)
    return (_TEXT, 0, text)


def version_key(v: str) -> VersionKey:
    """A sort key for ``v`` implementing the order documented in this module."""
    parts = tuple(tuple(_run(r) for r in _RUNS.findall(part))
                  for part in _SEPARATORS.split(v) if part)
    return (parts, v)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` ranks below, equal to or above ``b``."""
    ka, kb = version_key(a), version_key(b)
    return (ka > kb) - (ka < kb)


def _increment_digits(digits: str) -> str:
    # Carry by hand: int() refuses strings of more than 4300 digits.
    out = list(digits)
    i = len(out) - 1
    while i >= 0 and out[i] == "9":
        out[i] = "0"
        i -= 1
    if i < 0:
        return "1" + "".join(out)
    out[i] = str(int(out[i]) + 1)
    return "".join(out)


def bump_version(v: str) -> str:
    """A version strictly higher than ``v``: its last number plus one, else ``v`` + ".1"."""
    if not v:
        return "1"
    # Scan from the end by hand: a regex for "the last digit run" is quadratic.
    end = len(v)
    while end > 0 and not _is_digit(v[end - 1]):
        end -= 1
    if end == 0:
        return f"{v}.1"
    start = end
    while start > 0 and _is_digit(v[start - 1]):
        start -= 1
    return v[:start] + _increment_digits(v[start:end]) + v[end:]
