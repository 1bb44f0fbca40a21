"""What a sync must do: the desired images against what the site holds. Pure.

``desired_images`` reads what the plan needs of the verified lists of one
registry's target state (``ListSummary``: kept by the site per list blob, so
a list is parsed once, not at every sync) through the subscriptions (lists,
``images``, ``match``, ``new_images``) and drops what is expired (the list's
or the image's ``dc:date:expires``); what it drops is remembered with the
reason, so the planner can say why an image leaves. A list no subscription
wants needs no summary: its image UUIDs (the verifier's facts) are enough.
``make_plan`` compares the union over registries with the state's image
records and yields downloads, retirements and images kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gitreg.model.dates import format_date, parse_date
from gitreg.model.imagelist import Imagelist
from gitreg.site.config import Conflicts, Subscription
from gitreg.site.records import ImageRecord, ImageState
from gitreg.verify.facts import CREATED_SKEW

# Records whose image the site holds or is getting: the only ones a plan may
# retire, so the only ones whose lists a plan must read.
HELD_STATES: tuple[ImageState, ...] = ("cached", "pending", "failed")
# Part of the key under which a site remembers what it planned: bump it
# whenever desired_images computes something else from the same inputs.
# 4: records of images moved between lists name their new list (make_plan);
# the one full plan after an upgrade repairs the records older syncs left.
# 5: an image two lists of one registry carry is taken from neither.
DESIRED_IMAGES_VERSION = "5"


@dataclass(frozen=True)
class ImageSummary:
    """What a plan needs of one image of a list."""

    uuid: str  # lower case
    metadata: Mapping[str, Any]
    sha512: str  # lower case
    size: int
    uri: str
    expires: datetime | None


@dataclass(frozen=True)
class ListSummary:
    """What a plan needs of one list blob.

    ``complete`` is False for a summary made from the verifier's facts (a
    list no subscription wants): its images then carry only their UUIDs.
    """

    identifier: str  # lower case
    version: str
    created: datetime
    expires: datetime
    list_keys: Mapping[str, Any]
    vo: str | None
    images: tuple[ImageSummary, ...]
    complete: bool = True

    @classmethod
    def of(cls, imagelist: Imagelist) -> ListSummary:
        """The summary of a parsed list."""
        names = imagelist.keys()
        vo = imagelist.get("ad:vo")
        return cls(
            identifier=imagelist.identifier.lower(), version=imagelist.version,
            created=imagelist.created, expires=imagelist.expires,
            list_keys={k: imagelist.get(k) for k in names if k != "hv:images"},
            vo=vo if isinstance(vo, str) and vo else None,
            images=tuple(ImageSummary(
                uuid=i.identifier.lower(), metadata=i.to_dict(), sha512=i.sha512.lower(),
                size=i.size, uri=i.uri, expires=i.expires) for i in imagelist.images))

    @classmethod
    def of_facts(cls, identifier: str, version: str, created: datetime, expires: datetime,
                 images: Sequence[str]) -> ListSummary:
        """A summary of only the image UUIDs, for a list the site does not subscribe to."""
        return cls(identifier=identifier.lower(), version=version, created=created,
                   expires=expires,
                   list_keys={}, vo=None, complete=False,
                   images=tuple(ImageSummary(i.lower(), {}, "", 0, "", None) for i in images))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON, as the site's list index keeps it."""
        return {"identifier": self.identifier, "version": self.version,
                "created": format_date(self.created), "expires": format_date(self.expires),
                "list_keys": self.list_keys, "vo": self.vo,
                "images": [[i.uuid, i.metadata, i.sha512, i.size, i.uri,
                            format_date(i.expires) if i.expires else None]
                           for i in self.images]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ListSummary:
        return cls(identifier=data["identifier"], version=data["version"],
                   created=parse_date(data["created"]), expires=parse_date(data["expires"]),
                   list_keys=data["list_keys"], vo=data["vo"],
                   images=tuple(ImageSummary(u, m, h, n, r, parse_date(e) if e else None)
                                for u, m, h, n, r, e in data["images"]))


@dataclass(frozen=True)
class DesiredImage:
    """One image the site should hold, with what its events and records need."""

    uuid: str
    registry: str
    priority: int
    list_uuid: str
    list_version: str
    sha512: str
    size: int
    uri: str
    metadata: Mapping[str, Any]
    list_keys: Mapping[str, Any]
    vo: str | None


@dataclass(frozen=True)
class Retirement:
    """An image record whose image leaves the site, and why."""

    record: ImageRecord
    state: ImageState  # "revoked" or "expired"
    reason: str
    # False for a record whose file is not in cache/ (failed, pending): no events.
    in_cache: bool


@dataclass(frozen=True)
class Conflict:
    """An image UUID claimed by several registries (or lists of one), and where it was
    taken from."""

    image_uuid: str
    registries: tuple[str, ...]
    taken_from: str | None
    message: str


@dataclass
class RegistryImages:
    """The desired images of one registry and why others of it are not."""

    registry: str
    images: dict[str, DesiredImage] = field(default_factory=dict)
    # image uuid -> (state, reason) for images the lists name but the site drops.
    dropped: dict[str, tuple[ImageState, str]] = field(default_factory=dict)
    lists: set[str] = field(default_factory=set)
    # list uuid -> version, for lists published with no image: decommissioned.
    decommissioned: dict[str, str] = field(default_factory=dict)
    # Image UUIDs that several wanted lists of this registry carry (an image
    # conflict a merge left): taken from none of them.
    conflicts: list[Conflict] = field(default_factory=list)
    # The first list or image expiry after ``now`` that this result depends
    # on: until then it stays the same for the same lists, subscriptions
    # and (with new_images = "refuse") records. None: no date can change it.
    valid_until: datetime | None = None

    def _depends_on(self, now: datetime, *moments: datetime | None) -> None:
        for moment in moments:
            if moment is not None and moment > now and (
                    self.valid_until is None or moment < self.valid_until):
                self.valid_until = moment


@dataclass
class Plan:
    download: list[DesiredImage] = field(default_factory=list)
    retire: list[Retirement] = field(default_factory=list)
    keep: list[DesiredImage] = field(default_factory=list)
    # Record-only changes of images kept (a new list or list version, same bytes).
    refresh: list[DesiredImage] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    claims: list[Conflict] = field(default_factory=list)
    # Images held from lists a plan from changes did not look at: kept too.
    unchanged: int = 0

    @property
    def kept(self) -> int:
        return len(self.keep) + self.unchanged


def desired_images(registry: str, priority: int,
                   lists: Iterable[ListSummary | Imagelist], *,
                   subscriptions: Sequence[Subscription], known: Mapping[str, ImageRecord],
                   now: datetime, inert: Mapping[str, str] | None = None) -> RegistryImages:
    """The images of one registry's lists that the subscriptions want, at ``now``.

    ``known`` (the state's records by image UUID) decides ``new_images =
    "refuse"``: an image is taken only if the site already knew it, the list
    was never seen before, or the subscription names the image. ``inert``:
    list UUID -> why the trust core holds it inert at ``now`` (its endorser
    expired); its images are dropped, and retired if they were installed.

    An image that two wanted lists carry (the trust core lets a merge keep
    both lists' highest versions and reports the image conflict) is taken
    from neither: which claim is genuine is not decidable from the registry,
    so the site waits until an endorser drops it from one list.
    """
    result = RegistryImages(registry)
    # Image UUID -> the lists carrying it, for the (rare) images a second list carries.
    shared: dict[str, list[str]] = {}
    seen_lists = {r.list_uuid for r in known.values() if r.registry == registry}
    for given in lists:
        summary = given if isinstance(given, ListSummary) else ListSummary.of(given)
        list_uuid = summary.identifier
        result.lists.add(list_uuid)
        if inert and list_uuid in inert:
            for image in summary.images:
                result.dropped[image.uuid] = ("expired", inert[list_uuid])
            continue
        if not summary.images:
            result.decommissioned[list_uuid] = summary.version
        wanting = [s for s in subscriptions if s.wants_list(list_uuid)]
        if not wanting:
            # Nothing of the list is wanted: its image UUIDs say why they leave.
            for image in summary.images:
                result.dropped[image.uuid] = ("expired", "unsubscribed")
            continue
        if not summary.complete:
            raise ValueError(f"list {list_uuid} is subscribed but only its facts were read")
        list_expired = summary.expires <= now
        # As at the hook (rule list-dates): a list dated ahead of the reference
        # time (minus the skew the hook allows) waits for its date.
        not_yet = summary.created > now + CREATED_SKEW
        for image in summary.images:
            image_uuid = image.uuid
            chosen = [s for s in wanting if s.wants_image(image_uuid, image.metadata)]
            if not chosen:
                result.dropped[image_uuid] = ("expired", "unsubscribed")
                continue
            if not any(_accepts_new(s, image_uuid, list_uuid, known, seen_lists)
                       for s in chosen):
                result.dropped[image_uuid] = ("expired", "new image refused (new_images = "
                                              "\"refuse\")")
                continue
            result._depends_on(now, summary.expires, image.expires,
                               summary.created - CREATED_SKEW)
            if not_yet:
                result.dropped[image_uuid] = ("expired", f"list {list_uuid} is dated "
                                              f"{summary.created:%Y-%m-%dT%H:%M:%SZ}, in "
                                              "the future [rule: list-dates]")
                continue
            if list_expired:
                result.dropped[image_uuid] = ("expired", f"list {list_uuid} expired "
                                              f"{summary.expires:%Y-%m-%dT%H:%M:%SZ}")
                continue
            if image.expires is not None and image.expires <= now:
                result.dropped[image_uuid] = ("expired", "image expired")
                continue
            if (prior := result.images.get(image_uuid)) is not None:
                shared.setdefault(image_uuid, [prior.list_uuid]).append(list_uuid)
            result.images[image_uuid] = DesiredImage(
                uuid=image_uuid, registry=registry, priority=priority, list_uuid=list_uuid,
                list_version=summary.version, sha512=image.sha512, size=image.size,
                uri=image.uri, metadata=image.metadata, list_keys=summary.list_keys,
                vo=summary.vo)
    for image_uuid, lists_carrying in sorted(shared.items()):
        del result.images[image_uuid]
        named = " and ".join(sorted(lists_carrying))
        message = (f"image {image_uuid} is carried by lists {named} of registry "
                   f"{registry} (image conflict); not taken until one list drops it")
        result.dropped[image_uuid] = ("expired", message)
        result.conflicts.append(Conflict(image_uuid, (registry,), None, message))
    return result


def _accepts_new(subscription: Subscription, image_uuid: str, list_uuid: str,
                 known: Mapping[str, ImageRecord], seen_lists: set[str]) -> bool:
    if subscription.new_images == "accept":
        return True
    return (image_uuid in known or list_uuid not in seen_lists
            or image_uuid in subscription.images)


def make_plan(registries: Sequence[RegistryImages], records: Iterable[ImageRecord], *,
              cached: Iterable[str], conflicts: Conflicts = "report",
              frozen: Iterable[str] = ()) -> Plan:
    """Compare desired images with the records; ``cached``: UUIDs with a file in cache/.

    ``frozen``: registries with no usable state this sync; their records are
    kept as they are (an unreachable registry must not empty the cache).
    """
    plan = Plan()
    in_cache = set(cached)
    frozen_set = set(frozen)
    desired = _resolve_conflicts(registries, conflicts, plan.claims)
    plan.claims.extend(c for r in registries for c in r.conflicts)
    plan.conflicts = [c.message for c in plan.claims]
    by_registry = {r.registry: r for r in registries}
    current = {r.uuid: r for r in records}

    state: ImageState
    reason: str
    for record in current.values():
        if record.state not in HELD_STATES:
            continue
        if record.registry in frozen_set:
            continue
        want = desired.get(record.uuid)
        if want is not None and want.registry == record.registry:
            continue
        if want is not None:
            state, reason = "expired", f"now taken from registry {want.registry}"
        else:
            state, reason = _why_gone(record, by_registry.get(record.registry), plan.conflicts)
        # A cached record whose file is already gone was moved by a sync that
        # died before recording it: retire it again (idempotent) for its events.
        plan.retire.append(Retirement(record, state, reason,
                                      in_cache=record.state == "cached"))

    for image_uuid in sorted(desired):
        want = desired[image_uuid]
        held = current.get(image_uuid)
        holds = (held is not None and held.state == "cached" and image_uuid in in_cache
                 and held.registry == want.registry)
        if holds and held is not None and held.sha512 == want.sha512:
            # An image moved to another list keeps its bytes but must name its
            # new list: a plan from changes finds a record by the list it names.
            if (held.list_uuid != want.list_uuid or held.list_version != want.list_version
                    or dict(held.metadata) != dict(want.metadata)):
                plan.refresh.append(want)
            plan.keep.append(want)
        else:
            # A new version under the same UUID: the old file leaves (Expire
            # events) only once the new one has arrived (see the sync's apply).
            plan.download.append(want)
    return plan


def _why_gone(record: ImageRecord, registry: RegistryImages | None,
              conflicts: list[str]) -> tuple[ImageState, str]:
    if registry is None:
        return "expired", f"registry {record.registry} no longer subscribed"
    if record.uuid in registry.dropped:
        return registry.dropped[record.uuid]
    if any(record.uuid in c for c in conflicts):
        return "expired", "claimed by several registries"
    # A list is never deleted; an endorser decommissions it by publishing a
    # version with no image. That retires its images as expired, not revoked.
    if record.list_uuid in registry.decommissioned:
        return "expired", (f"list {record.list_uuid} decommissioned (version "
                           f"{registry.decommissioned[record.list_uuid]} has no images)")
    if record.list_uuid not in registry.lists:
        return "expired", f"list {record.list_uuid} is no longer in registry {record.registry}"
    return "revoked", f"no longer in list {record.list_uuid}"


def _resolve_conflicts(registries: Sequence[RegistryImages], mode: Conflicts,
                       report: list[Conflict]) -> dict[str, DesiredImage]:
    claims: dict[str, list[DesiredImage]] = {}
    for registry in registries:
        for image in registry.images.values():
            claims.setdefault(image.uuid, []).append(image)
    chosen: dict[str, DesiredImage] = {}
    for image_uuid, claimants in claims.items():
        if len(claimants) == 1:
            chosen[image_uuid] = claimants[0]
            continue
        registries_claiming = tuple(sorted(c.registry for c in claimants))
        names = ", ".join(registries_claiming)
        ranked = sorted(claimants, key=lambda c: -c.priority)
        if mode == "priority" and ranked[0].priority > ranked[1].priority:
            chosen[image_uuid] = ranked[0]
            report.append(Conflict(image_uuid, registries_claiming, ranked[0].registry,
                                   f"image {image_uuid} is claimed by {names}; "
                                   f"taken from {ranked[0].registry} (higher priority)"))
        else:
            report.append(Conflict(image_uuid, registries_claiming, None,
                                   f"image {image_uuid} is claimed by {names}; not taken"))
    return chosen
