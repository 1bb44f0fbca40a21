"""Strict JSON in, canonical JSON out: the one parser every component shares.

``json.loads`` alone is too lenient for signed data: it keeps the last of two
duplicate keys, accepts NaN/Infinity, decodes whatever encoding it is given
and raises RecursionError on deep nesting. Two readers that disagree about a
document's meaning defeat its signature, so every deviation is rejected here.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from gitreg.errors import InvalidDocumentError, Problem

DEFAULT_MAX_SIZE = 1 << 20

# Far deeper than any imagelist or policy (about 6 levels), far shallower than
# the interpreter's recursion limit, so json and our walks never hit it.
MAX_DEPTH = 64

# An adversarial document can hold a problem per object; the first hundred
# say everything useful and keep the error printable.
MAX_PROBLEMS = 100

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

# A JSON string (skipped whole, so brackets inside it do not count) or a bracket.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
# The same, over bytes, for the scan that bounds the depth at C speed.
_BYTES_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Keeps only the brackets, all as one kind: nesting, not matching, is counted
# (json.loads rejects a mismatched bracket itself).
_BRACKETS_ONLY = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# A \u escape of a UTF-16 surrogate: the only way a decoded string can hold
# one (a raw surrogate is not UTF-8, so decoding refuses it).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class _DuplicateKeys(dict[str, Any]):
    """An object that had duplicate keys; reported with its path after the parse."""

    duplicates: list[str]


class _NonFinite:
    """Stands in for NaN, Infinity, -Infinity or an overflowing number."""

    def __init__(self, text: str) -> None:
        self.text = text


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _DuplicateKeys(obj)
    seen: set[str] = set()
    dups: list[str] = []
    for key, _ in pairs:
        if key in seen and key not in dups:
            dups.append(key)
        seen.add(key)
    marked.duplicates = dups
    return marked


class _Flags:
    """What the parse hooks saw; only a document that raised one is walked."""

    __slots__ = ("suspect",)

    def __init__(self) -> None:
        self.suspect = False


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    # 1e400 silently becomes inf in Python but not in other readers.
    return value if math.isfinite(value) else _NonFinite(text)


def json_path(parent: str, key: str | int) -> str:
    """The path of ``key`` below ``parent``: ``a.b[2].c`` (root is "")."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _line_col(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line} column {col}"


def _decode(data: bytes, max_size: int) -> tuple[str | None, Problem | None]:
    # Size first: a 10 MB document must cost nothing but its length.
    if len(data) > max_size:
        return None, Problem("", f"document is {len(data)} bytes, over the limit of {max_size}")
    if data.startswith(_UTF8_BOM):
        return None, Problem("", "starts with a UTF-8 byte order mark (BOM); remove it")
    if data.startswith(_UTF16_BOMS):
        return None, Problem("", "starts with a UTF-16 byte order mark; only UTF-8 is accepted")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        bad = data[exc.start:exc.start + 1].hex()
        return None, Problem("", f"not UTF-8: invalid byte 0x{bad} at byte offset {exc.start}")


def _too_deep(data: bytes) -> bool:
    """Whether ``data`` may nest deeper than MAX_DEPTH, judged at C speed.

    Strings are cut out and only brackets kept; each round then removes
    every innermost pair, one level of a well-nested document. A document
    that empties within MAX_DEPTH rounds is shallow enough; anything else
    (deeper, or unbalanced) goes to the exact scan, which also says where.
    """
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return False
    brackets = _BYTES_STRING.sub(b"", data).translate(_BRACKETS_ONLY, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)


def _depth_problem(text: str) -> Problem | None:
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                where = _line_col(text, match.start())
                return Problem("", f"nested deeper than {MAX_DEPTH} levels at {where}")
        elif char in "]}":
            depth -= 1
    return None


def _walk_problems(value: Any) -> list[Problem]:
    """Duplicate keys, non-finite numbers and lone surrogates, each with its path."""
    problems: list[Problem] = []
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if isinstance(node, _DuplicateKeys):
                problems.extend(Problem(path, f"duplicate key {json.dumps(k, ensure_ascii=False)}")
                                for k in node.duplicates)
            items = list(node.items())
            for key, child in reversed(items):
                if _SURROGATE.search(key):
                    problems.append(Problem(path, f"key {key!r} holds a lone UTF-16 surrogate"))
                stack.append((child, json_path(path, key)))
        elif isinstance(node, list):
            indexed = list(enumerate(node))
            stack.extend((child, json_path(path, i)) for i, child in reversed(indexed))
        elif isinstance(node, _NonFinite):
            problems.append(Problem(path, f"{node.text} is not a JSON number "
                                          "(NaN, Infinity and overflowing numbers are rejected)"))
        elif isinstance(node, str) and _SURROGATE.search(node):
            # "\ud800" is valid JSON syntax but not encodable as UTF-8.
            problems.append(Problem(path, "string holds a lone UTF-16 surrogate escape"))
    return problems


def capped(problems: list[Problem]) -> list[Problem]:
    """At most MAX_PROBLEMS problems, with a last line saying how many were left out."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    rest = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], Problem("", f"... and {rest} more problems")]


def loads(data: bytes, *, source: str = "", max_size: int = DEFAULT_MAX_SIZE) -> Any:
    """Parse ``data`` as strict JSON, or raise ``InvalidDocumentError``.

    ``source`` names the document (a file, a blob) in the error.
    """

    def fail(problems: list[Problem]) -> InvalidDocumentError:
        return InvalidDocumentError(
            capped([Problem(p.path, p.message, source) for p in problems]), source=source)

    text, problem = _decode(data, max_size)
    if problem is not None or text is None:
        raise fail([problem or Problem("", "could not decode")])
    if _too_deep(data):
        depth = _depth_problem(text)
        if depth is not None:
            raise fail([depth])
    flags = _Flags()

    # The hooks only notice; the walk that names each problem's path runs
    # only for a document they flagged, so a clean one is parsed in one pass.
    def object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            flags.suspect = True
            return _object_pairs(pairs)
        return obj

    def parse_float(number: str) -> float | _NonFinite:
        value = _parse_float(number)
        if isinstance(value, _NonFinite):
            flags.suspect = True
        return value

    def parse_constant(constant: str) -> _NonFinite:
        flags.suspect = True
        return _NonFinite(constant)

    try:
        value = json.loads(text, object_pairs_hook=object_pairs,
                           parse_float=parse_float, parse_constant=parse_constant)
    except json.JSONDecodeError as exc:
        what = "trailing data after the JSON document" if exc.msg == "Extra data" else exc.msg
        raise fail([Problem("", f"not valid JSON: {what} at line {exc.lineno} "
                                f"column {exc.colno}")]) from None
    except (ValueError, RecursionError) as exc:
        # e.g. an integer of more than 4300 digits (int() refuses to parse it).
        reason = str(exc).split(";")[0]  # drop Python's advice on raising the limit
        raise fail([Problem("", f"not valid JSON: {reason}")]) from None
    if flags.suspect or _SURROGATE_ESCAPE.search(data) is not None:
        problems = _walk_problems(value)
        if problems:
            raise fail(problems)
    return value


def canonical_dumps(obj: Any) -> bytes:
    """The canonical form: UTF-8, keys sorted, 4-space indent, trailing newline.

    These are the exact bytes a ``.sig`` signs.
    """
    text = json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=4,
                      separators=(",", ": "), allow_nan=False)
    return (text + "\n").encode("utf-8")
