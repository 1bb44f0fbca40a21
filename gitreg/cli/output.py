"""Where output goes: data to stdout, messages to stderr (rich, if a terminal)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def data(text: str) -> None:
    """Write data (what a script reads) to stdout."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def data_json(obj: Any) -> None:
    """Write a JSON document to stdout."""
    sys.stdout.write(dumps_indented(obj) + "\n")


class _UnusualValueError(Exception):
    """A value ``dumps_indented`` leaves to the json module."""


def dumps_indented(obj: Any) -> str:
    """``json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False)``, faster.

    With an indent the json module encodes in pure Python, which took a
    search printing 2,000 rows longer than the search itself. Strings go
    through the json module's C escaper; anything but str-keyed dicts,
    lists and plain scalars falls back to the json module itself.
    """
    try:
        parts: list[str] = []
        _encode(obj, "\n", parts)
        return "".join(parts)
    except _UnusualValueError:
        return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False)


def _encode(value: Any, newline: str, parts: list[str]) -> None:
    kind = type(value)
    if kind is str:
        parts.append(_escape(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif kind is int:
        parts.append(int.__repr__(value))
    elif kind is float:
        parts.append(json.dumps(value))
    elif kind is dict:
        if not value:
            parts.append("{}")
            return
        inner = newline + "  "
        separator = "{" + inner
        for key in sorted(value):
            if type(key) is not str:
                raise _UnusualValueError
            parts.append(separator)
            parts.append(_escape(key))
            parts.append(": ")
            _encode(value[key], inner, parts)
            separator = "," + inner
        parts.append(newline + "}")
    elif kind is list or kind is tuple:
        if not value:
            parts.append("[]")
            return
        inner = newline + "  "
        separator = "[" + inner
        for item in value:
            parts.append(separator)
            _encode(item, inner, parts)
            separator = "," + inner
        parts.append(newline + "]")
    else:
        raise _UnusualValueError


_escape = json.encoder.encode_basestring


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _message(text: str, style: str | None = None) -> None:
    # Off a terminal (cron, pipes) rich would write the plain text anyway;
    # importing it costs a cron run (`site sync`) as much as its own work.
    forced = os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1"
    if not forced and not sys.stderr.isatty():
        sys.stderr.write(text + "\n")
        return
    _console().print(text, style=style, markup=False)


def info(message: str) -> None:
    _message(message)


def ok(message: str) -> None:
    _message(f"OK: {message}")


def summary(status: str, message: str) -> None:
    """A command's last line: ``OK``, ``PARTIAL`` or ``FAILED``, matching its exit code."""
    style = {"OK": None, "PARTIAL": "yellow"}.get(status, "red")
    _message(f"{status}: {message}", style=style)


def warn(message: str) -> None:
    _message(f"warning: {message}", style="yellow")


def error(message: str) -> None:
    _message(f"error: {message}", style="red")
