"""``gitreg publish``: turn the working copy's drafts into one signed commit on ``main``.

For every changed list: dates, a higher ``hv:version``, canonical bytes and
their detached signature. Then one signed commit, checked by the same
verifier the server hook runs *before* ``main`` moves or any file is
rewritten: what the hook would refuse is refused here, with its message, and
nothing changes (an unreferenced commit object is all that is left, and git's
garbage collection removes it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from gitreg.errors import PolicyViolationError, UsageError
from gitreg.gitstore.commits import ConcurrentUpdateError, build_tree, create_signed_commit
from gitreg.gitstore.store import RegistryStore
from gitreg.model.dates import format_date
from gitreg.model.imagelist import CREATED, ENDORSER, ENDORSER_X509, EXPIRES, VERSION, Imagelist
from gitreg.model.policy import PolicyEnvelope
from gitreg.model.versions import bump_version, compare_versions
from gitreg.publish.drafts import policy_changed
from gitreg.publish.signing_keys import endorser_dns
from gitreg.publish.workcopy import MAIN_REF, WorkingCopy, write_file_atomic
from gitreg.signing.interface import NAMESPACE_IMAGELIST, Signer
from gitreg.verify import layout

DEFAULT_LIFETIME_DAYS = 28
# Inside .git: private to this working copy, never committed or pushed.
VERIFY_CACHE = Path("gitreg") / "verify-cache.sqlite"
_SIGNER_RULES = ("commit-signature", "path-authorisation", "list-signature")

Notice = Callable[[str], None]


@dataclass(frozen=True)
class ImageDiff:
    """How the images of a list changed between two versions."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"{label} {', '.join(ids)}" for label, ids in
                 (("added", self.added), ("removed", self.removed), ("changed", self.changed))
                 if ids]
        return "; ".join(parts) if parts else "no image changes"


def diff_images(old: Imagelist | None, new: Imagelist) -> ImageDiff:
    before = {image.identifier: image.to_dict() for image in old.images} if old else {}
    after = {image.identifier: image.to_dict() for image in new.images}
    return ImageDiff(
        added=tuple(i for i in after if i not in before),
        removed=tuple(i for i in before if i not in after),
        changed=tuple(i for i in after if i in before and before[i] != after[i]),
    )


@dataclass(frozen=True)
class ListPublication:
    """One list as it is about to be (or was) published."""

    list_id: str
    title: str
    old_version: str | None
    new_version: str
    images: ImageDiff
    data: bytes
    signature: bytes


@dataclass(frozen=True)
class PublishResult:
    """What ``publish`` did. ``commit`` is None when there was nothing to publish."""

    commit: str | None
    parent: str | None
    lists: tuple[ListPublication, ...] = ()
    policy_version: int | None = None
    lifetime_days: int = DEFAULT_LIFETIME_DAYS
    notes: tuple[str, ...] = field(default=())


def next_version(draft: str, published: str | None) -> str:
    """The ``hv:version`` to publish: the endorser's if already higher, else a bump."""
    if published is None:
        return draft if compare_versions(draft, "0") > 0 else bump_version("0")
    if compare_versions(draft, published) > 0:
        return draft
    return bump_version(published)


def changed_lists(copy: WorkingCopy) -> list[tuple[Imagelist, Imagelist | None]]:
    """(draft, published) for every list whose draft differs from ``main``."""
    drafts = copy.draft_lists()
    for list_id in copy.published_list_ids():
        if list_id not in drafts:
            path = copy.path(layout.list_path(list_id))
            raise UsageError(
                f"{path} was deleted from the working copy; a published list is never "
                "deleted", hint=f"restore it (git -C {copy.workdir} checkout -- "
                f"{layout.list_path(list_id)}) and decommission it by removing its images")
    changed: list[tuple[Imagelist, Imagelist | None]] = []
    for list_id, draft in sorted(drafts.items()):
        published_bytes = copy.published(layout.list_path(list_id))
        if published_bytes == draft.canonical_bytes():
            continue
        changed.append((draft, copy.published_list(list_id)))
    return changed


def stamp(draft: Imagelist, published: Imagelist | None, *, now: datetime,
          lifetime_days: int, x509_endorser: tuple[str, str] | None = None) -> Imagelist:
    """A copy of ``draft`` with its publication dates and version set.

    ``x509_endorser`` (subject, issuer) of an X.509 signer becomes ``hv:dn`` and
    ``hv:ca``: vmcatcher accepts a list only when they name its signer.
    """
    stamped = Imagelist.from_dict(draft.to_dict(), source=draft.source,
                                  max_size=draft.max_size)
    if x509_endorser is not None:
        dn, ca = x509_endorser
        stamped.set_key(ENDORSER, {ENDORSER_X509: {**stamped.endorser, "hv:dn": dn,
                                                   "hv:ca": ca}})
    stamped.set_key(CREATED, format_date(now))
    stamped.set_key(EXPIRES, format_date(now + timedelta(days=lifetime_days)))
    stamped.set_key(VERSION, next_version(draft.version,
                                          published.version if published else None))
    return stamped


def effective_lifetime(requested: int | None, configured: int | None,
                       max_days: int) -> tuple[int, str | None]:
    """The lifetime in days, capped by the policy, and a note when it was capped."""
    days = requested if requested is not None else configured or DEFAULT_LIFETIME_DAYS
    if days < 1:
        raise UsageError(f"--lifetime must be at least 1 day, not {days}")
    if days > max_days:
        return max_days, (f"lifetime {days} days capped to the policy's maximum of "
                          f"{max_days} days")
    return days, None


def precheck(store: RegistryStore, parent: str | None, commit: str, now: datetime, *,
             cache_path: Path | None = None) -> None:
    """Run the server hook's verifier on ``commit``; raises what the hook would.

    With ``cache_path`` the verdicts (parsed lists of the parent tree, checked
    signatures) persist in SQLite, so a publication into a registry of
    thousands of lists costs what it changes, as the hook's does.
    """
    from gitreg.verify.cache import MemoryCache, VerificationCache
    from gitreg.verify.context import VerifyContext
    from gitreg.verify.history import Verifier

    context = VerifyContext.for_push(now)
    cache: VerificationCache
    if cache_path is None:
        cache = MemoryCache()
        Verifier(store, cache, context=context).verify_range(parent, commit)
        return
    from gitreg.gitstore.verify_cache import SqliteCache

    persistent = SqliteCache(cache_path)
    try:
        Verifier(store, persistent, context=context).verify_range(parent, commit)
    finally:
        persistent.close()


def _message(lists: list[ListPublication], policy_version: int | None) -> str:
    subjects = [f"{p.title} {p.new_version}" for p in lists]
    if policy_version is not None:
        subjects.insert(0, f"policy version {policy_version}")
    subject = "Publish " + ", ".join(subjects)
    if len(subject) > 72:
        what = [f"{len(lists)} lists"] if lists else []
        if policy_version is not None:
            what.insert(0, f"policy version {policy_version}")
        subject = "Publish " + " and ".join(what)
    body = [f"{p.list_id} ({p.title}): version {p.old_version or 'none'} -> "
            f"{p.new_version}; {p.images.describe()}" for p in lists]
    return subject + ("\n\n" + "\n".join(body) if body else "")


def publish(copy: WorkingCopy, *, list_signer: Signer | None, commit_signer: Signer,
            now: datetime, message: str | None = None, lifetime_days: int | None = None,
            policy_only: bool = False, notice: Notice | None = None,
            fetch_replicas: bool = False, inform: Notice | None = None) -> PublishResult:
    """Publish the working copy's drafts as one signed commit on ``main``.

    ``list_signer`` signs the changed lists (None is allowed only when no
    list changed); ``commit_signer`` signs the commit. ``policy_only`` leaves
    list drafts for a later publication. Raises the verifier's
    ``PolicyViolationError`` (nothing changed) when the hook would refuse.

    A ``main`` that is gitreg's merge of a replica that moved first gives
    way to the canonical state a replica holds (``give_way``: the replicas
    fetched if ``fetch_replicas``, else their tracking refs; ``inform``
    hears the move, ``notice`` the replicas skipped), even with nothing to
    publish, so that nothing new is ever signed on top of that merge.
    """
    from gitreg.publish.give_way import give_way

    if copy.head() is None:
        raise UsageError(f"{copy.workdir}: {MAIN_REF} has no commit; create registries "
                         "with `gitreg init`")
    parent = give_way(copy, fetch=fetch_replicas, inform=inform, warn=notice)
    assert parent is not None
    published_policy = copy.published_policy()
    draft_policy = copy.draft_policy()
    new_policy: PolicyEnvelope | None = (
        draft_policy if policy_changed(published_policy, draft_policy) else None)
    pending = [] if policy_only else changed_lists(copy)
    notes: list[str] = []
    if not pending and new_policy is None:
        return PublishResult(commit=None, parent=parent)
    if policy_only and new_policy is None:
        raise UsageError(f"{copy.path(layout.POLICY_FILE)}: --policy-only, but the policy "
                         "has no unpublished change")
    if pending and list_signer is None:
        raise UsageError("lists changed but no key to sign them was given (--key)")

    limits = published_policy.signed.limits
    days, capped = effective_lifetime(lifetime_days, copy.config.lifetime_days(),
                                      limits.max_list_lifetime_days)
    if capped:
        notes.append(capped)
    publications: list[ListPublication] = []
    x509_endorser = endorser_dns(list_signer) if list_signer is not None else None
    for draft, _ in pending:
        if (unset := [image.identifier for image in draft.images if not image.uri]):
            raise UsageError(f"imagelist {draft.identifier} ({draft.title}): image "
                             f"{', '.join(unset)} has no hv:uri yet",
                             hint="upload it with `gitreg image upload LIST IMAGE FILE --to "
                                  "DEST`, or set it with `gitreg image set ... hv:uri URL`")
    for draft, published in pending:
        stamped = stamp(draft, published, now=now, lifetime_days=days,
                        x509_endorser=x509_endorser)
        data = stamped.canonical_bytes()
        assert list_signer is not None
        publications.append(ListPublication(
            list_id=stamped.identifier, title=stamped.title,
            old_version=published.version if published else None,
            new_version=stamped.version, images=diff_images(published, stamped), data=data,
            signature=list_signer.sign(data, namespace=NAMESPACE_IMAGELIST)))

    changes: dict[str, bytes | None] = {}
    for p in publications:
        changes[layout.list_path(p.list_id)] = p.data
        changes[layout.sig_path(p.list_id)] = p.signature
    if new_policy is not None:
        changes[layout.POLICY_FILE] = new_policy.canonical_bytes()
    store = copy.store
    head_tree = store.commit_info(parent).tree
    tree = build_tree(store, head_tree, changes)
    policy_version = new_policy.version if new_policy is not None else None
    text = message or _message(publications, policy_version)
    commit = create_signed_commit(store, tree, [parent], text, commit_signer, update_ref=None)
    try:
        precheck(store, parent, commit, now, cache_path=copy.git_dir / VERIFY_CACHE)
    except PolicyViolationError as exc:
        if new_policy is not None and pending and exc.rule in _SIGNER_RULES:
            # Each commit is judged under the policy before it: a new endorser
            # cannot publish in the commit that adds them.
            exc.hint = ("this commit changes the policy and lists together, and is judged "
                        "under the published policy; publish the policy first with "
                        "`gitreg publish --policy-only --key ROOT-KEY`")
        raise

    # Files first, then the ref: a crash in between leaves drafts that publish
    # again cleanly, never a main that the working tree contradicts.
    previous = {path: copy.draft_bytes(path) for path in changes}
    for path, content in changes.items():
        assert content is not None
        write_file_atomic(copy.path(path), content)
    try:
        move_main(copy, parent, commit, text.split("\n", 1)[0])
    except BaseException:
        for path, old in previous.items():
            if old is None:
                copy.path(path).unlink(missing_ok=True)
            else:
                write_file_atomic(copy.path(path), old)
        raise
    sync_index(copy)
    if notice:
        for note in notes:
            notice(note)
    return PublishResult(commit=commit, parent=parent, lists=tuple(publications),
                         policy_version=policy_version, lifetime_days=days,
                         notes=tuple(notes))


def move_main(copy: WorkingCopy, old: str | None, new: str, summary: str) -> None:
    """Move ``main`` from ``old`` to ``new`` atomically (refused if it moved meanwhile)."""
    from gitreg.gitstore.command import run_git

    expected = old if old is not None else "0" * 40
    run = run_git(["-C", copy.workdir, "update-ref", "-m", f"gitreg publish: {summary}",
                   MAIN_REF, new, expected], timeout=60, what=f"repository {copy.workdir}")
    if run.returncode != 0:
        raise ConcurrentUpdateError(f"{copy.workdir}: {MAIN_REF} moved while publishing "
                                    f"({run.stderr.strip()}); nothing was published",
                                    hint="run `gitreg publish` again")


def sync_index(copy: WorkingCopy) -> None:
    """Make the index match ``main`` so that ``git status`` shows only unpublished drafts."""
    from gitreg.gitstore.command import run_git

    run_git(["-C", copy.workdir, "reset", "-q"], timeout=60,
            what=f"repository {copy.workdir}")
