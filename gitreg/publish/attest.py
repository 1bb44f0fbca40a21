"""``gitreg attest``: a site's signed statement about one image, published like a list.

The statement (``gitreg.model.attestation``) goes to
``attestations/<attester>/<image-uuid>.json`` with its detached signature,
in one commit signed by the same attester key on top of ``main``. The commit
is checked by the verifier the server hook runs before ``main`` moves, as
``gitreg publish`` does: what the hook would refuse is refused here and
nothing changes. Attesting again with the same result, kind and note is a
no-op; anything else replaces the attester's statement about that image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gitreg.errors import UsageError
from gitreg.gitstore.commits import build_tree, create_signed_commit
from gitreg.model.attestation import KIND_RE, MAX_NOTE, RESULTS, Attestation, parse_attestation
from gitreg.model.imagelist import Image, Imagelist
from gitreg.publish.publication import VERIFY_CACHE, move_main, precheck, sync_index
from gitreg.publish.workcopy import MAIN_REF, WorkingCopy, write_file_atomic
from gitreg.signing.interface import NAMESPACE_ATTESTATION, Signer
from gitreg.verify import layout


@dataclass(frozen=True)
class AttestResult:
    """What ``attest`` did: ``commit`` is None when the same statement was already published."""

    attester: str
    image: str
    image_title: str
    list_id: str
    path: str
    statement: Attestation
    commit: str | None
    replaced: Attestation | None = None


def find_image(lists: dict[str, Imagelist], spec: str) -> tuple[Imagelist, Image]:
    """The published image named by ``spec``: its UUID, a title unique in the registry,
    or ``LIST/IMAGE`` (a list UUID or title, then an image UUID or title)."""
    from gitreg.publish.drafts import resolve_image, resolve_list

    wanted = spec.strip().lower()
    for imagelist in lists.values():
        for image in imagelist.images:
            if image.identifier.lower() == wanted:
                return imagelist, image
    matches = [(il, image) for il in lists.values() for image in il.images
               if image.title == spec or image.title.casefold() == spec.casefold()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(f"{image.identifier} (list {il.identifier})" for il, image in matches)
        raise UsageError(f"the title {spec!r} names {len(matches)} images ({ids}); use a "
                         "UUID or LIST/IMAGE")
    if "/" in spec:
        list_spec, _, image_spec = spec.partition("/")
        imagelist = resolve_list(lists, list_spec)
        return imagelist, resolve_image(imagelist, image_spec)
    raise UsageError(f"no published image {spec!r} in this registry",
                     hint="name an image UUID (`gitreg search --all` lists them), a title "
                          "unique in the registry, or LIST/IMAGE")


def attester_of(copy: WorkingCopy, signer: Signer) -> str:
    """The attester of the published policy that owns ``signer``'s key."""
    policy = copy.published_policy().signed
    name = policy.attester_of_key(signer.key_id)
    if name is None:
        endorser = policy.endorser_of_key(signer.key_id)
        who = f"it belongs to endorser {endorser}" if endorser else "it is in no attester entry"
        known = ", ".join(sorted(policy.attesters)) or "none"
        raise UsageError(f"key {signer.key_id} is not an attester's key in the published "
                         f"policy ({who}; attesters: {known})",
                         hint="the root key holders add it with `gitreg policy add-attester "
                              "SITE --key PUB`, sign and publish the policy")
    return name


def check_arguments(result: str, kind: str, note: str | None, signer: Signer) -> None:
    if result not in RESULTS:
        raise UsageError(f"--result must be one of {', '.join(RESULTS)}, not {result!r}")
    if not KIND_RE.fullmatch(kind):
        raise UsageError(f"--kind {kind!r}: a short lower-case word such as boot-test or "
                         "security-scan (letters, digits, ._-)")
    if note is not None and len(note) > MAX_NOTE:
        raise UsageError(f"--note is longer than {MAX_NOTE} characters")
    if signer.scheme == "x509":
        raise UsageError("an attestation commit is signed by the attester's key, and git "
                         "signs commits with SSH or OpenPGP keys, not X.509 certificates")


def attest(copy: WorkingCopy, image_spec: str, *, result: str, kind: str, note: str | None,
           signer: Signer, now: datetime, fetch_replicas: bool = False,
           inform: Callable[[str], None] | None = None,
           notice: Callable[[str], None] | None = None) -> AttestResult:
    """Publish ``signer``'s statement about the image ``image_spec`` names on ``main``.

    As ``publish`` does, a ``main`` that is gitreg's merge of a replica that
    moved first gives way to the replicas' canonical state (``give_way``), so
    the statement's commit never brings that merge into history.
    """
    from gitreg.publish.give_way import give_way

    check_arguments(result, kind, note, signer)
    if copy.head() is None:
        raise UsageError(f"{copy.workdir}: {MAIN_REF} has no commit; nothing to attest")
    head = give_way(copy, fetch=fetch_replicas, inform=inform, warn=notice)
    assert head is not None
    attester = attester_of(copy, signer)
    published = {i: il for i in copy.published_list_ids()
                 if (il := copy.published_list(i)) is not None}
    imagelist, image = find_image(published, image_spec)
    image_id = image.identifier.lower()
    path = layout.attestation_path(attester, image_id)
    old = _published_statement(copy, path)
    when = now
    if old is not None:
        same = (old.sha512, old.kind, old.result, old.note) == (
            image.sha512.lower(), kind, result, note)
        if same:
            return AttestResult(attester, image_id, image.title, imagelist.identifier, path,
                                old, None, None)
        # The newer statement replaces the older: it must be later, even within one second.
        when = max(now, old.time + timedelta(seconds=1))
    statement = Attestation(image=image_id, sha512=image.sha512.lower(), attester=attester,
                            time=when, kind=kind, result=result, note=note)
    data = statement.canonical_bytes()
    signature = signer.sign(data, namespace=NAMESPACE_ATTESTATION)
    changes: dict[str, bytes | None] = {path: data, path + ".sig": signature}
    store = copy.store
    tree = build_tree(store, store.commit_info(head).tree, changes)
    subject = f"Attest {image.title} ({image_id[:8]}): {result} {kind} by {attester}"
    body = f"{path}\nimage {image_id} of list {imagelist.identifier} ({imagelist.title})"
    if note:
        body += f"\nnote: {note}"
    commit = create_signed_commit(store, tree, [head], f"{subject}\n\n{body}", signer,
                                  update_ref=None)
    precheck(store, head, commit, now, cache_path=copy.git_dir / VERIFY_CACHE)
    for relative, content in changes.items():
        assert content is not None
        copy.path(relative).parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(copy.path(relative), content)
    move_main(copy, head, commit, subject)
    sync_index(copy)
    return AttestResult(attester, image_id, image.title, imagelist.identifier, path,
                        statement, commit, old)


def _published_statement(copy: WorkingCopy, path: str) -> Attestation | None:
    data = copy.published(path)
    if data is None:
        return None
    return parse_attestation(data, source=f"{path} (published)", max_size=copy.max_file_size())
