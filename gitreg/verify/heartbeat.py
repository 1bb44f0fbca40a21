"""Signed freshness: is a heartbeat statement valid, and is a state fresh enough?

A replica (``gitreg server heartbeat``, from cron) signs a small statement:
registry id, replica name, the commit its ``main`` names and the time. A
mirror or a replica that stopped in time can serve old commits and old
heartbeats, but cannot sign new ones, so a site whose policy names heartbeat
keys and a maximum age refuses a state that no young heartbeat vouches for
("freeze suspected"). Pure: statement and signature bytes, the policy and
the run's ``VerifyContext`` in; a ``Heartbeat`` or a typed error out. Where
a heartbeat's commit lies in history (is it the applied state or newer?) is
the caller's question to Git; ``judge_freshness`` gets the answer as a flag.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gitreg.errors import (
    InvalidDocumentError,
    InvalidKeyError,
    PolicyViolationError,
    Problem,
    SignatureError,
)
from gitreg.model import strictjson
from gitreg.model.dates import format_date, parse_date
from gitreg.model.policy import Policy
from gitreg.model.registry_info import uuid_problem
from gitreg.signing.interface import NAMESPACE_HEARTBEAT
from gitreg.verify.context import VerifyContext
from gitreg.verify.signatures import named_signer

STATEMENT_TYPE = "gitreg-heartbeat"
STATEMENT_FORMAT = 1
STATEMENT_FIELDS = ("type", "format", "registry", "replica", "commit", "time")
# A statement is a few hundred bytes; anything bigger is not one.
MAX_STATEMENT_SIZE = 4096
MAX_SIGNATURE_SIZE = 64 * 1024
# Clocks of a replica and a site differ a little; beyond this a heartbeat
# "from the future" means one of the two clocks is wrong (reported, not counted).
CLOCK_SKEW_TOLERANCE = timedelta(minutes=5)
REPLICA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Heartbeat:
    """One statement: replica ``replica`` of ``registry`` had ``commit`` as ``main`` at ``time``."""

    registry: str
    replica: str
    commit: str
    time: datetime
    # The policy key that signed it (empty until verified).
    key_id: str = ""

    def age(self, at: datetime) -> timedelta:
        """How old the heartbeat is at ``at`` (negative: from the future)."""
        return at - self.time


def statement_bytes(*, registry: str, replica: str, commit: str, time: datetime) -> bytes:
    """The canonical statement a heartbeat key signs (namespace ``gitreg-heartbeat``)."""
    return strictjson.canonical_dumps({
        "type": STATEMENT_TYPE, "format": STATEMENT_FORMAT, "registry": registry,
        "replica": replica, "commit": commit, "time": format_date(time)})


def parse_statement(data: bytes, *, source: str) -> Heartbeat:
    """Parse a statement strictly; ``InvalidDocumentError`` naming every bad field."""
    doc = strictjson.loads(data, source=source, max_size=MAX_STATEMENT_SIZE)
    problems: list[Problem] = []

    def bad(key: str, message: str) -> None:
        problems.append(Problem(key, message, source))

    if not isinstance(doc, dict):
        bad("", "must be an object")
        raise InvalidDocumentError(problems, source=source)
    for key in doc:
        if key not in STATEMENT_FIELDS:
            bad(key, f"unknown key (allowed: {', '.join(STATEMENT_FIELDS)})")
    for key in STATEMENT_FIELDS:
        if key not in doc:
            bad(key, "missing")
        elif key != "format" and not isinstance(doc[key], str):
            bad(key, "must be a string")
    if problems:
        raise InvalidDocumentError(problems, source=source)
    if doc["type"] != STATEMENT_TYPE:
        bad("type", f"must be {STATEMENT_TYPE!r}, not {doc['type']!r}")
    if doc["format"] != STATEMENT_FORMAT or isinstance(doc["format"], bool):
        bad("format", f"must be {STATEMENT_FORMAT}, not {doc['format']!r}")
    if (why := uuid_problem(doc["registry"])) is not None:
        bad("registry", why)
    if not REPLICA_NAME.fullmatch(doc["replica"]):
        bad("replica", f"{doc['replica']!r} is not a replica name (letters, digits and "
                       "._-, at most 64)")
    if not _COMMIT.fullmatch(doc["commit"]):
        bad("commit", f"{doc['commit']!r} is not a commit id (40 lower-case hex digits)")
    try:
        moment = parse_date(doc["time"])
    except ValueError as exc:
        bad("time", str(exc))
    if problems:
        raise InvalidDocumentError(problems, source=source)
    return Heartbeat(registry=doc["registry"], replica=doc["replica"], commit=doc["commit"],
                     time=moment)


def verify_heartbeat(statement: bytes, signature: bytes, policy: Policy,
                     context: VerifyContext, *, source: str) -> Heartbeat:
    """The heartbeat ``statement`` states, if ``signature`` makes it valid under ``policy``.

    Valid: well formed, for ``policy``'s registry, signed by one of the
    policy's heartbeat keys, and not from the future beyond
    ``CLOCK_SKEW_TOLERANCE`` at the context's reference time. Its age is not
    judged here (``judge_freshness`` does): an old heartbeat is still genuine.
    Raises ``PolicyViolationError`` whose rule says what is wrong.
    """
    required = policy.heartbeat
    if required is None:
        raise PolicyViolationError(f"{source}: the policy names no heartbeat keys",
                                   rule="heartbeat-key", path=source)
    try:
        beat = parse_statement(statement, source=source)
    except InvalidDocumentError as exc:
        raise PolicyViolationError(exc.diagnostics().replace("\n", ";"),
                                   rule="heartbeat-format", path=source) from exc
    if beat.registry != policy.registry:
        raise PolicyViolationError(
            f"the heartbeat is for registry {beat.registry}, not {policy.registry}",
            rule="heartbeat-registry", path=source)
    if len(signature) > MAX_SIGNATURE_SIZE:
        raise PolicyViolationError(f"the signature is over {MAX_SIGNATURE_SIZE} bytes",
                                   rule="heartbeat-signature", path=source)
    beat = Heartbeat(beat.registry, beat.replica, beat.commit, beat.time,
                     key_id=_signer(statement, signature, policy, context, source=source,
                                    allowed=required.keys))
    ahead = beat.time - context.at
    if ahead > CLOCK_SKEW_TOLERANCE:
        raise PolicyViolationError(
            f"the heartbeat of replica {beat.replica} is dated {format_date(beat.time)}, "
            f"{describe_age(ahead)} in the future (reference time {format_date(context.at)}):"
            " clock skew between the replica and this host",
            rule="heartbeat-future", path=source,
            hint="check both clocks (NTP); the heartbeat does not count until then")
    return beat


def _signer(statement: bytes, signature: bytes, policy: Policy, context: VerifyContext, *,
            source: str, allowed: Sequence[str]) -> str:
    try:
        embedded, named = named_signer(policy, signature)
    except SignatureError as exc:
        raise PolicyViolationError(f"the signature is unusable: {exc.message}",
                                   rule="heartbeat-signature", path=source) from exc
    if named is not None and embedded not in allowed:
        who = f"key {embedded or named}" + ("" if embedded else " (not in the policy)")
        raise PolicyViolationError(f"the heartbeat is signed by {who}, which is not a "
                                   "heartbeat key of the policy", rule="heartbeat-key",
                                   path=source)
    candidates = [embedded] if embedded is not None else list(allowed)
    errors: list[str] = []
    for key_id in candidates:
        try:
            policy.public_key(key_id).verify(statement, signature,
                                             namespace=NAMESPACE_HEARTBEAT, at=context.at)
        # Broken key material in a root-signed policy verifies nothing.
        except (SignatureError, InvalidKeyError) as exc:
            errors.append(f"{key_id}: {exc.message}")
            continue
        return key_id
    raise PolicyViolationError(f"no valid signature by a heartbeat key ({'; '.join(errors)})",
                               rule="heartbeat-signature", path=source)


@dataclass(frozen=True)
class Freshness:
    """Whether a state is vouched for by a young enough heartbeat."""

    required: bool
    fresh: bool
    max_age: timedelta | None = None
    # The youngest valid heartbeat for the state (or a newer one), if any.
    newest: Heartbeat | None = None
    age: timedelta | None = None

    def describe(self) -> str:
        if not self.required:
            return "no heartbeat required"
        limit = describe_age(self.max_age) if self.max_age is not None else "?"
        if self.newest is None or self.age is None:
            return f"no valid heartbeat for this state (max age {limit})"
        return (f"newest valid heartbeat (replica {self.newest.replica}, commit "
                f"{self.newest.commit[:12]}) is {describe_age(self.age)} old "
                f"(max age {limit})")


def judge_freshness(policy: Policy, beats: Sequence[tuple[Heartbeat, bool]],
                    context: VerifyContext) -> Freshness:
    """Judge a state under ``policy`` from verified heartbeats.

    ``beats``: each verified heartbeat with whether its commit is the state
    or a descendant of it (only those count: a heartbeat for an older state
    says nothing about this one). Fresh when one counting heartbeat is at
    most ``max_age`` old at the reference time; a slightly future one
    (within the skew tolerance) counts as age zero.
    """
    required = policy.heartbeat
    if required is None:
        return Freshness(required=False, fresh=True)
    counting = [beat for beat, covers in beats if covers]
    if not counting:
        return Freshness(required=True, fresh=False, max_age=required.max_age)
    newest = max(counting, key=lambda b: (b.time, b.replica))
    age = max(newest.age(context.at), timedelta(0))
    return Freshness(required=True, fresh=age <= required.max_age, max_age=required.max_age,
                     newest=newest, age=age)


def describe_age(age: timedelta | None) -> str:
    """``3h 12m``, ``45s``, ``2d 4h``: an age as an operator reads it."""
    if age is None:
        return "none"
    seconds = int(abs(age).total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"
