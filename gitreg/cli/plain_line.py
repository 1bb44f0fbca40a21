"""A command line plain enough to run without typer.

typer, with the pydantic it imports to coerce options, costs more than
pygit2, so ``gitreg.cli.main.run`` hands a plain line of the commands that
cron, hooks and scripts run (``site sync``, ``search``, ``verify``) straight
to their run functions. A line is plain when it is an optional leading
``--verbose``/``-v``, the command's words, then known options (each once,
unless repeatable; ``--name=value`` for long names), known flags (each
once), and other arguments up to the command's number. Anything else (``--help``,
``--``, a typo, a value that looks like an option) is left to typer, which
owns the messages for those.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PlainLine:
    """What a plain line gave: option values by canonical name, flags, arguments."""

    values: Mapping[str, Sequence[str]]
    flags: frozenset[str]
    positionals: tuple[str, ...]
    verbose: bool

    def value(self, name: str) -> str | None:
        """The value of an option given at most once, or None if it was not given."""
        given = self.values.get(name)
        return given[-1] if given else None


def parse_plain_line(argv: Sequence[str], command: Sequence[str], *,
                     options: Mapping[str, str], flags: Collection[str] = (),
                     repeatable: Collection[str] = (),
                     positionals: int | None = 0) -> PlainLine | None:
    """``argv`` as a plain ``command`` line, else None.

    ``options``: each spelling (``--config``, ``-c``) -> its canonical name;
    ``repeatable``: canonical names that may be given more than once;
    ``positionals``: how many other arguments at most (None: any number).
    """
    args = list(argv)
    verbose = bool(args) and args[0] in ("--verbose", "-v")
    if verbose:
        args.pop(0)
    if args[:len(command)] != list(command):
        return None
    values: dict[str, list[str]] = {}
    given: set[str] = set()
    found: list[str] = []
    rest = args[len(command):]
    while rest:
        arg = rest.pop(0)
        name, value = arg, None
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
        if name in options:
            canonical = options[name]
            if value is None:
                if not rest:
                    return None  # typer says what is missing
                value = rest.pop(0)
            if value.startswith("-") or (canonical in values and canonical not in repeatable):
                return None
            values.setdefault(canonical, []).append(value)
        elif value is None and arg in flags and arg not in given:
            given.add(arg)
        elif arg.startswith("-") or (positionals is not None and len(found) >= positionals):
            return None
        else:
            found.append(arg)
    return PlainLine(values, frozenset(given), tuple(found), verbose)
