"""What the site state holds, row by row (gitreg/site/state.py reads and writes them).

The ``Literal`` domains are those the schema's ``CHECK`` constraints
enforce (gitreg/site/state_schema.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gitreg.site.events import EventType

RemoteState = Literal["current", "stale", "forked", "invalid", "unreachable"]
ImageState = Literal["pending", "cached", "expired", "revoked", "failed"]
DeliveryStatus = Literal["pending", "started", "delivered", "failed", "dropped"]

# Deliveries a later sync still owes (run again, or retried).
OPEN_DELIVERY: tuple[DeliveryStatus, ...] = ("pending", "started", "failed")


@dataclass(frozen=True)
class RegistryRecord:
    name: str
    trusted_commit: str | None
    advanced_at: datetime | None
    # Sorted parents when the trusted commit is this site's own merge (which
    # exists on no remote): enough to rebuild it if repos/ is lost.
    merge_parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConflictRecord:
    """An image UUID claimed by several registries (or lists of one) at the last sync."""

    image_uuid: str
    registries: tuple[str, ...]
    taken_from: str | None  # the registry it was taken from (conflicts = "priority")
    detail: str
    seen_at: datetime


@dataclass(frozen=True)
class EquivocationRecord:
    """One list (or the policy) at one version with several contents, as a sync saw it."""

    registry: str
    path: str
    version: str
    blobs: tuple[str, ...]  # the competing contents, sorted
    commits: tuple[str, ...]  # the commits that carry them, sorted
    chosen: str | None  # the blob the deterministic merge took
    detail: str
    reason: str = "equivocation"  # or "image-conflict" (gitreg.verify.merge.Equivocation)
    first_seen: datetime | None = None
    last_seen: datetime | None = None


@dataclass(frozen=True)
class RemoteRecord:
    registry: str
    url: str
    state: RemoteState
    detail: str
    commit: str | None
    checked_at: datetime


@dataclass(frozen=True)
class ImageRecord:
    uuid: str
    registry: str
    list_uuid: str
    list_version: str
    sha512: str
    size: int
    state: ImageState
    reason: str
    path: str | None
    # The image's hv:image keys when last seen: needed for the Expire events
    # of an image its list no longer contains.
    metadata: Mapping[str, Any] = field(default_factory=dict)
    vo: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Delivery:
    handler: str
    status: DeliveryStatus
    attempts: int
    returncode: int | None
    timed_out: bool
    detail: str
    updated_at: datetime

    @property
    def interrupted(self) -> bool:
        """Started but never recorded: the sync died while the handler ran."""
        return self.status == "started"


@dataclass(frozen=True)
class EventRecord:
    seq: int
    key: str
    type: EventType
    env: Mapping[str, str]
    created_at: datetime
    deliveries: tuple[Delivery, ...]

    @property
    def pending_handlers(self) -> tuple[str, ...]:
        return tuple(d.handler for d in self.deliveries if d.status in OPEN_DELIVERY)
