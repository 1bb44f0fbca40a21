"""The one reference time (and mode) a verification run is judged at.

The trust core reads no clock: whoever runs it decides the moment once and
hands it over in a ``VerifyContext``. The hook, ``gitreg verify``,
``gitreg publish`` and the site differ only in that value:

- ``push`` (the pre-receive hook, the publish pre-check): push time is
  trustworthy, so a commit is refused if it acts through an endorser or a
  policy that is expired at that time, or adds a list already expired;
- ``history`` (``gitreg verify``, ``server init``) and ``site`` (a site or a
  mirror): commits in the middle of history may have been made under
  policies and endorsers that expired since, so expiry is judged on the
  resulting *state* at the reference time (``gitreg.verify.state``).

A date written into a commit or a list is the signer's to choose and is never
a reference time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

# Bumped whenever a rule of the trust core changes (tests/test_trust_structure.py
# holds a hash of the rule modules and fails when they change without it):
# verdicts cached under another rules version are not reused.
RULES_VERSION = 16


class Mode(StrEnum):
    PUSH = "push"
    HISTORY = "history"
    SITE = "site"


@dataclass(frozen=True)
class VerifyContext:
    """What one verification run is judged against."""

    at: datetime
    mode: Mode
    rules_version: int = RULES_VERSION

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("the reference time must carry a time zone")

    @classmethod
    def for_push(cls, now: datetime) -> VerifyContext:
        """The hook and the publish pre-check: ``now`` is the time of the push."""
        return cls(now, Mode.PUSH)

    @classmethod
    def for_history(cls, now: datetime) -> VerifyContext:
        """``gitreg verify`` and ``server init``: history, with the state judged at ``now``."""
        return cls(now, Mode.HISTORY)

    @classmethod
    def for_site(cls, now: datetime) -> VerifyContext:
        """A site or a mirror: history, with the state judged at ``now``."""
        return cls(now, Mode.SITE)

    @property
    def refuses_expired_at_commit(self) -> bool:
        """Whether expiry refuses a commit (push) or only shapes the state (history, site)."""
        return self.mode is Mode.PUSH

    def describe(self) -> str:
        return f"{self.mode} at {self.at:%Y-%m-%dT%H:%M:%SZ} (rules version {self.rules_version})"
