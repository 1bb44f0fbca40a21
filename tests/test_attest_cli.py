"""`gitreg policy add-attester` and `gitreg attest` through the real CLI.

A registry working copy (real git, ssh-keygen keys): the root adds attester
site-a, site-a attests an image, the statement is counted by `gitreg search`
and on the page `gitreg web build` writes, and reaches a server whose
pre-receive hook runs. Refusals are exit 2, one message, nothing changed.
"""

from __future__ import annotations

import json
from pathlib import Path

from gitreg.model.attestation import PREDICATE_TYPE, STATEMENT_TYPE, parse_attestation
from gitreg.publish.workcopy import WorkingCopy
from gitreg.server.init import init_server
from gitreg.signing.ssh import SSHPublicKey
from tests.test_cli_endorser import git, make_registry, new_list_with_image, ok


def _registry(run_cli, tmp_path: Path, ssh_keys) -> tuple[Path, str, str]:
    """Alice's published list with one image; carol's key is attester site-a's."""
    reg = make_registry(tmp_path, ssh_keys, roots=("bob",), alice=True)
    image_file = tmp_path / "alma.raw"
    image_file.write_bytes(b"alma" * 1000)
    list_id, image_id = new_list_with_image(run_cli, reg, image_file)
    ok(run_cli(["publish", "--key", ssh_keys["alice"].private], cwd=reg))
    added = ok(run_cli(["policy", "add-attester", "site-a", "--key", ssh_keys["carol"].public,
                        "--email", "cloud@site-a.example.org"], cwd=reg))
    assert "added attester site-a with 1 key(s), allowed attestations/site-a/*" in added.stderr
    shown = ok(run_cli(["policy", "show"], cwd=reg)).stdout
    assert "attesters:\n  site-a <cloud@site-a.example.org>" in shown
    assert "attestations/site-a/*: attester site-a" in shown
    ok(run_cli(["policy", "sign", "--key", ssh_keys["bob"].private], cwd=reg))
    ok(run_cli(["publish", "--policy-only", "--key", ssh_keys["bob"].private], cwd=reg))
    return reg, list_id, image_id


def test_attest_publishes_a_signed_statement_counted_by_search_and_the_web(
        run_cli, tmp_path, ssh_keys) -> None:
    reg, list_id, image_id = _registry(run_cli, tmp_path, ssh_keys)
    carol = ssh_keys["carol"].private
    done = ok(run_cli(["attest", "Alma 9", "--result", "passed", "--note", "booted in 20 s",
                       "--key", carol], cwd=reg))
    head = git("-C", reg, "rev-parse", "main")
    assert done.stdout == head + "\n"
    assert f"attested image {image_id} (Alma 9): passed boot-test by site-a" in done.stderr
    path = reg / "attestations" / "site-a" / f"{image_id}.json"
    statement = parse_attestation(path.read_bytes(), source=str(path))
    raw = json.loads(path.read_bytes())
    assert raw["_type"] == STATEMENT_TYPE and raw["predicateType"] == PREDICATE_TYPE
    assert raw["subject"] == [{"name": image_id, "digest": {
        "sha512": WorkingCopy.open(reg).published_list(list_id).image(image_id).sha512}}]
    assert (statement.attester, statement.result, statement.note) == (
        "site-a", "passed", "booted in 20 s")
    assert (reg / "attestations" / "site-a" / f"{image_id}.json.sig").exists()
    assert git("-C", reg, "status", "--porcelain") == ""
    ok(run_cli(["verify", reg]))

    # The same statement again is a no-op.
    again = ok(run_cli(["attest", image_id, "--result", "passed", "--note", "booted in 20 s",
                        "--key", carol], cwd=reg))
    assert "already attested, nothing to publish" in again.stderr and again.stdout == ""
    assert git("-C", reg, "rev-parse", "main") == head

    # A different one replaces it (one statement per image per attester).
    replaced = ok(run_cli(["attest", f"{list_id}/{image_id}", "--result", "failed", "--kind",
                           "security-scan", "--key", carol, "--json"], cwd=reg))
    report = json.loads(replaced.stdout)
    assert report["statement"]["predicate"]["result"] == "failed"
    assert report["commit"] == git("-C", reg, "rev-parse", "main") != head
    assert "replaces passed boot-test of" in replaced.stderr
    ok(run_cli(["verify", reg]))

    found = ok(run_cli(["search", "-r", reg, "--json"]))
    (row,) = json.loads(found.stdout)["results"]
    assert row["attestations"]["passed"] == 0 and row["attestations"]["failed"] == 1
    assert row["attestations"]["by"][0].startswith("site-a: failed (security-scan, ")

    out = tmp_path / "web"
    ok(run_cli(["web", "build", out, "-r", reg]))
    page = (out / "images" / f"{image_id}.html").read_text(encoding="utf-8")
    assert "0 passed · 1 failed" in page and "site-a: failed (security-scan" in page
    assert "0 passed · 1 failed" in (out / "index.html").read_text(encoding="utf-8")
    index = json.loads((out / "api" / "index.json").read_text(encoding="utf-8"))
    assert index["rows"][0]["attestations"] == row["attestations"]


def test_attest_push_reaches_a_server_through_its_hook(run_cli, tmp_path, ssh_keys) -> None:
    reg, _, image_id = _registry(run_cli, tmp_path, ssh_keys)
    server = tmp_path / "server.git"
    init_server(server, source=reg)
    git("-C", reg, "remote", "add", "origin", server)
    pushed = ok(run_cli(["attest", image_id, "--result", "passed", "--key",
                         ssh_keys["carol"].private, "--push"], cwd=reg))
    assert "accepted" in pushed.stderr
    assert git("-C", server, "rev-parse", "main") == git("-C", reg, "rev-parse", "main")
    assert git("-C", server, "cat-file", "-e",
               f"main:attestations/site-a/{image_id}.json") == ""


def test_attest_refusals_say_why_once_and_change_nothing(run_cli, tmp_path, ssh_keys) -> None:
    reg, _, image_id = _registry(run_cli, tmp_path, ssh_keys)
    head = git("-C", reg, "rev-parse", "main")
    mallory = SSHPublicKey.from_file(ssh_keys["mallory"].public).key_id
    alice = SSHPublicKey.from_file(ssh_keys["alice"].public).key_id
    carol = str(ssh_keys["carol"].private)
    cases = {
        (image_id, "--result", "passed", "--key", str(ssh_keys["mallory"].private)):
            f"key {mallory} is not an attester's key in the published policy",
        (image_id, "--result", "passed", "--key", str(ssh_keys["alice"].private)):
            f"key {alice} is not an attester's key in the published policy (it belongs to "
            "endorser alice",
        ("no-such-image", "--result", "passed", "--key", carol):
            "no published image 'no-such-image' in this registry",
        (image_id, "--result", "maybe", "--key", carol):
            "--result must be one of passed, failed, not 'maybe'",
        (image_id, "--result", "passed", "--kind", "Boot Test", "--key", carol):
            "--kind 'Boot Test': a short lower-case word",
    }
    for args, message in cases.items():
        result = run_cli(["attest", *args], cwd=reg)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count(message) == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert git("-C", reg, "rev-parse", "main") == head
        assert not (reg / "attestations").exists()


def test_policy_attester_edits(run_cli, tmp_path, ssh_keys) -> None:
    reg, _, _ = _registry(run_cli, tmp_path, ssh_keys)
    before = (reg / "policy.json").read_bytes()
    alice = SSHPublicKey.from_file(ssh_keys["alice"].public).key_id
    cases = {
        ("add-attester", "site-a", "--key", str(ssh_keys["mallory"].public)):
            'attester "site-a" already exists',
        ("add-attester", "site-b", "--key", str(ssh_keys["alice"].public)):
            f'key {alice} already belongs to endorser "alice"',
        ("add-attester", "site@b", "--key", str(ssh_keys["mallory"].public)):
            'invalid attester name "site@b"',
        ("remove-attester", "site-z"): 'no attester named "site-z" (attesters: site-a)',
    }
    for args, message in cases.items():
        result = run_cli(["policy", *args], cwd=reg)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count(message) == 1, (args, result.stderr)
        assert (reg / "policy.json").read_bytes() == before
    ok(run_cli(["policy", "remove-attester", "site-a"], cwd=reg))
    draft = WorkingCopy.open(reg).draft_policy().signed
    assert dict(draft.attesters) == {}
    assert all(not rule.attesters for rule in draft.rules)
    assert SSHPublicKey.from_file(ssh_keys["carol"].public).key_id not in draft.keys
