"""Which lists and records a sync plans from: the changed ones, or all of them.

A sync's plan (``gitreg.site.plan``) compares desired images with records.
Computing it over the whole registry costs what the registry holds; this
module makes it cost what changed. Per registry, the list index
(``gitreg.site.list_index``) remembers what was last planned (``Planned``):
the tree, a key of everything else the plan depended on (subscriptions,
priorities, conflict mode), the fingerprint of the site's image records
after that sync, the first expiry that could change it, and the lists whose
images failed. When all of that still holds, only the lists that differ
between that tree and the target, the failed ones and those with records
in ``failed`` or ``pending`` are planned, with only the records of those
lists and of their images ("changes" planning). Anything else (first sync,
an expiry passed, another config, records changed by another command, an
image UUID claimed across registries or by a list planned and one not, a
recorded conflict) plans in full.

Either way a list is parsed at most once per blob: the index keeps what the
plan needs of it (``ListSummary``) by blob id, and lists no subscription
wants are never parsed (the verifier's facts give their image UUIDs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from gitreg.errors import GitregError
from gitreg.gitstore.store import RegistryStore
from gitreg.model.imagelist import parse_imagelist
from gitreg.site.config import RegistryConfig, SiteConfig, Subscription
from gitreg.site.list_index import ListIndex, Planned
from gitreg.site.names import ListNames, resolve, uses_names
from gitreg.site.plan import (
    DESIRED_IMAGES_VERSION,
    HELD_STATES,
    ListSummary,
    Plan,
    RegistryImages,
    desired_images,
)
from gitreg.site.records import ImageRecord
from gitreg.site.state import SiteState
from gitreg.verify import layout
from gitreg.verify.facts import ListFacts

# A list blob larger than this is refused by every policy the registry allows
# (the verifier already enforced the policy's own, smaller limit).
MAX_LIST_BYTES = 64 * 1024 * 1024

Planning = Literal["full", "changes"]
# The facts of the list blob ``oid`` at ``path`` (the verifier's, cached by blob).
FactsReader = Callable[[str, str], ListFacts]


@dataclass
class Target:
    """A registry with a verified state to plan for."""

    config: RegistryConfig
    store: RegistryStore
    commit: str
    index: ListIndex
    facts: FactsReader
    subscriptions: Sequence[Subscription]
    # The trust core's verdict on the state at the sync's reference time:
    # list UUID -> why it is inert, and until when the verdict holds.
    inert: Mapping[str, str] = field(default_factory=dict)
    verdict_until: datetime | None = None

    @property
    def name(self) -> str:
        return self.config.name


@dataclass
class PlanInputs:
    """The plan's inputs for one sync, and how they were chosen."""

    registries: list[RegistryImages] = field(default_factory=list)
    records: dict[str, ImageRecord] = field(default_factory=dict)
    planning: Planning = "full"
    # Why a sync planned in full (for --verbose and the tests).
    reason: str = ""
    # registry -> how many lists were planned
    lists: dict[str, int] = field(default_factory=dict)
    # registry -> (tree, first expiry the plan depends on)
    trees: dict[str, tuple[str, datetime | None]] = field(default_factory=dict)
    # Lists whose summaries were parsed by this sync (tests count them).
    parsed: int = 0


def plan_key(config: SiteConfig, targets: Sequence[Target]) -> str:
    """Everything a plan depends on besides lists, records and the clock.

    The targets' subscriptions are those resolved from names: a title that
    moves to another list changes the key, and the sync plans in full.
    """
    text = repr((DESIRED_IMAGES_VERSION, config.conflicts,
                 tuple((r.name, r.priority) for r in config.registries),
                 tuple(config.subscriptions), tuple((t.name, t.subscriptions) for t in targets)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def resolve_names(target: Target) -> None:
    """Replace the names in the target's subscriptions by the lists or series they name.

    The names of each list blob are parsed once and kept in the list index.
    """
    if not uses_names(target.subscriptions):
        return
    tree = target.store.commit(target.commit).tree
    blobs = target.index.lists_with_images(target.store, tree, target.facts)
    kept = target.index.names(set(blobs.values()))
    new: dict[str, tuple[str, tuple[str, ...]]] = {}
    catalogue: list[ListNames] = []
    for list_uuid, blob in sorted(blobs.items()):
        found = kept.get(blob) or new.get(blob)
        if found is None:
            imagelist = parse_imagelist(
                target.store.blob(blob, MAX_LIST_BYTES), max_size=MAX_LIST_BYTES,
                source=f"{target.commit[:12]}:{layout.list_path(list_uuid)}")
            found = new[blob] = (imagelist.title, tuple(sorted(
                {i.series for i in imagelist.images if i.series})))
        catalogue.append(ListNames(list_uuid, found[0], found[1]))
    target.index.keep_names(new)
    target.subscriptions = resolve(target.subscriptions, catalogue, registry=target.name)


def records_fingerprint(state: SiteState) -> str:
    """A digest of the image records' states and last changes (cheap, one query)."""
    return hashlib.sha256(repr(state.image_fingerprint()).encode("utf-8")).hexdigest()


def plan_inputs(targets: Sequence[Target], state: SiteState | None, *, key: str,
                now: datetime, full: str | None = None) -> PlanInputs:
    """The desired images and the records a plan compares, from changes when possible
    (``full``: in full instead, for this reason)."""
    fingerprint = records_fingerprint(state) if state is not None else ""
    reason = full if full is not None else _changes_refused(
        targets, state, key=f"{key}:{fingerprint}", now=now)
    if reason is None:
        assert state is not None
        planned = _changes(targets, state, now=now)
        if isinstance(planned, PlanInputs):
            return planned
        reason = planned
    return _full(targets, state, now=now, reason=reason)


def _changes_refused(targets: Sequence[Target], state: SiteState | None, *, key: str,
                     now: datetime) -> str | None:
    if state is None:
        return "no site state yet"
    if not targets:
        return "no registry has a verified state"
    if state.conflicts():
        return "conflicts are recorded"
    for target in targets:
        planned = target.index.planned()
        if planned is None:
            return f"registry {target.name}: nothing planned before"
        if not planned.holds(key, now):
            return f"registry {target.name}: config, records or an expiry changed"
        if not _has_tree(target.store, planned.tree):
            return f"registry {target.name}: the tree planned last is missing"
    return None


def _changes(targets: Sequence[Target], state: SiteState, *, now: datetime) -> PlanInputs | str:
    """The inputs from the changed lists, or why they would not be the full plan's."""
    result = PlanInputs(planning="changes")
    for target in targets:
        planned = target.index.planned()
        assert planned is not None
        tree = target.store.commit(target.commit).tree
        focus = set(planned.dirty)
        focus.update(layout.list_id_of(c.path) or "" for c in
                     target.store.changed_paths(planned.tree, tree) if layout.is_list(c.path))
        for unsettled in ("failed", "pending"):
            focus.update(r.list_uuid for r in state.images(registry=target.name,
                                                           state=unsettled))
        focus.discard("")
        blobs = _blobs(target, tree, focus)
        summaries = _summaries(target, blobs, result)
        uuids = {i.uuid for s in summaries for i in s.images}
        records = {r.uuid: r for r in state.images_of(lists=focus, uuids=uuids)}
        if any(r.registry != target.name and r.state in HELD_STATES
               for r in records.values()):
            return "an image is claimed by another registry"
        result.records.update(records)
        wanted = desired_images(target.name, target.config.priority, summaries,
                                subscriptions=target.subscriptions, known=records, now=now,
                                inert=target.inert)
        # A list not planned still holds the image (a move changes both lists):
        # only the full plan sees both claims of an image conflict.
        if any(r.list_uuid not in focus and r.state in HELD_STATES and r.uuid in wanted.images
               for r in records.values()):
            return f"registry {target.name}: an image is carried by a list not planned"
        result.registries.append(wanted)
        result.lists[target.name] = len(summaries)
        result.trees[target.name] = (tree, _earliest(planned.valid_until, wanted.valid_until,
                                                     target.verdict_until))
    return result


def _full(targets: Sequence[Target], state: SiteState | None, *, now: datetime,
          reason: str) -> PlanInputs:
    records = {r.uuid: r for r in state.images()} if state is not None else {}
    result = PlanInputs(planning="full", reason=reason, records=records)
    for target in targets:
        tree = target.store.commit(target.commit).tree
        wanted_lists = dict(target.index.lists_with_images(target.store, tree, target.facts))
        named = {r.list_uuid for r in records.values()
                 if r.registry == target.name and r.state in HELD_STATES}
        blobs = {**_blobs(target, tree, named - set(wanted_lists)), **wanted_lists}
        summaries = _summaries(target, blobs, result)
        wanted = desired_images(target.name, target.config.priority, summaries,
                                subscriptions=target.subscriptions, known=records, now=now,
                                inert=target.inert)
        result.registries.append(wanted)
        result.lists[target.name] = len(summaries)
        result.trees[target.name] = (tree, _earliest(wanted.valid_until, target.verdict_until))
    return result


def _blobs(target: Target, tree: str, lists: Collection[str]) -> dict[str, str]:
    """List UUID -> blob of those of ``lists`` that ``tree`` holds."""
    found: dict[str, str] = {}
    for list_uuid in lists:
        entry = target.store.entry(tree, layout.list_path(list_uuid))
        if entry is not None:
            found[list_uuid] = entry.oid
    return found


def _summaries(target: Target, blobs: Mapping[str, str], result: PlanInputs) -> list[ListSummary]:
    """What the plan needs of each list, in list UUID order; each blob parsed at most once.

    A list no subscription wants is described by the verifier's facts alone.
    """
    wanted = {u: b for u, b in blobs.items()
              if any(s.wants_list(u) for s in target.subscriptions)}
    kept = target.index.summaries(set(wanted.values()))
    new: dict[str, ListSummary] = {}
    summaries: list[ListSummary] = []
    for list_uuid in sorted(blobs):
        blob = blobs[list_uuid]
        path = layout.list_path(list_uuid)
        if list_uuid not in wanted:
            facts = target.facts(blob, path)
            summaries.append(ListSummary.of_facts(facts.identifier, facts.version,
                                                  facts.created, facts.expires, facts.images))
            continue
        summary = kept.get(blob) or new.get(blob)
        if summary is None:
            data = target.store.blob(blob, MAX_LIST_BYTES)
            summary = ListSummary.of(parse_imagelist(
                data, source=f"{target.commit[:12]}:{path}", max_size=MAX_LIST_BYTES))
            new[blob] = summary
            result.parsed += 1
        summaries.append(summary)
    target.index.keep_summaries(new)
    return summaries


def remember(targets: Sequence[Target], planned: PlanInputs, plan: Plan,
             failed: Collection[str], state: SiteState, *, key: str, now: datetime) -> None:
    """Record what was planned, once applied: the next sync starts from it."""
    fingerprint = records_fingerprint(state)
    for target in targets:
        tree, valid_until = planned.trees[target.name]
        dirty = frozenset(i.list_uuid for i in plan.download
                          if i.uuid in failed and i.registry == target.name)
        target.index.set_planned(Planned(f"{key}:{fingerprint}", tree, now, valid_until,
                                         dirty))


def _has_tree(store: RegistryStore, tree: str) -> bool:
    try:
        return store.object_header(tree)[0] == "tree"
    except GitregError:
        return False


def _earliest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return min(known) if known else None
