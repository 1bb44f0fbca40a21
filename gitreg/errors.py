"""One error hierarchy for all of gitreg.

Two branches, as in python-tuf: ``RejectedError`` means the data (or the
remote that served it) is wrong: alert, never silently retry elsewhere.
``UnreachableError`` means the data could not be had: try the next remote.
Every error carries the exit code the CLI turns it into (README, "Exit codes").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_OPERATIONAL = 3


class GitregError(Exception):
    """Base of every error gitreg raises on purpose."""

    exit_code: int = EXIT_OPERATIONAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The full text a user sees: the message, then the hint if any."""
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


class UsageError(GitregError):
    """The command was called wrongly (bad option, missing file argument)."""

    exit_code = EXIT_USAGE


# --- "the data is wrong" -------------------------------------------------


class RejectedError(GitregError):
    """Data is invalid, untrusted, expired or against the policy."""

    exit_code = EXIT_REJECTED


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (file and JSON path) and what."""

    path: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        key = f"{self.path}: " if self.path else ""
        return f"{where}{key}{self.message}"


class InvalidDocumentError(RejectedError):
    """A JSON document (imagelist, policy, ...) failed parsing or validation.

    Carries every problem found, not just the first.
    """

    def __init__(self, problems: Sequence[Problem], *, source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        n = len(self.problems)
        summary = f"{head}{n} problem{'s' if n != 1 else ''}"
        super().__init__(summary)

    def diagnostics(self) -> str:
        lines = [self.message]
        lines.extend(f"  {p.path}: {p.message}" if p.path else f"  {p.message}"
                     for p in self.problems)
        return "\n".join(lines)


class ExpiredError(RejectedError):
    """A document is expired (against the run's one reference time)."""


class SignatureError(RejectedError):
    """A signature is malformed, does not match the bytes, or is by a key not allowed."""


class UntrustedSignerError(SignatureError):
    """The signature is valid but the signer is not trusted for this data."""


class WeakDigestError(SignatureError):
    """The signature uses a digest refused by default (SHA-1), whether or not it matches."""


class InvalidKeyError(RejectedError):
    """Key material (an SSH key line, an armoured OpenPGP key, a certificate) is
    malformed, unsupported or not the key it claims to be."""


class PolicyViolationError(RejectedError):
    """A change breaks a rule of the registry's trust policy.

    ``message`` stays bare (what is wrong); the place (commit, path) and the
    rule are kept apart and added once, by ``located()`` and
    ``diagnostics()``, so that code reporting the error never repeats them.
    """

    def __init__(self, message: str, *, rule: str, commit: str | None = None,
                 path: str | None = None, hint: str | None = None) -> None:
        self.rule = rule
        self.commit = commit
        self.path = path
        super().__init__(message, hint=hint)

    def place(self, *, commit: str | None = None) -> str:
        """``commit X, path`` (either may be absent); ``commit`` if the error names none."""
        where = []
        if self.commit or commit:
            where.append(f"commit {(self.commit or commit or '')[:12]}")
        if self.path:
            where.append(self.path)
        return ", ".join(where)

    def located(self, *, commit: str | None = None) -> str:
        """The message after its place: ``commit X, path: message``."""
        where = self.place(commit=commit)
        return f"{where}: {self.message}" if where else self.message

    def shown(self, *, commit: str | None = None) -> str:
        """One line as users see it: place, message and rule, each once."""
        return f"{self.located(commit=commit)} [rule: {self.rule}]"

    def diagnostics(self) -> str:
        if self.hint:
            return f"{self.shown()}\nhint: {self.hint}"
        return self.shown()

    def __str__(self) -> str:
        return self.shown()


# --- "the data could not be had" ------------------------------------------


class UnreachableError(GitregError):
    """A remote, URL or file could not be reached or read."""

    exit_code = EXIT_OPERATIONAL
