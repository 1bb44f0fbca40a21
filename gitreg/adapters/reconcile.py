"""Reconcile one cloud with the site's verified images: the same rules for every back-end.

Every run lists the cloud's gitreg images and compares them with what the
site holds, so it is idempotent and crash-safe by construction:

- a wanted image with no good cloud image is uploaded (hidden until its
  digest is checked); the cloud image of an interrupted upload (not active),
  one whose stored bytes have the wrong digest, and a second good copy (a
  sync killed between upload and record) are deleted;
- the latest version of a series carries the series' plain name, older
  versions ``Name (version)`` and are hidden (osism/openstack-image-manager's
  convention); properties, visibility and members follow the list;
- a cloud image no longer wanted (revoked, expired, superseded) is renamed,
  then hidden, deactivated and deleted as its grace periods pass, counted
  from when the site first saw it unwanted; wanted again in time, it is
  reactivated, not uploaded again;
- a run with nothing new makes no write request at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gitreg.adapters import diskimage, properties
from gitreg.adapters.interface import (
    CloudBackend,
    CloudRefusedError,
    CloudUnreachableError,
    ImageRefusedError,
    ImportFailedError,
    RemoteImage,
    Upload,
    VerifiedImage,
)
from gitreg.adapters.properties import text_value
from gitreg.adapters.records import CloudRecord, CloudRecords
from gitreg.model.versions import version_key
from gitreg.site.cloud_config import CloudConfig
from gitreg.site.crash import crash_point

Key = tuple[str, str]  # (image UUID, the list's SHA-512)
# Set once at upload and never compared: they describe that upload.
_UPLOAD_ONLY = frozenset({"gitreg_commit", "gitreg_uploaded_sha512", "gitreg_source_format",
                          "gitreg_size", "gitreg_import_verified", "min_disk"})


@dataclass
class CloudOutcome:
    """What one cloud's reconciliation did (the sync report's ``clouds`` entries)."""

    name: str
    kind: str
    uploaded: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    retired: list[dict[str, str]] = field(default_factory=list)
    cleaned: list[dict[str, str]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    # image UUID -> its list's UUID, for the failed ones (reports name both).
    lists: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    reads: int = 0
    writes: int = 0

    def fail(self, image: VerifiedImage, reason: str) -> None:
        """Report ``image`` refused, with its list (``failed`` and ``lists`` go together)."""
        self.failed[image.uuid] = reason
        self.lists[image.uuid] = image.list_uuid

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.kind, "uploaded": self.uploaded,
                "updated": self.updated, "restored": self.restored, "retired": self.retired,
                "cleaned": self.cleaned,
                "failed": [{"uuid": k, "imagelist": self.lists.get(k), "reason": v}
                           for k, v in sorted(self.failed.items())],
                "error": self.error, "reads": self.reads, "writes": self.writes}


@dataclass(frozen=True)
class Placement:
    """Where an image stands in its series: its name and whether it is hidden."""

    name: str
    hidden: bool
    version: str


def series_placements(images: Sequence[VerifiedImage]) -> dict[Key, Placement]:
    """The newest image of each series takes its plain name; older ones are renamed, hidden.

    A series is ``gitreg:series`` or, without it, the list and the image title.
    """
    groups: dict[tuple[str, ...], list[VerifiedImage]] = defaultdict(list)
    for image in images:
        series = text_value(image.metadata.get("gitreg:series"))
        title = text_value(image.metadata.get("dc:title")) or image.uuid
        groups[("series", series) if series else ("list", image.list_uuid, title)].append(image)
    placed: dict[Key, Placement] = {}
    for group_key, members in groups.items():
        base = group_key[1] if group_key[0] == "series" else group_key[2]
        ordered = sorted(members, key=lambda i: (version_key(_version(i)),
                                                 version_key(i.list_version), i.uuid),
                         reverse=True)
        for rank, image in enumerate(ordered):
            version = _version(image)
            placed[(image.uuid, image.sha512)] = (
                Placement(base, False, version) if rank == 0
                else Placement(f"{base} ({version})", True, version))
    return placed


def retirement_stage(config: CloudConfig, since: datetime, now: datetime) -> str:
    """"renamed", "hidden", "deactivated" or "deleted": how far a retired image has gone."""
    age = (now - since).total_seconds()
    if age >= config.delete_after:
        return "deleted"
    if age >= config.deactivate_after:
        return "deactivated"
    if age >= config.hide_after:
        return "hidden"
    return "renamed"


class Reconciler:
    def __init__(self, config: CloudConfig, backend: CloudBackend, records: CloudRecords, *,
                 work_dir: Path, now: datetime) -> None:
        self.config = config
        self.backend = backend
        self.records = records
        self.work_dir = work_dir
        self.now = now
        self.outcome = CloudOutcome(config.name, config.type)

    def run(self, wanted: Sequence[VerifiedImage]) -> CloudOutcome:
        try:
            self._run([w for w in wanted if self.config.wants_registry(w.registry)])
        except (CloudUnreachableError, CloudRefusedError) as exc:
            self.outcome.error = exc.message
        finally:
            self.outcome.reads = self.backend.reads
            self.outcome.writes = self.backend.writes
        return self.outcome

    def _run(self, wanted: Sequence[VerifiedImage]) -> None:
        known = self.records.all()
        remotes: dict[Key, list[RemoteImage]] = defaultdict(list)
        for remote in self.backend.list_images():
            if remote.properties.get("gitreg_cloud") == self.config.name:
                remotes[(remote.image_uuid, remote.list_sha512)].append(remote)
        placements = series_placements(wanted)
        by_key = {(w.uuid, w.sha512): w for w in wanted}
        unwanted = {k: v for k, v in remotes.items() if k not in by_key}
        # Names are freed before they are taken (OpenNebula wants them unique):
        # retired images first, then older versions of a series, then the newest.
        for key, group in sorted(unwanted.items()):
            self._unwanted(key, group, known.get(key))
        for key, image in sorted(by_key.items(), key=lambda kv: (not placements[kv[0]].hidden,
                                                                 kv[0])):
            self._wanted(image, placements[key], remotes.get(key, []), known.get(key))
        for key, record in known.items():
            if key not in by_key and key not in remotes and record.state != "failed":
                self.records.forget(*key)  # retired and gone from the cloud

    # --- wanted images ---------------------------------------------------------

    def _wanted(self, image: VerifiedImage, place: Placement, group: list[RemoteImage],
                record: CloudRecord | None) -> None:
        if record is not None and record.state == "failed" and not group:
            self.outcome.fail(image, record.reason)
            return
        expected = record.uploaded_sha512 if record and record.uploaded_sha512 else None
        keep = self._clean(group, {image.sha512, *([expected] if expected else [])},
                           prefer=record.remote_id if record else None)
        if keep is None:
            try:
                keep = self._upload(image, place)
            except ImageRefusedError as exc:
                self.outcome.fail(image, exc.message)
                if not isinstance(exc, ImportFailedError):  # Glance's fetch may work next run
                    self.records.put(image.uuid, image.sha512, state="failed",
                                     reason=exc.message, now=self.now)
                return
            record = self.records.all().get((image.uuid, image.sha512))
        elif record is None or record.remote_id != keep.id or record.state != "registered":
            self.records.put(image.uuid, image.sha512, state="registered", remote_id=keep.id,
                             uploaded_sha512=keep.sha512, disk_format=None, now=self.now,
                             members=record.members if record else frozenset())
            record = self.records.all().get((image.uuid, image.sha512))
        if keep.status == "deactivated":
            self.backend.reactivate(keep)
            self.outcome.restored.append(image.uuid)
        self._converge(image, place, keep)
        self._share(image, keep, record)

    def _clean(self, group: list[RemoteImage], digests: set[str], *,
               prefer: str | None) -> RemoteImage | None:
        """Delete interrupted uploads, wrong bytes and duplicates; the one to keep, if any.

        Of several good copies the recorded one stays, else an active one.
        """
        keep: RemoteImage | None = None
        for remote in sorted(group, key=lambda r: (r.id != prefer, r.status != "active", r.id)):
            if remote.status == "incomplete":
                why = "interrupted upload"
            elif remote.sha512 not in digests:
                why = f"stored bytes have SHA-512 {remote.sha512}, not the list's"
            elif keep is None:
                keep = remote
                continue
            else:
                why = f"duplicate of {keep.id}"
            self.backend.delete(remote)
            self.outcome.cleaned.append({"uuid": remote.image_uuid, "id": remote.id,
                                         "reason": why})
        return keep

    def _upload(self, image: VerifiedImage, place: Placement) -> RemoteImage:
        upload, info, source_format = self._prepare(image)
        props = properties.image_properties(image, cloud=self.config.name)
        ram = properties.ram_mib(image.metadata.get("hv:ram_minimum"))
        if ram is not None:
            props["min_ram"] = str(ram)
        props["min_disk"] = str(properties.min_disk_gib(info.virtual_size, image.size))
        props["gitreg_uploaded_sha512"] = upload.stored_sha512
        # With gitreg_sha512, what Glance's verify plugin checks staged bytes against.
        props["gitreg_size"] = str(image.size)
        if image.commit:
            props["gitreg_commit"] = image.commit
        if source_format != upload.stored_format:
            props["gitreg_source_format"] = source_format
        try:
            remote = self.backend.upload(upload, name=place.name,
                                         visibility=self.config.visibility, properties=props)
        finally:
            if upload.path != image.path:
                upload.path.unlink(missing_ok=True)
        if remote.sha512 != upload.stored_sha512:
            self.backend.delete(remote)
            raise ImageRefusedError(f"the cloud stored bytes with SHA-512 {remote.sha512}, "
                                    f"not {upload.stored_sha512}: image deleted")
        crash_point("cloud-upload")
        self.records.put(image.uuid, image.sha512, state="registered", remote_id=remote.id,
                         uploaded_sha512=upload.stored_sha512,
                         disk_format=upload.stored_format, now=self.now)
        self.outcome.uploaded.append(image.uuid)
        return remote

    def _prepare(self, image: VerifiedImage) -> tuple[Upload, diskimage.DiskInfo, str]:
        declared = text_value(image.metadata.get("hv:format"))
        info = diskimage.inspect(image.path, declared=declared)
        formats = self.config.disk_formats
        # web-download: Glance fetches the list's own URL, so only bytes it stores
        # as they are or converts itself; a locally converted file is streamed.
        uri = text_value(image.metadata.get("hv:uri")) \
            if self.config.upload == "web-download" else None
        if not formats or info.format in formats:
            return (Upload(image.path, info.format, image.size, image.sha512, uri=uri), info,
                    info.format)
        if not self.config.convert:
            raise ImageRefusedError(f"the image is {info.format}, this cloud takes "
                                    f"{', '.join(formats)}, and convert = false")
        # The cache file was verified when it arrived; check again before qemu-img
        # turns its bytes into new ones that no list vouches for.
        if diskimage.file_sha512(image.path) != image.sha512:
            raise ImageRefusedError("cache file no longer has the list's SHA-512: not converted")
        target_format = "raw" if "raw" in formats else formats[0]
        if self.config.glance_converts and target_format != "raw":
            raise ImageRefusedError(f"the image is {info.format} and this cloud takes "
                                    f"{', '.join(formats)}: Glance's conversion can be checked "
                                    "only into raw, whose bytes qemu-img makes the same "
                                    "everywhere")
        target = self.work_dir / f"{image.uuid}.{target_format}"
        digest = diskimage.convert(image.path, target, source_format=info.format,
                                   target_format=target_format)
        if self.config.glance_converts:
            # Glance converts; the local conversion only says what digest its
            # result must have (Glance takes none to check against).
            target.unlink()
            return (Upload(image.path, info.format, image.size, image.sha512, uri=uri,
                           convert_to=target_format, converted_sha512=digest), info,
                    info.format)
        return (Upload(target, target_format, target.stat().st_size, digest), info,
                info.format)

    def _converge(self, image: VerifiedImage, place: Placement, remote: RemoteImage) -> None:
        """Name, hidden flag, visibility and properties as the list says; no call if equal."""
        changes: dict[str, Any] = {}
        if remote.name != place.name:
            changes["name"] = place.name
        if remote.hidden != place.hidden:
            changes["hidden"] = place.hidden
        if remote.visibility != self.config.visibility:
            changes["visibility"] = self.config.visibility
        if image.list_keys is not None:
            desired: dict[str, str | None] = dict(
                properties.image_properties(image, cloud=self.config.name))
            ram = properties.ram_mib(image.metadata.get("hv:ram_minimum"))
            desired["min_ram"] = str(ram) if ram is not None else "0"
            for key in remote.properties:
                if _managed(key) and key not in desired and key not in _UPLOAD_ONLY:
                    desired[key] = None
            diff = {k: v for k, v in desired.items() if remote.properties.get(k) != v}
            if diff:
                changes["properties"] = diff
        if changes:
            self.backend.update(remote, **changes)
            self.outcome.updated.append(image.uuid)

    def _share(self, image: VerifiedImage, remote: RemoteImage,
               record: CloudRecord | None) -> None:
        project = self.config.projects.get(image.vo or "") if image.vo else None
        members = frozenset([project]) if project and self.config.visibility == "shared" \
            else frozenset()
        if record is not None and record.members == members:
            return
        if members or (record is not None and record.members):
            self.backend.set_members(remote, members)
        self.records.put(image.uuid, image.sha512, state="registered", remote_id=remote.id,
                         uploaded_sha512=record.uploaded_sha512 if record else remote.sha512,
                         disk_format=record.disk_format if record else None, now=self.now,
                         members=members)

    # --- retirement ------------------------------------------------------------

    def _unwanted(self, key: Key, group: list[RemoteImage], record: CloudRecord | None) -> None:
        since = record.retired_at if record and record.retired_at else self.now
        if record is None or record.retired_at is None:
            self.records.put(*key, state="retiring", retired_at=since, now=self.now,
                             remote_id=group[0].id,
                             uploaded_sha512=record.uploaded_sha512 if record else None,
                             members=record.members if record else frozenset())
        stage = retirement_stage(self.config, since, self.now)
        kept = False
        for remote in group:
            if remote.status == "incomplete" or (stage == "deleted" and not remote.in_use):
                self.backend.delete(remote)
                self._retired(remote, "deleted")
                continue
            kept = True
            version = remote.properties.get("gitreg_version") or \
                remote.properties.get("gitreg_list_version", "")
            changes: dict[str, Any] = {}
            name = self.backend.retired_name(remote, version, since)
            if name != remote.name:
                changes["name"] = name
            if stage != "renamed" and not remote.hidden:
                changes["hidden"] = True
            if changes:
                self.backend.update(remote, **changes)
                self._retired(remote, "hidden" if changes.get("hidden") else "renamed")
            if stage in ("deactivated", "deleted") and remote.status == "active":
                self.backend.deactivate(remote)
                self._retired(remote, "deactivated")
        if stage == "deleted" and not kept:
            self.records.forget(*key)

    def _retired(self, remote: RemoteImage, action: str) -> None:
        self.outcome.retired.append({"uuid": remote.image_uuid, "id": remote.id,
                                     "action": action})


def _managed(key: str) -> bool:
    return key.startswith(("gitreg_", "vmcatcher_event_")) or key in _MANAGED_KEYS


_MANAGED_KEYS = frozenset({"os_distro", "os_version", "architecture", "hypervisor_type",
                           "image_source", "image_description", "image_build_date",
                           "provided_until", "uuid_validity", "image_original_user",
                           "replace_frequency", "min_ram"})


def _version(image: VerifiedImage) -> str:
    return text_value(image.metadata.get("hv:version")) or image.list_version


def wanted_images(records: Sequence[Any], list_keys: Mapping[str, Mapping[str, Any]],
                  commits: Mapping[str, str | None]) -> list[VerifiedImage]:
    """The cached image records as adapters see them (``list_keys`` by image UUID)."""
    return [VerifiedImage(uuid=r.uuid, registry=r.registry, list_uuid=r.list_uuid,
                          list_version=r.list_version, sha512=r.sha512, size=r.size,
                          path=Path(r.path), metadata=r.metadata,
                          list_keys=list_keys.get(r.uuid), vo=r.vo,
                          commit=commits.get(r.registry))
            for r in records if r.path]
