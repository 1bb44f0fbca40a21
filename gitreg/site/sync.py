"""`gitreg site sync`: fetch -> verify -> merge -> plan -> apply.

Per registry, ``gitreg.site.remotes`` fetches and verifies every remote and
picks the state to apply; ``gitreg.site.plan`` compares the subscribed images
of those states with the site's records; apply then retires, downloads and
installs, sending vmcatcher's events through the state's journal (enqueued,
then delivered; a failed handler is retried on the next sync). The trusted
commit of a registry advances only after apply finished, so a sync killed at
any point reruns from the old trusted commit and converges: every step is
idempotent (journal keys, ``SiteCache.retire``, resumed downloads).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gitreg.errors import EXIT_OK, EXIT_OPERATIONAL, EXIT_REJECTED, GitregError
from gitreg.gitstore.acceptance import equivocation_json
from gitreg.gitstore.verify_cache import SqliteCache
from gitreg.gitstore.whole_blobs import has_whole_blobs, keep_blobs_whole
from gitreg.site.cache import SiteCache
from gitreg.site.cache_check import check_cache, list_cache
from gitreg.site.config import SiteConfig
from gitreg.site.crash import armed, crash_point
from gitreg.site.events import (
    EventType,
    delivery_variables,
    event_environment,
    event_key,
    handler_base_environment,
    run_handler,
)
from gitreg.site.list_index import ListIndex
from gitreg.site.plan import DesiredImage, Plan, Retirement, make_plan
from gitreg.site.planner import (
    MAX_LIST_BYTES,
    Planning,
    Target,
    plan_inputs,
    plan_key,
    remember,
    resolve_names,
)
from gitreg.site.records import ConflictRecord, EquivocationRecord, ImageRecord, ImageState
from gitreg.site.remotes import (
    RegistryOutcome,
    fetch_registry,
    has_commit,
    open_local_repository,
    pinned_fingerprint,
    prepare_dry_run,
)
from gitreg.site.state import SiteState
from gitreg.verify.context import VerifyContext
from gitreg.verify.facts import ListFacts
from gitreg.verify.history import Verifier

if TYPE_CHECKING:
    from concurrent.futures import Future

    from gitreg.adapters.reconcile import CloudOutcome
    from gitreg.gitstore.store import RegistryStore
    from gitreg.site.config import RegistryConfig


class DownloadProgress(Protocol):
    """Shows downloads (the CLI's rich bars on a terminal)."""

    def start(self, image_uuid: str, title: str, size: int) -> Callable[[int], None]: ...

    def finish(self, image_uuid: str) -> None: ...


@dataclass
class SyncReport:
    dry_run: bool
    session: str
    registries: list[RegistryOutcome] = field(default_factory=list)
    plan: Plan = field(default_factory=Plan)
    downloaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    # Image UUIDs held by the operator: their failures do not fail the sync.
    held: set[str] = field(default_factory=set)
    retired: list[dict[str, str]] = field(default_factory=list)
    events: list[dict[str, str]] = field(default_factory=list)
    handler_failures: list[str] = field(default_factory=list)
    # Deliveries that failed for the last time (max_attempts): not retried.
    handlers_given_up: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    # How the plan was made: from the changed lists or in full, and why.
    planning: Planning = "full"
    planning_reason: str = ""
    planned_lists: dict[str, int] = field(default_factory=dict)
    clouds: list[CloudOutcome] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 if every registry had a valid remote; 3 if none reachable; 1 if invalid."""
        code = EXIT_OK
        for registry in self.registries:
            if not registry.any_valid:
                code = max(code, EXIT_REJECTED if registry.any_invalid else EXIT_OPERATIONAL)
            if registry.refused:
                code = max(code, EXIT_REJECTED)
            if registry.freeze:
                code = max(code, EXIT_OPERATIONAL)
        if any(c.error for c in self.clouds):
            code = max(code, EXIT_OPERATIONAL)
        if (self.unacknowledged_failures or any(c.failed for c in self.clouds)) \
                and code == EXIT_OK:
            code = EXIT_REJECTED
        return code

    @property
    def unacknowledged_failures(self) -> dict[str, str]:
        """Failed images the operator does not hold (`gitreg site hold`)."""
        return {k: v for k, v in self.failed.items() if k not in self.held}

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "session": self.session,
            "exit_code": self.exit_code,
            "registries": [{
                "name": r.name, "trusted_before": r.trusted, "target": r.target,
                "merged": r.merged,
                "equivocations": [equivocation_json(f) for f in r.equivocations],
                "merge_error": r.merge_error,
                "recovery": r.recovery, "refused": r.refused,
                "state_findings": r.state_findings,
                "freeze": r.freeze, "freshness": r.freshness,
                "heartbeat_findings": r.heartbeat_findings,
                "remotes": [{"url": m.url, "state": m.state, "detail": m.detail,
                             "commit": m.commit, "rule": m.rule, "fork_base": m.fork_base}
                            for m in r.remotes],
            } for r in self.registries],
            "plan": {
                "download": [_image_json(i) for i in self.plan.download],
                "retire": [{"uuid": r.record.uuid, "registry": r.record.registry,
                            "state": r.state, "reason": r.reason} for r in self.plan.retire],
                "keep": [_image_json(i) for i in self.plan.keep],
                "unchanged": self.plan.unchanged,
                "conflicts": self.plan.conflicts,
            },
            "downloaded": self.downloaded,
            "failed": [{"uuid": k, "reason": v, "held": k in self.held}
                       for k, v in sorted(self.failed.items())],
            "retired": self.retired,
            "events": self.events,
            "handler_failures": self.handler_failures,
            "handlers_given_up": self.handlers_given_up,
            "stray": self.stray,
            "planning": {"mode": self.planning, "reason": self.planning_reason,
                         "lists": self.planned_lists},
            "clouds": [c.to_json() for c in self.clouds],
        }


def _image_json(image: DesiredImage) -> dict[str, Any]:
    return {"uuid": image.uuid, "registry": image.registry, "list": image.list_uuid,
            "list_version": image.list_version, "size": image.size, "sha512": image.sha512,
            "uri": image.uri, "title": str(image.metadata.get("dc:title", ""))}


def sync(config: SiteConfig, *, dry_run: bool = False, now: datetime | None = None,
         progress: DownloadProgress | None = None) -> SyncReport:
    """Run one sync of the whole site; ``dry_run`` plans and changes nothing."""
    moment = now or datetime.now(UTC)
    report = SyncReport(dry_run=dry_run, session=str(uuid.uuid4()))
    cache = SiteCache(config.state_dir)
    if not dry_run:
        cache.ensure_dirs()
    with cache.lock(create=not dry_run), _open_state(config, dry_run) as state, \
            _repositories(config, dry_run=dry_run) as repositories, ExitStack() as stack:
        targets: list[Target] = []
        frozen: list[str] = []
        for registry in config.registries:
            known = state.registry(registry.name) if state else None
            outcome, target = _registry_state(
                config, registry.name, known.trusted_commit if known else None,
                repositories=repositories, stack=stack,
                merge_parents=known.merge_parents if known else (), now=moment)
            report.registries.append(outcome)
            if target is None:
                frozen.append(registry.name)
            else:
                targets.append(target)
                if not dry_run:
                    _keep_blobs_whole(target)
        for target in targets:
            resolve_names(target)
        key = plan_key(config, targets)
        check = check_cache(state, cache, now=moment) if state is not None and not dry_run \
            else None
        # A dry run is read by a person: it shows the whole plan. Cached images
        # whose file is gone are planned (downloaded again) by a full plan.
        missing = f"cache/ lacks {len(check.missing)} cached image(s)" \
            if check is not None and check.missing else None
        inputs = plan_inputs(targets, state, key=key, now=moment,
                             full="asked for" if dry_run else missing)
        report.planning, report.planning_reason = inputs.planning, inputs.reason
        report.planned_lists = inputs.lists
        records = inputs.records
        if state is not None and check is not None:
            if inputs.planning == "full" and not check.listed:
                check = list_cache(state, cache)  # a full plan always looks
            report.stray = [str(s) for s in check.strays]
        if check is not None:
            # Listed, or proved by its stamp: cache/ holds the cached records but these.
            cached = [u for u, r in records.items()
                      if r.state == "cached" and u not in check.missing]
        else:
            cached = [u for u in records if cache.has(u)]
        report.plan = make_plan(inputs.registries, records.values(), cached=cached,
                                conflicts=config.conflicts, frozen=frozen)
        if inputs.planning == "changes" and state is not None:
            report.plan.unchanged = state.count_images("cached") - sum(
                r.state == "cached" for r in records.values())
        if dry_run or state is None:
            return report
        _Apply(config, state, cache, report=report, now=moment, records=records,
               progress=progress).run()
        report.held = set(state.holds())
        remember(targets, inputs, report.plan, report.failed, state, key=key, now=moment)
        if config.clouds:
            report.clouds = _clouds(config, state, report, moment)
        _record_outcome(state, report, moment, cache)
    return report


def _keep_blobs_whole(target: Target) -> None:
    """Once per local repository, the verified tree's blobs whole in a kept pack
    (gitreg.gitstore.whole_blobs: git's checks of every later fetch read them
    faster)."""
    store = target.store
    if has_whole_blobs(store.path):
        return
    tree = store.commit(target.commit).tree
    keep_blobs_whole(store.path, (e.oid for e in store.entries(tree)), tree=tree)


def _clouds(config: SiteConfig, state: SiteState, report: SyncReport,
            moment: datetime) -> list[CloudOutcome]:
    """Hand the cached images to the cloud adapters (gitreg.adapters)."""
    from gitreg.adapters import reconcile_clouds

    plan = report.plan
    return reconcile_clouds(
        config, state, now=moment,
        list_keys={i.uuid: i.list_keys for i in (*plan.keep, *plan.download, *plan.refresh)},
        commits={r.name: r.target for r in report.registries})


def _record_outcome(state: SiteState, report: SyncReport, moment: datetime,
                    cache: SiteCache) -> None:
    """Remotes, conflicts, the trusted commits of this sync and, if it changed
    only through this sync's own moves, the stamp of cache/: in one transaction."""
    stamp = cache.watched()
    with state.transaction():
        state.record_cache_stamp(stamp.to_text() if stamp is not None else None, now=moment)
        state.record_conflicts([ConflictRecord(c.image_uuid, c.registries, c.taken_from,
                                               c.message, moment)
                                for c in report.plan.claims])
        for outcome in report.registries:
            for remote in outcome.remotes:
                state.record_remote(outcome.name, remote.url, remote.state, remote.detail,
                                    commit=remote.commit, now=moment)
            state.forget_remotes(outcome.name, [m.url for m in outcome.remotes])
            state.record_equivocations([
                EquivocationRecord(outcome.name, f.path, f.version, f.blobs, f.commits,
                                   f.chosen, f.describe(), reason=f.reason)
                for f in outcome.equivocations], now=moment)
            if outcome.target is not None:
                state.advance(outcome.name, outcome.target, now=moment,
                              merge_parents=outcome.merge_parents)
        crash_point("state-commit")


@contextmanager
def _repositories(config: SiteConfig, *, dry_run: bool) -> Iterator[Path]:
    """The directory of the local repositories; for a dry run, throwaway copies.

    A dry run fetches and merges into scratch repositories that borrow the
    real objects read-only, so it changes nothing under state_dir.
    """
    if not dry_run:
        yield config.repositories_dir
        return
    with tempfile.TemporaryDirectory(prefix="gitreg-dry-run-") as scratch:
        for registry in config.registries:
            prepare_dry_run(config.repositories_dir, Path(scratch), registry.name)
        yield Path(scratch)


@contextmanager
def _open_state(config: SiteConfig, dry_run: bool) -> Iterator[SiteState | None]:
    # A dry run on a fresh site must not even create the database.
    if dry_run and not config.state_db.exists():
        yield None
        return
    if not dry_run:
        with SiteState.open(config.state_db) as state:
            yield state
        return
    # A dry run reads a copy: opening the real database could upgrade its
    # schema. The caller holds the sync lock, so the copy is consistent.
    with tempfile.TemporaryDirectory(prefix="gitreg-dry-run-") as scratch:
        try:
            for part in (config.state_db, Path(f"{config.state_db}-wal")):
                if part.exists():
                    shutil.copyfile(part, Path(scratch) / part.name)
        except OSError as exc:
            raise GitregError(f"cannot copy the site state {config.state_db} for a dry run: "
                              f"{exc.strerror or exc}") from None
        with SiteState.open(Path(scratch) / config.state_db.name) as state:
            yield state


def _registry_state(config: SiteConfig, name: str, trusted: str | None, *,
                    repositories: Path, stack: ExitStack, merge_parents: tuple[str, ...] = (),
                    now: datetime) -> tuple[RegistryOutcome, Target | None]:
    """Fetch and verify one registry; its verified state to plan for, if any.

    The verifier (and its cache) stays open until the sync ends: the plan
    reads the facts it keeps of each list blob.
    """
    registry = config.registry(name)
    pinned = pinned_fingerprint(registry)
    store = open_local_repository(repositories / f"{name}.git")
    verify_cache = SqliteCache(repositories / f"{name}.verify.sqlite",
                               trust_root=pinned)
    stack.callback(verify_cache.close)
    verifier = Verifier(store, verify_cache, context=VerifyContext.for_site(now),
                        pinned_policy=pinned)
    outcome = fetch_registry(store, registry, verifier, trusted,
                             merge_parents=merge_parents)
    if outcome.target is None:
        return outcome, None
    if not _fresh_enough(store, registry, verifier, outcome, merge_parents):
        return outcome, None
    index = stack.enter_context(ListIndex(repositories / f"{name}.lists.sqlite"))
    # What the target state is worth at the sync's reference time, judged from
    # the last verdict over the lists that changed since (not the whole tree).
    previous = index.verdict()
    try:
        verdict = verifier.judge_state(outcome.target, previous=previous)
    except GitregError:
        if previous is None:
            raise
        verdict = verifier.judge_state(outcome.target)  # its commit is gone: in full
    index.keep_verdict(verdict)
    refusal = verdict.refusal()
    if refusal is not None:
        # Not applied: the trusted commit and the installed images stay as they are.
        outcome.refused = f"{refusal.message} [rule: {refusal.rule}]"
        outcome.target = None
        outcome.merged, outcome.merge_parents = False, ()
        return outcome, None
    outcome.state_findings = [f"{f.message} [rule: {f.rule}]" for f in verdict.findings()]

    def facts(blob: str, path: str) -> ListFacts:
        return verifier.facts(blob, path=path, max_size=MAX_LIST_BYTES)

    return outcome, Target(
        registry, store, outcome.target, index, facts, config.subscriptions_for(name),
        inert={list_id: f"{f.message} [rule: {f.rule}]" for list_id, f in verdict.inert.items()},
        verdict_until=verdict.valid_until)


def _fresh_enough(store: RegistryStore, registry: RegistryConfig, verifier: Verifier,
                  outcome: RegistryOutcome, merge_parents: tuple[str, ...]) -> bool:
    """The freeze check (gitreg.site.freshness); False if there is nothing to apply.

    A state no young heartbeat vouches for is not applied: the site stays at
    its trusted state (still judged at this sync's time, so expired lists
    retire) and the sync exits 3.
    """
    from gitreg.site.freshness import check_freshness

    target = outcome.target
    assert target is not None
    policy = verifier.state(store.commit(target).tree, commit=target).policy.signed
    if policy.heartbeat is None:
        return True
    found = check_freshness(store, registry, policy, target, verifier.context)
    outcome.freshness = found.to_json(verifier.context)
    outcome.heartbeat_findings = found.findings
    outcome.freeze = found.freeze()
    if outcome.freeze is None or target == outcome.trusted:
        return True
    outcome.target = outcome.trusted
    outcome.merged, outcome.merge_parents = bool(merge_parents), merge_parents
    if outcome.target is None or not has_commit(store, outcome.target):
        outcome.target = None  # nothing trusted here yet: nothing is applied
        return False
    return True


class _Apply:
    """Apply a plan: retire, download, install, with the events in vmcatcher's order."""

    def __init__(self, config: SiteConfig, state: SiteState, cache: SiteCache, *,
                 report: SyncReport, now: datetime, records: Mapping[str, ImageRecord],
                 progress: DownloadProgress | None) -> None:
        self.config = config
        self.state = state
        self.cache = cache
        self.report = report
        self.now = now
        self.records = records
        self.progress = progress
        self.handlers = {h.name: h for h in config.handlers}
        # A failing handler is retried once per sync, not after every event.
        self.tried: set[tuple[str, str]] = set()

    def run(self) -> None:
        plan = self.report.plan
        self.state.drop_handlers(list(self.handlers), now=self.now)
        self._event(EventType.PROCESS_PREFIX, f"ProcessPrefix:{self.report.session}", None)
        for retirement in plan.retire:
            self._retire(retirement)
        for image in plan.refresh:
            self._record(image, "cached", path=str(self.cache.cache_path(image.uuid)))
        self._downloads(plan.download)
        self._event(EventType.PROCESS_POSTFIX, f"ProcessPostfix:{self.report.session}", None)

    # --- events ------------------------------------------------------------

    def _event(self, kind: EventType, key: str, env: dict[str, str] | None) -> None:
        self._journal(kind, key, env)
        self._deliver()

    def _journal(self, kind: EventType, key: str, env: dict[str, str] | None) -> None:
        """Enqueue an event without delivering it (inside a caller's transaction)."""
        if env is None:
            env = event_environment(kind, None, None, session_uuid=self.report.session,
                                    cache_dirs=self.cache.dirs)
        wanting = [name for name, h in self.handlers.items() if kind.value in h.events]
        if self.state.enqueue_event(key, kind, env, wanting, now=self.now):
            self.report.events.append({"type": kind.value, "key": key})

    def _deliver(self) -> None:
        for event in self.state.pending_events():
            for handler_name in event.pending_handlers:
                handler = self.handlers.get(handler_name)
                if handler is None or (event.key, handler_name) in self.tried:
                    continue
                self.tried.add((event.key, handler_name))
                attempt = self.state.start_delivery(event.key, handler_name)
                env = handler_base_environment()
                env.update(event.env)
                env.update(delivery_variables(event.key, attempt))
                outcome = run_handler(handler, env)
                self.state.mark_delivered(event.key, handler_name, outcome)
                if outcome.ok:
                    continue
                what = (f"{event.type.value} {event.key}: handler {handler_name}: "
                        f"{outcome.describe()}")
                if 0 < handler.max_attempts <= attempt:
                    # A handler that refuses an event for good (many exit 1 on
                    # events they do not handle) must not fail every sync.
                    self.state.give_up_delivery(event.key, handler_name, attempt, now=self.now)
                    self.report.handlers_given_up.append(
                        f"{what} (attempt {attempt} of {handler.max_attempts}: given up)")
                else:
                    self.report.handler_failures.append(what)

    def _image_env(self, kind: EventType, metadata: Mapping[str, Any], *, list_uuid: str,
                   list_keys: Mapping[str, Any] | None, vo: str | None,
                   filename: str | None = None) -> dict[str, str]:
        keys = dict(list_keys or {})
        keys.setdefault("dc:identifier", list_uuid)
        return event_environment(kind, metadata, keys, filename=filename, vo=vo,
                                 session_uuid=self.report.session, cache_dirs=self.cache.dirs)

    # --- retirement ----------------------------------------------------------

    def _retire(self, retirement: Retirement) -> None:
        record = retirement.record
        if retirement.in_cache:
            self._expire_file(record, retirement.state, retirement.reason)
        else:
            self.state.mark(record.uuid, retirement.state, retirement.reason, now=self.now)
        self.report.retired.append({"uuid": record.uuid, "state": retirement.state,
                                    "reason": retirement.reason})

    def _expire_file(self, record: ImageRecord, state: ImageState, reason: str) -> None:
        """ExpirePrefix, move to expired/, record, ExpirePostfix (each step idempotent).

        The final record and the ExpirePostfix event commit in one transaction:
        once the record no longer asks for a retirement, a crash must not be
        able to lose the event (and the record must not stop half-way).
        """
        def key(kind: EventType) -> str:
            return event_key(kind, record.uuid, record.sha512, record.list_version)

        self._event(EventType.EXPIRE_PREFIX, key(EventType.EXPIRE_PREFIX),
                    self._image_env(EventType.EXPIRE_PREFIX, record.metadata,
                                    list_uuid=record.list_uuid,
                                    list_keys=None, vo=record.vo))
        moved = self.cache.retire(record.uuid, self.now)
        crash_point("retire")
        with self.state.transaction():
            self.state.mark(record.uuid, state, reason, path=moved, now=self.now)
            self._journal(EventType.EXPIRE_POSTFIX, key(EventType.EXPIRE_POSTFIX),
                          self._image_env(EventType.EXPIRE_POSTFIX, record.metadata,
                                          list_uuid=record.list_uuid,
                                          list_keys=None, vo=record.vo,
                                          filename=moved.name if moved else None))
        self._deliver()

    # --- downloads -------------------------------------------------------------

    def _downloads(self, images: list[DesiredImage]) -> None:
        if not images:
            return
        # Imported here: a sync with nothing to download (the cron case) skips
        # the thread pool and the HTTP stack (requests, urllib3) altogether.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.config.download_workers) as pool:
            futures: dict[Future[Any], DesiredImage] = {
                pool.submit(self._fetch_image, image): image for image in images}
            # Installs and events stay on this thread: the state is not shared.
            for future, image in futures.items():
                try:
                    future.result()
                except GitregError as exc:
                    self._failed(image, exc.message)
                    continue
                self._install(image)

    def _fetch_image(self, image: DesiredImage) -> None:
        from gitreg.transport.download import download_image

        partial = self.cache.partial_path(image.uuid)
        show = self.progress.start(image.uuid, str(image.metadata.get("dc:title", image.uuid)),
                                   image.size) if self.progress else None
        if armed("download"):
            show = _crash_midway(show, image.size)
        try:
            # Verified, the file stays in partial/: AvailablePrefix comes first.
            download_image(image.uri, partial, partial, size=image.size, sha512=image.sha512,
                           deadline=self.config.deadline, min_rate=self.config.min_rate,
                           progress=show)
        finally:
            if self.progress:
                self.progress.finish(image.uuid)

    def _failed(self, image: DesiredImage, reason: str) -> None:
        self.report.failed[image.uuid] = reason
        old = self.records.get(image.uuid)
        if old is not None and old.state == "cached" and self.cache.has(image.uuid):
            # The old version stays until the new one arrives; status says why.
            self.state.mark(image.uuid, "cached",
                            f"update to list {image.list_uuid} version {image.list_version} "
                            f"failed: {reason}; the cached version stays", now=self.now)
            return
        self._record(image, "failed", reason=reason, path=None)

    def _install(self, image: DesiredImage) -> None:
        old = self.records.get(image.uuid)
        if old is not None and old.state == "cached" and self.cache.has(image.uuid):
            reason = f"replaced by list {image.list_uuid} version {image.list_version}"
            self._expire_file(old, "expired", reason)
            # The old version went to expired/ with its Expire events: a retirement.
            self.report.retired.append({"uuid": old.uuid, "state": "expired", "reason": reason})
        self._record(image, "pending", path=str(self.cache.partial_path(image.uuid)))

        def key(kind: EventType) -> str:
            return event_key(kind, image.uuid, image.sha512, image.list_version)

        self._event(EventType.AVAILABLE_PREFIX, key(EventType.AVAILABLE_PREFIX),
                    self._image_env(EventType.AVAILABLE_PREFIX, image.metadata,
                                    list_uuid=image.list_uuid,
                                    list_keys=image.list_keys, vo=image.vo))
        path = self.cache.install(image.uuid)
        crash_point("install")
        # Together, like ExpirePostfix: a cached record asks for nothing more.
        with self.state.transaction():
            self._record(image, "cached", path=str(path))
            self._journal(EventType.AVAILABLE_POSTFIX, key(EventType.AVAILABLE_POSTFIX),
                          self._image_env(EventType.AVAILABLE_POSTFIX, image.metadata,
                                          list_uuid=image.list_uuid,
                                          list_keys=image.list_keys, vo=image.vo))
        self.report.downloaded.append(image.uuid)
        self._deliver()

    def _record(self, image: DesiredImage, state: Any, *, reason: str = "",
                path: str | None) -> None:
        self.state.upsert_image(
            image.uuid, registry=image.registry, list_uuid=image.list_uuid,
            list_version=image.list_version, sha512=image.sha512, size=image.size,
            state=state, reason=reason, path=path, metadata=image.metadata, vo=image.vo,
            now=self.now)


def _crash_midway(show: Callable[[int], None] | None, size: int) -> Callable[[int], None]:
    """Progress that SIGKILLs the sync once part of the image is in partial/ (tests)."""
    def update(done: int) -> None:
        if 0 < done < size:
            crash_point("download")
        if show is not None:
            show(done)
    return update
