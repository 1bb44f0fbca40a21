"""Where output goes: data to stdout, messages to stderr (rich, if a terminal)."""

from __future__ import annotations

import json
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


def info(message: str) -> None:
    _console().print(message, markup=False)


def ok(message: str) -> None:
    _console().print(f"OK: {message}", markup=False)


def warn(message: str) -> None:
    _console().print(f"warning: {message}", style="yellow", markup=False)


def error(message: str) -> None:
    _console().print(f"error: {message}", style="red", markup=False)
