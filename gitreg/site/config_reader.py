"""Reading the site configuration's values: every problem collected, none fatal alone.

``Reader`` checks each value against what its key needs (type, range, unit,
choice) and records a problem named by its TOML path instead of raising, so
that ``gitreg.site.config.load_config`` reports every mistake at once.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import shlex
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gitreg.errors import Problem
from gitreg.gitstore.command import absolute_remote

TRUST_ROOT_FINGERPRINT = re.compile(r"sha256:[0-9a-fA-F]{64}")
# Registry and cloud names; a registry's names the directory of its local bare
# repository.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*(?:/s)?\s*", re.IGNORECASE)
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Reader:
    """Collects problems while reading values, so that all are reported at once."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def unknown_keys(self, where: str, table: Mapping[str, Any], known: Sequence[str]) -> None:
        for key in table:
            if key not in known:
                path = f"{where}.{key}" if where else key
                self.problem(path, f"unknown key{did_you_mean(key, known)}")

    def table(self, path: str, value: Any, *, required: bool = False) -> Mapping[str, Any]:
        if value is None:
            if required:
                self.problem(path, f"missing [{path}] table")
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be a table ([{path}]), not {kind_of(value)}")
            return {}
        return value

    def array_of_tables(self, path: str, value: Any) -> list[Mapping[str, Any]]:
        if value is None:
            return []
        if isinstance(value, dict):
            self.problem(path, f"must be an array of tables: write [[{path}]], not [{path}]")
            return []
        if not isinstance(value, list):
            self.problem(path, f"must be an array of tables ([[{path}]]), not {kind_of(value)}")
            return []
        tables: list[Mapping[str, Any]] = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                tables.append(item)
            else:
                self.problem(f"{path}[{i}]", f"must be a table, not {kind_of(item)}")
        return tables

    def string(self, path: str, value: Any, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.problem(path, "missing (required)")
            return None
        if not isinstance(value, str):
            self.problem(path, f"must be a string, not {kind_of(value)}")
            return None
        if not value.strip():
            self.problem(path, "must not be empty")
            return None
        return value

    def path(self, path: str, value: Any, *, required: bool = False) -> Path | None:
        text = self.string(path, value, required=required)
        if text is None:
            return None
        if "\x00" in text:
            self.problem(path, "must not contain a NUL character")
            return None
        return (self.base_dir / Path(text).expanduser()).absolute()

    def integer(self, path: str, value: Any, *, default: int, low: int | None = None,
                high: int | None = None) -> int:
        if value is None:
            return default
        # TOML booleans are Python ints: reject them explicitly.
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"must be an integer, not {kind_of(value)}")
            return default
        if (low is not None and value < low) or (high is not None and value > high):
            self.problem(path, f"must be between {low} and {high}, not {value}")
            return default
        return value

    def choice(self, path: str, value: Any, choices: Sequence[str], *, default: str) -> str:
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            shown = repr(value) if isinstance(value, str) else kind_of(value)
            self.problem(path, f"must be one of {', '.join(map(repr, choices))}, not {shown}")
            return default
        return value

    def size(self, path: str, value: Any, *, default: int) -> int:
        """A rate in bytes per second: an integer, or text such as "64 KiB/s"."""
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            amount = float(value)
        elif isinstance(value, str) and (m := _SIZE.fullmatch(value)):
            amount = float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
        else:
            self.problem(path, "must be bytes per second: an integer or text like '64 KiB/s'")
            return default
        if amount < 1:
            self.problem(path, "must be at least 1 byte per second")
            return default
        return int(amount)

    def duration(self, path: str, value: Any, *, default: float) -> float:
        """Seconds: a number, or text such as "90s", "30m", "2h"."""
        if value is None:
            return default
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION.fullmatch(value)):
            seconds = float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "s").lower()]
        else:
            self.problem(path, "must be seconds: a number or text like '90s', '30m', '2h'")
            return default
        if not seconds > 0 or seconds == float("inf"):
            self.problem(path, "must be a positive, finite number of seconds")
            return default
        return seconds

    def string_list(self, path: str, value: Any, *, required: bool = False,
                    default: list[str] | None = None, non_empty: bool = False,
                    item: Callable[[str, str], str | None] | None = None) -> list[str] | None:
        if value is None:
            if required:
                self.problem(path, "missing (required)" if not non_empty
                             else "must be a non-empty list")
                return None
            return list(default or [])
        if not isinstance(value, list):
            self.problem(path, f"must be a list of strings, not {kind_of(value)}")
            return None
        if non_empty and not value:
            self.problem(path, "must be a non-empty list")
            return None
        out: list[str] = []
        ok = True
        for i, element in enumerate(value):
            text = self.string(f"{path}[{i}]", element, required=True)
            if text is not None and item is not None:
                text = item(f"{path}[{i}]", text)
            if text is None:
                ok = False
            else:
                out.append(text)
        return out if ok else None

    def string_table(self, path: str, value: Any) -> dict[str, str] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be a table of strings ([{path}]), not {kind_of(value)}")
            return None
        out: dict[str, str] = {}
        ok = True
        for key, element in value.items():
            if not isinstance(element, str):
                self.problem(f'{path}."{key}"', f"must be a string, not {kind_of(element)}")
                ok = False
            else:
                out[key] = element
        return out if ok else None

    def remote(self, path: str, text: str) -> str | None:
        """A Git remote: a URL or scp-like address as is; a local path made absolute."""
        if "\x00" in text or any(c in text for c in "\r\n"):
            self.problem(path, "must not contain control characters")
            return None
        if "://" in text:
            scheme = text.split("://", 1)[0].lower()
            if scheme not in ("http", "https", "git", "ssh", "file"):
                self.problem(path, f"unsupported URL scheme {scheme!r} "
                             "(use http, https, git, ssh, file or a local path)")
                return None
            return text
        if text.startswith("-"):
            # Git would read it as an option.
            self.problem(path, f"{text!r} looks like a command-line option, not a remote")
            return None
        return absolute_remote(text, self.base_dir)

    def trust_root(self, path: str, value: Any) -> str | None:
        text = self.string(path, value, required=True)
        if text is None:
            return None
        if text.lower().startswith("sha256:"):
            if not TRUST_ROOT_FINGERPRINT.fullmatch(text):
                self.problem(path, "a fingerprint must be 'sha256:' and 64 hex digits "
                             "(as printed by `gitreg init`)")
                return None
            return text.lower()
        file = self.path(path, text)
        if file is None:
            return None
        if not file.is_file():
            self.problem(path, f"policy file not found: {file} "
                         "(give 'sha256:<hex>' or the path of a policy.json)")
            return None
        return str(file)

    def list_selector(self, path: str, text: str) -> str | None:
        """``*``, a list UUID (normalised), or a name: a list's title or an image series.

        Names are resolved at each sync against the registry (gitreg.site.names).
        """
        if text == "*":
            return text
        if len(text) == 36:
            with contextlib.suppress(ValueError):
                return str(uuid.UUID(text))
        return text

    def uuid_text(self, path: str, text: str) -> str | None:
        # Only the canonical 8-4-4-4-12 form: uuid.UUID also takes braces and URNs.
        if len(text) == 36:
            try:
                return str(uuid.UUID(text))
            except ValueError:
                pass
        self.problem(path, f"{text!r} is not a UUID")
        return None

    def command(self, path: str, value: Any) -> list[str] | None:
        if value is None:
            self.problem(path, "missing (required)")
            return None
        if isinstance(value, str):
            try:
                words = shlex.split(value)
            except ValueError as exc:
                self.problem(path, f"cannot be split into words: {exc}")
                return None
            if not words:
                self.problem(path, "must not be empty")
                return None
        elif isinstance(value, list):
            words = []
            for i, element in enumerate(value):
                if not isinstance(element, str):
                    self.problem(f"{path}[{i}]", f"must be a string, not {kind_of(element)}")
                    return None
                words.append(element)
            if not words or not words[0]:
                self.problem(path, "must be a non-empty list with the program first")
                return None
        else:
            self.problem(path, f"must be a string or a list of strings, not {kind_of(value)}")
            return None
        if any("\x00" in w for w in words):
            self.problem(path, "must not contain a NUL character")
            return None
        program = Path(words[0]).expanduser()
        # A bare name is looked up on PATH; anything with a slash is a file
        # path, relative to the config file like every other path in it.
        if "/" in words[0] and not program.is_absolute():
            words[0] = str((self.base_dir / program).absolute())
        elif words[0].startswith("~"):
            words[0] = str(program)
        return words


def did_you_mean(word: str, choices: Sequence[str] | set[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def kind_of(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table"}
    for type_, name in kinds.items():
        if isinstance(value, type_):
            return name
    return type(value).__name__  # dates and times


def as_text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
