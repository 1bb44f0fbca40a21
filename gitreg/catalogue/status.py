"""Validity of catalogue records at one reference time (pure: the clock is given).

A list record carries what the verifier found (who signed it, whether that
signer is still allowed by the policy of the state) and its dates; whether it
is *valid now* depends on the reference time, so it is judged at query time
and never cached. Dates are compared as text: the format is fixed
(``YYYY-MM-DDTHH:MM:SSZ``), so text order is time order, and a search over
30,000 images does not parse 60,000 dates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gitreg.model.dates import format_date

VALID = "valid"
EXPIRED = "expired"
REVOKED = "revoked"
INERT = "inert"  # signed by an endorser whose policy entry has expired
POLICY_EXPIRED = "policy-expired"

STATUSES = (VALID, EXPIRED, REVOKED, INERT, POLICY_EXPIRED)


def stamp(now: datetime) -> str:
    """The reference time in the records' date format."""
    return format_date(now)


def list_status(registry: dict[str, Any], record: dict[str, Any],
                now: str) -> tuple[str, str]:
    """``(status, reason)`` of a list record of ``registry`` at ``now`` (``stamp``)."""
    signature = record["signature"]
    if signature.get("error"):
        return REVOKED, str(signature["error"])
    if now >= registry["policy_expires"]:
        return POLICY_EXPIRED, f"the registry's policy expired at {registry['policy_expires']}"
    until = signature.get("endorser_expires")
    if until and now >= until:
        return INERT, f"endorser {signature.get('endorser')} expired at {until}"
    if now >= record["expires"]:
        return EXPIRED, f"the list expired at {record['expires']}"
    return VALID, ""


def image_status(list_state: tuple[str, str], image: dict[str, Any],
                 now: str) -> tuple[str, str]:
    """``(status, reason)`` of one image of a list whose status is ``list_state``."""
    if list_state[0] != VALID:
        return list_state
    expires = image.get("expires")
    if expires and now >= expires:
        return EXPIRED, f"the image expired at {expires}"
    return VALID, ""
