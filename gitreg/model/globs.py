"""Path globs of policy rules: fnmatch-style, but no wildcard ever crosses ``/``.

``*`` matches any run of characters within one path segment, ``?`` one
character, ``[abc]`` / ``[a-z]`` / ``[!abc]`` one character of (or not of) a
set. ``**`` is refused rather than guessed at: a rule that silently matched
more than its author meant would widen who may change what.
"""

from __future__ import annotations

import re
from functools import lru_cache

from gitreg.errors import UsageError

MAX_GLOB_LENGTH = 1024


class _GlobSyntaxError(Exception):
    """Internal: the reason a pattern is not a valid glob."""


def _char_class(body: str, negate: bool) -> str:
    """Regex for one ``[...]`` body (without the brackets and the ``!``)."""
    parts: list[str] = []
    i = 0
    while i < len(body):
        first = body[i]
        if i + 2 < len(body) and body[i + 1] == "-":
            last = body[i + 2]
            if first > last:
                raise _GlobSyntaxError(f"empty character range {first}-{last}")
            parts.append(f"{re.escape(first)}-{re.escape(last)}")
            i += 3
        else:
            parts.append(re.escape(first))
            i += 1
    # A negated set still must not match "/": "[!a]" is one segment character.
    return f"[^/{''.join(parts)}]" if negate else f"[{''.join(parts)}]"


def _translate(pattern: str) -> str:
    _check_shape(pattern)
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                raise _GlobSyntaxError('"**" is not supported; "*" never crosses "/"')
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = i + 1
            negate = j < n and pattern[j] == "!"
            if negate:
                j += 1
            start = j
            if j < n and pattern[j] == "]":
                j += 1  # a leading "]" is a literal member, as in fnmatch
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                raise _GlobSyntaxError('unclosed "["')
            body = pattern[start:j]
            if not body:
                raise _GlobSyntaxError('empty character set "[]"')
            if "/" in body:
                raise _GlobSyntaxError('"/" inside a character set')
            out.append(_char_class(body, negate))
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _check_shape(pattern: str) -> None:
    if not pattern:
        raise _GlobSyntaxError("empty pattern")
    if len(pattern) > MAX_GLOB_LENGTH:
        raise _GlobSyntaxError(f"longer than {MAX_GLOB_LENGTH} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in pattern):
        raise _GlobSyntaxError("control character")
    if "\\" in pattern:
        raise _GlobSyntaxError("backslash (paths use /, and escapes are not supported)")
    if pattern.startswith("/") or pattern.endswith("/"):
        raise _GlobSyntaxError('must be relative to the repository root, without leading '
                               'or trailing "/"')
    for segment in pattern.split("/"):
        if segment in ("", ".", ".."):
            raise _GlobSyntaxError(f'path segment "{segment}" is not allowed')


def is_literal(pattern: str) -> bool:
    """Whether ``pattern`` has no wildcard, so it matches exactly one path: itself."""
    return not any(c in pattern for c in "*?[")


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(_translate(pattern))


def glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid rule glob, or None when it is."""
    try:
        _compiled(pattern)
    except _GlobSyntaxError as exc:
        return f"invalid path glob {pattern!r}: {exc}"
    return None


def glob_matches(pattern: str, path: str) -> bool:
    """Whether the repository path ``path`` matches the whole of ``pattern``.

    Raises ``UsageError`` for an invalid pattern (policy parsing has already
    refused those, so this only fires for patterns typed by a user).
    """
    try:
        regex = _compiled(pattern)
    except _GlobSyntaxError as exc:
        raise UsageError(f"invalid path glob {pattern!r}: {exc}") from None
    return regex.fullmatch(path) is not None
