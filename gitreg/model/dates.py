"""HEPiX dates: exactly ``YYYY-MM-DDTHH:MM:SSZ``, always UTC, seconds precision.

One strict form keeps signed lists byte-stable and comparable: no offsets,
no fractions, no lower-case ``z``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")

DATE_FORMAT = "YYYY-MM-DDTHH:MM:SSZ"


def parse_date(s: str) -> datetime:
    """Parse ``s`` into a timezone-aware UTC datetime, or raise ValueError."""
    match = _DATE.fullmatch(s)
    if match is None:
        raise ValueError(f"{s!r} is not a date of the form {DATE_FORMAT}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"{s!r} is not a valid date: {exc}") from None


def format_date(dt: datetime) -> str:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` (in UTC, fractions dropped)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        # A naive time could be local or UTC; guessing would shift expiries.
        raise ValueError(f"{dt.isoformat()} has no timezone; use an aware datetime")
    utc = dt.astimezone(UTC)
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
            f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z")


def utcnow() -> datetime:
    """Now, in UTC, to the second (the precision of HEPiX dates)."""
    return datetime.now(UTC).replace(microsecond=0)
