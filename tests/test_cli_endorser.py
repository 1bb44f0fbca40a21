"""Every endorser command through the real `gitreg` CLI (subprocesses, real git, keys).

Data on stdout (a fingerprint, a UUID, a commit, JSON), messages on stderr,
exit codes 0/1/2/3. Pushes go through the git CLI to servers whose
pre-receive hooks run: gitreg's own, over smart HTTP and a local path.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from gitreg.model.dates import utcnow
from gitreg.model.policy import fingerprint
from gitreg.publish import policy_edit
from gitreg.publish.drafts import edit_policy
from gitreg.publish.policy_edit import add_signature
from gitreg.publish.publication import publish
from gitreg.publish.registry_init import create_registry
from gitreg.publish.workcopy import WorkingCopy
from gitreg.signing.ssh import SSHPublicKey, SSHSigner
from tests.fixtures.git_server import make_bare_repository, write_hook

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n")
COMMIT = re.compile(r"[0-9a-f]{40}\n")


def git(*args: str | Path) -> str:
    return subprocess.run(["git", *map(str, args)], check=True, capture_output=True,
                          text=True).stdout.strip()


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr}"
    return done


@pytest.fixture(autouse=True)
def _endorser_identity() -> None:
    # The endorser's hv:endorser fields, once for every registry (global git config).
    for key, value in (("dn", "/DC=org/DC=example/CN=Alice"), ("ca", "/DC=org/DC=example/CN=CA"),
                       ("email", "alice@example.org"), ("creator", "Alice")):
        git("config", "--global", f"gitreg.endorser.{key}", value)


def registry_with_alice(run_cli, tmp_path: Path, ssh_keys) -> Path:
    """init (roots bob + carol, threshold 1), add endorser alice, sign, publish."""
    reg = tmp_path / "reg"
    init = ok(run_cli(["init", reg, "--name", "Example registry", "--root-key",
                       ssh_keys["bob"].private, "--root-key", ssh_keys["carol"].private,
                       "--threshold", "1"]))
    assert init.stdout == fingerprint((reg / "policy.json").read_bytes()) + "\n"
    ok(run_cli(["policy", "add-endorser", "alice", "--key", ssh_keys["alice"].public,
                "--allow", "imagelists/*", "--email", "alice@example.org"], cwd=reg))
    ok(run_cli(["policy", "sign", "--key", ssh_keys["bob"].private], cwd=reg))
    published = ok(run_cli(["publish", "--key", ssh_keys["bob"].private], cwd=reg))
    assert published.stdout == git("-C", reg, "rev-parse", "main") + "\n"
    return reg


def make_registry(tmp_path: Path, ssh_keys, *, roots: tuple[str, ...] = ("bob", "carol"),
                  alice: bool = False) -> Path:
    """The same start as the CLI flow, made in-process to keep the other tests fast."""
    reg = tmp_path / "reg"
    signers = [SSHSigner.from_file(ssh_keys[name].private) for name in roots]
    create_registry(reg, name="Example registry", root_signers=signers, threshold=1,
                    now=utcnow())
    if alice:
        copy = WorkingCopy.open(reg)
        key = SSHPublicKey.from_file(ssh_keys["alice"].public)
        draft = edit_policy(copy.published_policy(), copy.draft_policy(),
                            lambda p: policy_edit.add_endorser(p, "alice", [key],
                                                               allow=["imagelists/*"]))
        copy.write_policy(add_signature(draft, signers[0]))
        publish(copy, list_signer=None, commit_signer=signers[0], now=utcnow())
    return reg


def new_list_with_image(run_cli, reg: Path, image: Path, title: str = "Alice images"
                        ) -> tuple[str, str]:
    list_id = ok(run_cli(["list", "new", "--title", title], cwd=reg)).stdout
    assert UUID.fullmatch(list_id)
    image_id = ok(run_cli(["image", "add", title, "--uri", "https://img.example.org/a.raw",
                           "--file", image, "--title", "Alma 9", "--os", "Linux",
                           "--osversion", "9.4", "--arch", "x86_64", "--format", "raw",
                           "--series", "alma-9"], cwd=reg)).stdout
    assert UUID.fullmatch(image_id)
    return list_id.strip(), image_id.strip()


@pytest.mark.slow
def test_endorser_flow_end_to_end(run_cli, tmp_path, ssh_keys):
    reg = registry_with_alice(run_cli, tmp_path, ssh_keys)
    image = tmp_path / "alma.raw"
    image.write_bytes(b"\x00boot" * 20_000)
    list_id, image_id = new_list_with_image(run_cli, reg, image)

    document = json.loads(ok(run_cli(["list", "show", "Alice images", "--json"],
                                     cwd=reg)).stdout)
    (entry,) = document["hv:imagelist"]["hv:images"]
    assert entry["hv:image"]["dc:identifier"] == image_id
    assert entry["hv:image"]["hv:size"] == image.stat().st_size
    assert entry["hv:image"]["sl:checksum:sha512"] == \
        hashlib.sha512(image.read_bytes()).hexdigest()
    assert document["hv:imagelist"]["hv:endorser"]["hv:x509"]["hv:dn"] == \
        "/DC=org/DC=example/CN=Alice"
    listing = ok(run_cli(["list", "ls"], cwd=reg)).stdout.split()
    assert listing[:2] == [list_id, "new"]

    commit = ok(run_cli(["publish", "--key", ssh_keys["alice"].private, "-m",
                         "First images"], cwd=reg)).stdout
    assert COMMIT.fullmatch(commit)
    assert git("-C", reg, "log", "-1", "--format=%s") == "First images"
    assert ok(run_cli(["list", "ls"], cwd=reg)).stdout.split()[:3] == \
        [list_id, "published", "1"]
    ok(run_cli(["verify", reg]))

    again = ok(run_cli(["publish", "--key", ssh_keys["alice"].private], cwd=reg))
    assert again.stdout == ""
    assert "nothing to publish" in again.stderr
    assert git("-C", reg, "rev-parse", "main") == commit.strip()

    (logged,) = json.loads(ok(run_cli(["log", "Alice images", "--json"], cwd=reg)).stdout)
    assert logged["commit"] == commit.strip()
    assert logged["list_signer"]["endorser"] == "alice"
    assert logged["version"] == "1" and logged["images"]["added"] == [image_id]
    human = ok(run_cli(["log"], cwd=reg)).stdout
    assert f"{list_id} (Alice images)  version new -> 1  signed by alice" in human
    assert "policy version 2" in human


def test_publish_push_reports_each_remote(run_cli, tmp_path, ssh_keys, git_http_server):
    from gitreg.server.init import init_server

    reg = make_registry(tmp_path, ssh_keys, alice=True)
    server = tmp_path / "server.git"
    init_server(server, source=reg)
    picky = make_bare_repository(tmp_path / "picky.git")
    write_hook(picky, "#!/bin/sh\ncat >/dev/null\necho 'mirror frozen for maintenance' >&2\n"
                      "exit 1\n")
    git("-C", reg, "remote", "add", "origin", git_http_server(server))
    git("-C", reg, "remote", "add", "picky", picky)
    git("-C", reg, "remote", "add", "vanished", tmp_path / "no-such-repo.git")
    image = tmp_path / "img.raw"
    image.write_bytes(b"image")
    new_list_with_image(run_cli, reg, image)

    done = run_cli(["publish", "--key", ssh_keys["alice"].private, "--push"], cwd=reg)
    assert done.returncode == 1, done.stderr
    head = git("-C", reg, "rev-parse", "main")
    assert done.stdout == head + "\n"
    assert re.search(r"OK: origin \(http://127\.0\.0\.1:\d+/\S*\): accepted", done.stderr)
    assert re.search(r"error: picky \(.*picky\.git\): rejected \[remote rejected\]",
                     done.stderr)
    assert "mirror frozen for maintenance" in done.stderr
    assert "error: vanished (" in done.stderr and "unreachable" in done.stderr
    assert git("--git-dir", server, "rev-parse", "main") == head
    assert subprocess.run(["git", "--git-dir", str(picky), "rev-parse", "--verify", "-q",
                           "main"], capture_output=True, check=False).returncode != 0
    clone = tmp_path / "clone"
    git("clone", "-q", server, clone)
    ok(run_cli(["verify", clone]))

    # Nothing new to publish still pushes; an unreachable remote alone exits 3.
    git("-C", reg, "remote", "remove", "picky")
    git("-C", reg, "remote", "remove", "origin")
    unreachable = run_cli(["publish", "--key", ssh_keys["alice"].private, "--push"], cwd=reg)
    assert unreachable.returncode == 3, unreachable.stderr
    assert "nothing to publish" in unreachable.stderr


def test_policy_threshold_messages_and_refusal(run_cli, tmp_path, ssh_keys):
    reg = make_registry(tmp_path, ssh_keys)
    ok(run_cli(["policy", "threshold", "2"], cwd=reg))
    signed = ok(run_cli(["policy", "sign", "--key", ssh_keys["bob"].private], cwd=reg))
    carol_id = subprocess.run(["ssh-keygen", "-lf", str(ssh_keys["carol"].public)],
                              capture_output=True, text=True, check=True).stdout.split()[1]
    assert "root keys of version 1: signed by 1 of 1 root keys required" in signed.stderr
    assert (f"root keys of version 2: signed by 1 of 2 root keys required (2 listed); "
            f"needs 1 more signature, by {carol_id}") in signed.stderr
    head = git("-C", reg, "rev-parse", "main")
    policy = (reg / "policy.json").read_bytes()

    refused = run_cli(["publish", "--key", ssh_keys["bob"].private], cwd=reg)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert "[rule: policy-threshold-new]" in refused.stderr
    assert (f"signed by 1 of 2 root keys required (2 listed); needs 1 more signature, "
            f"by {carol_id}") in refused.stderr
    assert git("-C", reg, "rev-parse", "main") == head
    assert (reg / "policy.json").read_bytes() == policy

    outsider = run_cli(["policy", "sign", "--key", ssh_keys["mallory"].private], cwd=reg)
    assert outsider.returncode == 2 and "is not a root key" in outsider.stderr
    assert (reg / "policy.json").read_bytes() == policy


def test_policy_edits_are_one_draft_version(run_cli, tmp_path, ssh_keys):
    reg = make_registry(tmp_path, ssh_keys, roots=("bob",))
    ok(run_cli(["policy", "add-endorser", "alice", "--key", ssh_keys["alice"].public,
                "--email", "alice@example.org"], cwd=reg))
    ok(run_cli(["policy", "allow", "alice", "imagelists/*"], cwd=reg))
    ok(run_cli(["policy", "add-root", ssh_keys["carol"].public], cwd=reg))
    shown = json.loads((reg / "policy.json").read_text())["signed"]
    assert shown["version"] == 2
    assert shown["rules"] == [{"endorsers": ["alice"], "paths": ["imagelists/*"]}]
    assert len(shown["root"]["keys"]) == 2
    human = ok(run_cli(["policy", "show"], cwd=reg))
    assert "alice <alice@example.org>" in human.stdout
    assert "imagelists/*: alice" in human.stdout
    assert "draft policy version 2 (published: 1)" in human.stderr
    duplicate = run_cli(["policy", "add-endorser", "alice", "--key", ssh_keys["bob"].public],
                        cwd=reg)
    assert duplicate.returncode == 2
    assert re.search(r"endorser .alice. already exists", duplicate.stderr)
    ok(run_cli(["policy", "remove-endorser", "alice"], cwd=reg))
    after = json.loads(ok(run_cli(["policy", "show", "--json"], cwd=reg)).stdout)["signed"]
    assert after["version"] == 2 and after["endorsers"] == {} and after["rules"] == []


def test_list_and_image_edits(run_cli, tmp_path, ssh_keys):
    reg = make_registry(tmp_path, ssh_keys, roots=("bob",))
    list_id = ok(run_cli(["list", "new", "--title", "Base", "--description", "Base images",
                          "--uuid", "11111111-2222-4333-8444-555555555555"], cwd=reg)).stdout
    assert list_id == "11111111-2222-4333-8444-555555555555\n"
    image_id = ok(run_cli(["image", "add", "Base", "--uri", "https://x.example.org/i",
                           "--size", "42", "--sha512", "ab" * 64, "--title", "Alma",
                           "--os", "Linux", "--osversion", "9", "--arch", "x86_64"],
                          cwd=reg)).stdout.strip()
    ok(run_cli(["list", "set", "Base", "ad:vo", '{"name": "atlas"}', "--json"], cwd=reg))
    ok(run_cli(["image", "set", "Base", "Alma", "hv:ram_minimum", "2048"], cwd=reg))
    shown = ok(run_cli(["list", "show", "Base"], cwd=reg)).stdout
    assert f"{image_id}  Alma  version 1  Linux 9 x86_64  42 bytes" in shown
    document = json.loads(ok(run_cli(["list", "show", "Base", "--json"], cwd=reg)).stdout)
    body = document["hv:imagelist"]
    assert body["ad:vo"] == {"name": "atlas"}
    assert body["hv:images"][0]["hv:image"]["hv:ram_minimum"] == 2048
    ok(run_cli(["image", "remove", "Base", image_id], cwd=reg))
    draft = reg / "imagelists" / "11111111-2222-4333-8444-555555555555.json"
    assert json.loads(draft.read_text())["hv:imagelist"]["hv:images"] == []


def test_usage_errors_exit_2_and_name_what_is_wrong(run_cli, tmp_path, ssh_keys):
    outside = run_cli(["list", "ls"], cwd=tmp_path)
    assert outside.returncode == 2 and "not inside a registry working copy" in outside.stderr
    reg = make_registry(tmp_path, ssh_keys, roots=("bob",))
    before = {p.name: p.read_bytes() for p in reg.iterdir() if p.is_file()}
    unknown = run_cli(["list", "show", "Nope"], cwd=reg)
    assert unknown.returncode == 2 and "no imagelist 'Nope'" in unknown.stderr
    both = run_cli(["image", "add", "Nope", "--uri", "u", "--file", reg / "gitreg.json",
                    "--size", "1", "--title", "t", "--os", "o", "--osversion", "v",
                    "--arch", "a"], cwd=reg)
    assert both.returncode == 2 and "not both" in both.stderr
    nothing = run_cli(["policy", "sign", "--key", ssh_keys["bob"].private], cwd=reg)
    assert nothing.returncode == 2 and "no unpublished policy change" in nothing.stderr
    missing_key = run_cli(["publish", "--key", tmp_path / "absent"], cwd=reg)
    assert missing_key.returncode == 2 and "absent" in missing_key.stderr
    existing = run_cli(["init", reg, "--name", "Again", "--root-key",
                        ssh_keys["bob"].private])
    assert existing.returncode == 2 and "not empty" in existing.stderr
    assert {p.name: p.read_bytes() for p in reg.iterdir() if p.is_file()} == before
    assert all("Traceback" not in r.stderr for r in (outside, unknown, both, nothing))
