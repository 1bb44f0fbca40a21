"""The site's records of what each cloud adapter registered (table ``cloud_image``).

One row per cloud and image version (image UUID + the list's SHA-512): the
cloud's id for it, the digest of the bytes uploaded (differs from the list's
when converted), and when the image stopped being valid (the start of its
grace periods). The cloud itself is the truth for what exists (the
reconciler lists it every run), so a lost or stale row costs at most a
grace period restarted, never a duplicate upload.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

from gitreg.site.state import SiteState

CloudRecordState = Literal["registered", "retiring", "failed"]
_TIME = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class CloudRecord:
    cloud: str
    image_uuid: str
    sha512: str
    remote_id: str | None
    uploaded_sha512: str | None
    disk_format: str | None
    state: CloudRecordState
    reason: str
    retired_at: datetime | None
    members: frozenset[str]


class CloudRecords:
    """Read and write one cloud's rows in the site state (each write its own transaction)."""

    def __init__(self, state: SiteState, cloud: str) -> None:
        self.state = state
        self.cloud = cloud

    def all(self) -> dict[tuple[str, str], CloudRecord]:
        rows = self.state._read(  # the state's own connection and error handling
            "SELECT cloud, image_uuid, sha512, remote_id, uploaded_sha512, disk_format, state, "
            "reason, retired_at, members FROM cloud_image WHERE cloud = ?", (self.cloud,))
        records = [CloudRecord(r[0], r[1], r[2], r[3], r[4], r[5], cast(CloudRecordState, r[6]),
                               r[7], _parse(r[8]) if r[8] else None,
                               frozenset(r[9].split()) if r[9] else frozenset())
                   for r in rows]
        return {(r.image_uuid, r.sha512): r for r in records}

    def put(self, image_uuid: str, sha512: str, *, state: CloudRecordState, now: datetime,
            remote_id: str | None = None, uploaded_sha512: str | None = None,
            disk_format: str | None = None, reason: str = "",
            retired_at: datetime | None = None,
            members: frozenset[str] = frozenset()) -> None:
        self.state._write(
            "INSERT INTO cloud_image (cloud, image_uuid, sha512, remote_id, uploaded_sha512, "
            "disk_format, state, reason, retired_at, members, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (cloud, image_uuid, sha512) DO UPDATE SET "
            "remote_id = excluded.remote_id, uploaded_sha512 = excluded.uploaded_sha512, "
            "disk_format = excluded.disk_format, state = excluded.state, "
            "reason = excluded.reason, retired_at = excluded.retired_at, "
            "members = excluded.members, updated_at = excluded.updated_at",
            (self.cloud, image_uuid, sha512, remote_id, uploaded_sha512, disk_format, state,
             reason, _stamp(retired_at) if retired_at else None, " ".join(sorted(members)),
             _stamp(now)))

    def forget(self, image_uuid: str, sha512: str) -> None:
        self.state._write("DELETE FROM cloud_image WHERE cloud = ? AND image_uuid = ? "
                          "AND sha512 = ?", (self.cloud, image_uuid, sha512))


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TIME)


def _parse(text: str) -> datetime:
    return datetime.strptime(text, _TIME).replace(tzinfo=UTC)
