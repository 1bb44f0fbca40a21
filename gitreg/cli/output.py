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
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


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
