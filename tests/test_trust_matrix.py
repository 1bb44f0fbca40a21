"""The hook, a site and `gitreg verify` refuse the same attacks (one table).

Each attack of the attack suite (tests/test_attacks.py) is forged once and
judged by all three: pushed with the git CLI to a hooked server; served by
the hookless client repository (its main forced to the attack) to a site
that already trusts the registry's current state; and checked by `gitreg
verify --since <that state>`. The verdicts form one table, which must equal
EXPECTED: every attack refused everywhere naming the same rule, except the
documented differences (docs/format.md, "Rules at the hook, at a site and in
`gitreg verify`").
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitreg.gitstore.acceptance import build_merge
from gitreg.model.policy import PolicyEnvelope, fingerprint
from gitreg.model.registry_info import RegistryInfo
from gitreg.publish import policy_edit
from gitreg.publish.policy_edit import add_signature
from gitreg.signing.interface import NAMESPACE_IMAGELIST
from gitreg.site.config import load_config
from gitreg.site.sync import SyncReport, sync
from gitreg.verify import layout
from gitreg.verify.cache import MemoryCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.history import Verifier
from tests.fixtures.env import RunCli
from tests.fixtures.git_server import git
from tests.registry_simulator import (
    MODE_EXEC,
    MODE_GITLINK,
    MODE_LINK,
    TEST_LIMITS,
    RegistrySimulator,
    new_id,
)
from tests.site_registry import site_toml
from tests.test_attacks import (  # the attack suite's registry and forging helpers
    Base,
    World,
    _diverged,
    _forge_entry,
    _forge_list,
    _policy_edit,
    base,  # noqa: F401 (its module-scoped fixture)
)

# A subscription that wants nothing: the site's first sync only records its trust.
NOTHING = '"00000000-0000-4000-8000-000000000000"'


def _unsigned(w: World) -> str:
    b = w.base
    return w.sim.publish(None, {b.list_a: [b.image_a]}, list_signer=b.alice, move=False)


def _foreign_path(w: World) -> str:
    return w.sim.publish(w.base.bob, {w.base.list_a: [w.base.image_a]}, move=False)


def _two_lists(w: World) -> str:
    b = w.base
    return w.sim.publish(b.alice, {b.list_a: [b.image_a], b.list_b: [b.image_b]}, move=False)


def _revoked_backdated(w: World) -> str:
    b = w.base
    return w.sim.publish(b.dave, {b.list_d: [new_id()]},
                         when=b.revoked_at - timedelta(minutes=5), move=False)


def _one_root_signature(w: World) -> str:
    return w.sim.change_policy(_policy_edit, signers=[w.base.roots[0]], move=False)[0]


def _same_root_twice(w: World) -> str:
    once = add_signature(_policy_edit(w.sim.policy), w.base.roots[0])
    twice = PolicyEnvelope(once.signed, once.signatures * 2)
    return w.sim.commit({layout.POLICY_FILE: twice.canonical_bytes()}, w.base.roots[0],
                        move=False)


def _rewrite(w: World) -> str:
    parent = w.sim.store.commit_info(w.sim.head).parents[0]
    return w.sim.commit({}, w.base.alice, parents=[parent], move=False)


def _merge_tree(w: World) -> str:
    left, right, both = _diverged(w)
    smuggled = w.sim.list_version(w.base.list_a, version="9",
                                  images=[w.base.image_a, new_id()])
    both.update(w.sim.signed_list(w.base.list_a, smuggled, w.base.alice))
    return w.sim.commit(both, None, parents=[left, right], move=False)


def _unrelated(w: World) -> str:
    other = RegistrySimulator.create(w.sim.path.parent / "other.git", roots=w.base.roots,
                                     threshold=2)
    git("-C", w.sim.path, "fetch", "--quiet", other.path, "refs/heads/main:refs/heads/other")
    return w.sim.commit({}, w.base.roots[0], parents=[w.sim.head, other.head], move=False)


def _policy_skip(w: World) -> str:
    return w.sim.change_policy(
        lambda e: policy_edit.with_version(_policy_edit(e), e.version + 2), move=False)[0]


def _identity(w: World) -> str:
    info = w.base.sim.info
    renamed = RegistryInfo(info.format_version, info.registry_id, "Hijacked")
    return w.sim.commit({layout.REGISTRY_FILE: renamed.canonical_bytes()}, w.base.roots[0],
                        move=False)


def _equal_version(w: World) -> str:
    published = w.sim.lists[w.base.list_a][0]
    return _forge_list(w, version=published, images=[w.base.image_a, new_id()])


def _expired(w: World) -> str:
    clock = w.sim.clock
    return _forge_list(w, created=clock - timedelta(days=10), expires=clock - timedelta(days=1))


def _lifetime(w: World) -> str:
    clock = w.sim.clock
    days = TEST_LIMITS.max_list_lifetime_days + 1
    return _forge_list(w, created=clock, expires=clock + timedelta(days=days))


def _bad_signature(w: World) -> str:
    b, sim = w.base, w.sim
    data = sim.list_version(b.list_a, version=sim.next_version(b.list_a), images=[b.image_a])
    other = sim.list_version(b.list_a, version="99", images=[b.image_a])
    return sim.commit({layout.list_path(b.list_a): data,
                       layout.sig_path(b.list_a): b.alice.sign(other,
                                                               namespace=NAMESPACE_IMAGELIST)},
                      b.alice, move=False)


def _identifier(w: World) -> str:
    data = w.sim.list_version(new_id(), version=w.sim.next_version(w.base.list_a),
                              images=[w.base.image_a])
    return w.sim.commit(w.sim.signed_list(w.base.list_a, data, w.base.alice), w.base.alice,
                        move=False)


def _image_twice(w: World) -> str:
    b = w.base
    return w.sim.publish(b.bob, {b.list_b: [b.image_b, b.image_a]}, move=False)


def _image_claimed_again(w: World) -> str:
    """A merge of concurrent pushes left one image in lists a and b; bob drops it from
    b, then claims it again while a still carries it."""
    b, sim = w.base, w.sim
    shared = new_id()
    sides = [sim.publish(b.alice, {b.list_a: [b.image_a, shared]}, move=False),
             sim.publish(b.bob, {b.list_b: [b.image_b, shared]}, move=False)]
    verifier = Verifier(sim.store, MemoryCache(),
                        context=VerifyContext.for_site(datetime.now(UTC)))
    head, _ = build_merge(sim.store, verifier, sides)
    for version, images in (("3", [b.image_b]), ("4", [b.image_b, shared])):
        data = sim.list_version(b.list_b, version=version, images=images)
        head = sim.commit(sim.signed_list(b.list_b, data, b.bob), b.bob, parents=[head],
                          move=False)
    return head


def _deleted(w: World) -> str:
    b = w.base
    return w.sim.commit({layout.list_path(b.list_a): None, layout.sig_path(b.list_a): None},
                        b.alice, move=False)


def _mode(mode: int) -> Callable[[World], str]:
    def forge(w: World) -> str:
        b, sim = w.base, w.sim
        if mode == MODE_GITLINK:
            tree = sim.tree_with_entry(sim.head_tree, layout.list_path(b.list_a), "1" * 40,
                                       MODE_GITLINK)
            return sim.commit_tree(tree, b.alice, message="Forged submodule", move=False)
        data = b"/etc/passwd" if mode == MODE_LINK else sim.list_version(
            b.list_a, version=sim.next_version(b.list_a), images=[b.image_a])
        return _forge_entry(w, layout.list_path(b.list_a), data, mode)
    return forge


def _buried(w: World) -> str:
    b, sim = w.base, w.sim
    sim.publish(None, {b.list_a: [b.image_a]}, list_signer=b.alice)
    return sim.publish(b.bob, {b.list_b: [b.image_b, new_id()]}, move=False)


def _merge_mode(w: World) -> str:
    left, right, both = _diverged(w)
    sim = w.sim
    honest = sim.store.commit_info(sim.commit(both, None, parents=[left, right],
                                              move=False)).tree
    path = layout.list_path(w.base.list_a)
    entry = sim.store.tree_entry(honest, path)
    assert entry is not None
    tree = sim.tree_with_entry(honest, path, entry.oid, MODE_EXEC)
    return sim.commit_tree(tree, None, message="Merge", parents=[left, right], move=False)


def _legitimate(w: World) -> str:
    return w.sim.publish(w.base.alice, {w.base.list_a: [w.base.image_a, new_id()]}, move=False)


def _decommission(w: World) -> str:
    return w.sim.publish(w.base.alice, {w.base.list_a: []}, move=False)


def _honest_merge(w: World) -> str:
    left, right, both = _diverged(w)
    return w.sim.commit(both, None, parents=[left, right], move=False)


def refused(rule: str) -> tuple[str, str, str]:
    return (f"refused [{rule}]",) * 3


# attack -> (forge, (hook, site, gitreg verify)); "ACCEPTED" is a gap unless a control.
ATTACKS: dict[str, tuple[Callable[[World], str], tuple[str, str, str]]] = {
    # controls: what the attacks are measured against
    "legitimate publication": (_legitimate, ("ACCEPTED",) * 3),
    "decommissioning a list": (_decommission, ("ACCEPTED", "applied, no new image",
                                               "ACCEPTED")),
    "merge equal to the deterministic merge": (_honest_merge, ("ACCEPTED",) * 3),
    # attacks
    "unsigned commit": (_unsigned, refused("commit-signature")),
    "valid key not allowed for the path": (_foreign_path, refused("path-authorisation")),
    "two lists, the signer owns one": (_two_lists, refused("path-authorisation")),
    "revoked key, backdated": (_revoked_backdated, refused("commit-signature")),
    "policy with 1 of 2 root signatures": (_one_root_signature,
                                           refused("policy-threshold-old")),
    "policy signed twice by one key": (_same_root_twice, refused("policy-threshold-old")),
    # Deliberate difference (issue 8): a valid signed fork is merged by a site
    # (highest version per path, never a rollback); the hook wants descent.
    "force push rewriting history": (_rewrite, ("refused [descent]", "applied, no new image",
                                                "refused [descent]")),
    "merge tree not the deterministic merge": (_merge_tree, refused("merge-tree")),
    "merge with an unrelated history": (_unrelated, refused("unrelated-history")),
    "policy version skipping a number": (_policy_skip, refused("policy-version")),
    "registry identity change": (_identity, refused("registry-immutable")),
    "list with a lower version": (lambda w: _forge_list(w, version="0"),
                                  refused("list-version")),
    "equal version, different content": (_equal_version, refused("list-version")),
    # Deliberate difference: expiry is a property of the state off the hook.
    "expired list": (_expired, ("refused [list-expired]", "applied, no new image",
                                "warning [list-expired]")),
    "expiry beyond the maximum lifetime": (_lifetime, refused("list-lifetime")),
    "signature not matching the bytes": (_bad_signature, refused("list-signature")),
    "list signed by another endorser": (lambda w: _forge_list(w, signer=w.base.bob),
                                        refused("list-signature")),
    "identifier not the file name": (_identifier, refused("list-identifier")),
    "image UUID already in another list": (_image_twice, refused("image-unique")),
    "image claimed anew while a merge left it in two lists": (_image_claimed_again,
                                                              refused("image-unique")),
    "list deleted, not decommissioned": (_deleted, refused("list-deleted")),
    "symbolic link": (_mode(MODE_LINK), refused("layout-mode")),
    "executable bit": (_mode(MODE_EXEC), refused("layout-mode")),
    "submodule": (_mode(MODE_GITLINK), refused("layout-mode")),
    "path outside the layout": (lambda w: w.sim.commit({"README.md": b"hi\n"}, w.base.alice,
                                                       move=False), refused("layout-path")),
    "file over the size cap": (lambda w: w.sim.commit(
        {layout.sig_path(w.base.list_a): b"x" * (TEST_LIMITS.max_file_size + 1)},
        w.base.alice, move=False), refused("size-limit")),
    "invalid commit under a valid one": (_buried, refused("commit-signature")),
    "merge with the right contents, executable": (_merge_mode, refused("layout-mode")),
}
# Hook-only attacks, documented as not applicable elsewhere: a deleted main
# (the hook refuses ref-delete; a mirror without main is reported unreachable
# by a site, refused by `gitreg verify`) and refs other than main.


_RULE = re.compile(r"\[rule: ([a-z0-9-]+)\]")


def _rule(text: str) -> str:
    found = _RULE.findall(text)
    return found[-1] if found else "?"


def hook_verdict(w: World, oid: str) -> str:
    result = w.push(f"{oid}:refs/heads/main", force=True)
    if result.returncode == 0:
        return "ACCEPTED"
    return f"refused [{_rule(result.stderr)}]"


def verify_verdict(w: World, since: str) -> str:
    result = w.verify("--since", since)
    if result.returncode != 0:
        return f"refused [{_rule(result.stderr)}]"
    return f"warning [{_rule(result.stderr)}]" if "[rule:" in result.stderr else "ACCEPTED"


def site_verdict(report: SyncReport, trusted: str, before: set[str]) -> str:
    (outcome,) = report.registries
    if outcome.refused:
        return f"not applied [{_rule(outcome.refused)}]"
    invalid = [r for r in outcome.remotes if r.state == "invalid"]
    if invalid:
        return f"refused [{invalid[0].rule}]"
    if outcome.target in (None, trusted):
        return "nothing applied"
    new = {i.uuid for i in report.plan.download} - before
    return "ACCEPTED" if new else "applied, no new image"


def _site(directory: Path, remote: Path, trust_root: str, imagelists: str) -> Path:
    directory.mkdir(exist_ok=True)
    text = site_toml([{"name": "test", "remotes": [remote], "trust_root": trust_root}],
                     settings='download_workers = 1\nmin_rate = 1\ndeadline = "30s"\n')
    config = directory / "site.toml"
    config.write_text(text.replace('imagelists = ["*"]', f"imagelists = [{imagelists}]"),
                      encoding="utf-8")
    return config


@pytest.mark.slow
def test_the_hook_the_site_and_verify_refuse_the_same_attacks(
        base: Base, tmp_path: Path, run_cli: RunCli) -> None:  # noqa: F811
    root = base.sim.store.commits_between(None, base.sim.head)[0]
    entry = base.sim.store.entry(base.sim.store.commit(root).tree, layout.POLICY_FILE)
    assert entry is not None
    trust_root = fingerprint(base.sim.store.blob(entry.oid, layout.BOOTSTRAP_MAX_SIZE))
    now = datetime.now(UTC)
    table: dict[str, tuple[str, str, str]] = {}
    for index, (name, (forge, _)) in enumerate(ATTACKS.items()):
        work = tmp_path / f"attack-{index}"
        server = work / "server.git"
        shutil.copytree(base.server, server, symlinks=True)
        sim = base.sim.copy_to(work / "client.git")
        w = World(base=base, sim=sim, server=server, url=str(server), run_cli=run_cli)
        trusted = sim.head
        # The site trusts the current state first (wanting no image: nothing to fetch).
        quiet = _site(work / "site", sim.path, trust_root, NOTHING)
        assert sync(load_config(quiet), now=now).exit_code == 0
        full = _site(work / "site", sim.path, trust_root, '"*"')
        before = {i.uuid for i in sync(load_config(full), dry_run=True, now=now).plan.download}

        oid = forge(w)
        hook = hook_verdict(w, oid)
        sim.set_main(oid)
        verdict = verify_verdict(w, trusted)
        site = site_verdict(sync(load_config(full), dry_run=True, now=now), trusted, before)
        table[name] = (hook, site, verdict)
    expected = {name: verdicts for name, (_, verdicts) in ATTACKS.items()}
    width = max(map(len, table))
    print(f"\n{'attack':<{width}} | hook | site | gitreg verify")
    for name, row in table.items():
        print(f"{name:<{width}} | {' | '.join(row)}")
    assert table == expected


def test_a_deleted_main_changes_nothing_anywhere(base: Base, tmp_path: Path,  # noqa: F811
                                                run_cli: RunCli) -> None:
    """The hook refuses to delete main; `gitreg verify` refuses a repository
    without one; a site following a mirror whose main is gone keeps its state."""
    server = tmp_path / "server.git"
    shutil.copytree(base.server, server, symlinks=True)
    sim = base.sim.copy_to(tmp_path / "client.git")
    w = World(base=base, sim=sim, server=server, url=str(server), run_cli=run_cli)
    trusted = sim.head
    root = sim.store.commits_between(None, trusted)[0]
    entry = sim.store.entry(sim.store.commit(root).tree, layout.POLICY_FILE)
    assert entry is not None
    trust_root = fingerprint(sim.store.blob(entry.oid, layout.BOOTSTRAP_MAX_SIZE))
    quiet = _site(tmp_path / "site", sim.path, trust_root, NOTHING)
    assert sync(load_config(quiet)).exit_code == 0

    w.assert_hook_rejects(None, "ref-delete", refspec=":refs/heads/main")
    sim.repo.references.delete("refs/heads/main")
    result = w.verify()
    assert result.returncode == 1 and "[rule: ref-delete]" in result.stderr
    report = sync(load_config(quiet))
    (outcome,) = report.registries
    assert outcome.target == trusted
    assert [r.state for r in outcome.remotes] != ["current"]
