"""The pre-receive hook behind every transport, and commits made by plain git.

- The endorser flow through the real CLI, end to end: init, add an
  endorser, a new list, an image from a file, publish and push through the
  hook to a `gitreg server init` repository on a local path, over http://
  served by `gitreg server serve`, and over http:// served by the test
  server; then `gitreg verify --trust-root` on fresh clones.
- Commits made by `git commit -S` (gpg.format=ssh, and OpenPGP with gpg)
  are accepted by the hook; a commit gitreg signs is accepted by
  `git verify-commit`; a plain unsigned `git commit` is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitreg.server.init import init_server
from gitreg.signing.interface import Signer
from gitreg.signing.openpgp import OpenPGPSigner
from gitreg.signing.ssh import SSHPublicKey, SSHSigner
from gitreg.verify import layout
from tests.fixtures.env import GITREG, RunCli
from tests.fixtures.git_server import ServeRepository, git
from tests.fixtures.openpgp_keys import OpenPGPKeyring
from tests.fixtures.ssh_keys import SSHKeyFiles, write_allowed_signers
from tests.registry_simulator import RegistrySimulator, new_id, ssh_signer

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def rev(repo: Path, ref: str = "refs/heads/main") -> str:
    return git("-C", repo, "rev-parse", ref).stdout.strip()


@pytest.fixture
def gitreg_serve() -> Iterator[ServeRepository]:
    """`gitreg server serve` in a subprocess per repository; stopped (SIGTERM) at the end."""
    started: list[subprocess.Popen[str]] = []

    def serve(repo: Path) -> str:
        process = subprocess.Popen([*GITREG, "server", "serve", str(repo), "--port", "0",
                                    "--quiet"], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        started.append(process)
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        return url

    yield serve
    for process in started:
        process.terminate()
        process.wait(timeout=30)


# --- the endorser flow, through the CLI -------------------------------------------------


@pytest.mark.slow
def test_endorser_flow_through_the_hook_on_every_transport(
        run_cli: RunCli, tmp_path: Path, ssh_keys: dict[str, SSHKeyFiles],
        git_http_server: ServeRepository, gitreg_serve: ServeRepository) -> None:
    root, alice = ssh_keys["carol"], ssh_keys["alice"]
    reg = tmp_path / "reg"
    init = ok(run_cli(["init", reg, "--name", "Flow registry", "--root-key", root.private]))
    trust_root = init.stdout.strip()
    assert trust_root.startswith("sha256:")
    ok(run_cli(["policy", "add-endorser", "alice", "--key", alice.public, "--allow",
                "imagelists/*", "--email", alice.principal], cwd=reg))
    ok(run_cli(["policy", "sign", "--key", root.private], cwd=reg))
    ok(run_cli(["publish", "--key", root.private], cwd=reg))

    # Three servers seeded from the registry, each guarded by its own hook.
    servers = {name: tmp_path / f"{name}.git" for name in ("local", "served", "fixture")}
    for server in servers.values():
        ok(run_cli(["server", "init", server, "--from", reg]))
    urls = {"local": str(servers["local"]), "served": gitreg_serve(servers["served"]),
            "fixture": git_http_server(servers["fixture"])}
    for name, url in urls.items():
        git("-C", reg, "remote", "add", name, url)

    endorser = ["--dn", "/DC=org/DC=example/CN=Alice", "--ca", "/DC=org/DC=example/CN=CA",
                "--email", alice.principal, "--creator", "Alice"]
    list_id = ok(run_cli(["list", "new", "--title", "Alice images", *endorser],
                         cwd=reg)).stdout.strip()
    assert UUID.fullmatch(list_id)
    image = tmp_path / "alma9.raw"
    image.write_bytes(os.urandom(64 * 1024))
    image_id = ok(run_cli(["image", "add", list_id, "--uri",
                           "https://images.example.org/alma9.raw", "--file", image,
                           "--title", "AlmaLinux 9", "--os", "Linux", "--osversion", "9.4",
                           "--arch", "x86_64", "--format", "raw"], cwd=reg)).stdout.strip()
    assert UUID.fullmatch(image_id)

    # `publish --push` pushes main to every remote and reports each verdict.
    pushed = ok(run_cli(["publish", "--key", alice.private, "--push"], cwd=reg))
    head = rev(reg)
    assert pushed.stdout.strip() == head
    for name in urls:
        assert re.search(rf"OK: {name} \(.*\): accepted", pushed.stderr), pushed.stderr
        assert rev(servers[name]) == head

    # A second version, pushed with the plain git CLI.
    ok(run_cli(["image", "add", list_id, "--uri", "https://images.example.org/alma9b.raw",
                "--size", "2048", "--sha512", "ab" * 64, "--title", "AlmaLinux 9 (b)",
                "--os", "Linux", "--osversion", "9.5", "--arch", "x86_64"], cwd=reg))
    ok(run_cli(["publish", "--key", alice.private], cwd=reg))
    head = rev(reg)
    for name in urls:
        done = git("-C", reg, "push", name, "main", check=False)
        assert done.returncode == 0, done.stderr
        assert rev(servers[name]) == head

    # Fresh clones (over each transport) verify from the pinned trust root.
    for name, url in urls.items():
        clone = tmp_path / f"clone-{name}"
        git("clone", "--quiet", url, clone)
        verdict = json.loads(ok(run_cli(["verify", clone, "--trust-root", trust_root,
                                         "--json"])).stdout)
        assert verdict.pop("at")  # the reference time the state was judged at
        assert verdict == {"valid": True, "head": head, "verified": 4, "equivocations": [],
                           "state": [], "trust_root": trust_root, "trust_root_pinned": True}
    document = json.loads((tmp_path / "clone-served" / layout.list_path(list_id)).read_bytes())
    images = {i["hv:image"]["dc:identifier"]: i["hv:image"]
              for i in document["hv:imagelist"]["hv:images"]}
    assert images[image_id]["sl:checksum:sha512"] == hashlib.sha512(
        image.read_bytes()).hexdigest()
    assert images[image_id]["hv:size"] == 64 * 1024
    assert document["hv:imagelist"]["hv:version"] == "2"

    # The pinned trust root is what makes a clone trustworthy: another one is refused.
    other = run_cli(["verify", tmp_path / "clone-local", "--trust-root", "sha256:" + "0" * 64])
    assert other.returncode == 1
    assert "[rule: trust-root]" in other.stderr


# --- commits made by git itself ---------------------------------------------------------


def _registry_with(tmp_path: Path, endorser: str, signer: Signer) -> tuple[
        RegistrySimulator, str, Path]:
    """A registry whose endorser ``endorser`` owns one list; its hook-guarded server."""
    start = datetime.now(UTC) - timedelta(hours=1)
    sim = RegistrySimulator.create(tmp_path / "registry.git", roots=[ssh_signer("root")],
                                   start=start)
    list_id = new_id()
    sim.add_endorser(endorser, [signer.public_key()], [layout.list_path(list_id)])
    server = tmp_path / "server.git"
    init_server(server, source=sim.path)
    return sim, list_id, server


def _commit_with_git(work: Path, sim: RegistrySimulator, list_id: str, signer: Signer,
                     *git_options: str, env: dict[str, str] | None = None,
                     sign: bool = True) -> str:
    """Write version 1 of the list (signed in-process) and commit it with `git commit`."""
    data = sim.list_version(list_id, version="1", images=[new_id()],
                            created=datetime.now(UTC) - timedelta(minutes=1))
    for path, content in sim.signed_list(list_id, data, signer).items():
        assert content is not None
        (work / path).parent.mkdir(exist_ok=True)
        (work / path).write_bytes(content)
    git("-C", work, "add", "imagelists")
    flags = ["-S"] if sign else []
    done = git("-C", work, *git_options, "commit", "--quiet", *flags, "-m",
               "Publish with plain git", env=env, check=False)
    assert done.returncode == 0, done.stderr
    return rev(work, "HEAD")


def test_git_commit_signed_with_gpg_format_ssh_is_accepted(
        tmp_path: Path, ssh_keys: dict[str, SSHKeyFiles], run_cli: RunCli) -> None:
    alice = ssh_keys["alice"]
    signer = SSHSigner.from_file(alice.private)
    sim, list_id, server = _registry_with(tmp_path, "alice", signer)
    work = tmp_path / "work"
    git("clone", "--quiet", server, work)
    commit = _commit_with_git(work, sim, list_id, signer, "-c", "gpg.format=ssh",
                              "-c", f"user.signingkey={alice.private}")
    header = git("-C", work, "cat-file", "commit", commit).stdout
    assert "-----BEGIN SSH SIGNATURE-----" in header
    done = git("-C", work, "push", "origin", "main", check=False)
    assert done.returncode == 0, done.stderr
    assert rev(server) == commit
    ok(run_cli(["verify", server]))


def test_git_verify_commit_accepts_what_gitreg_signs(
        tmp_path: Path, ssh_keys: dict[str, SSHKeyFiles]) -> None:
    alice = ssh_keys["alice"]
    signer = SSHSigner.from_file(alice.private)
    assert signer.public_key() == SSHPublicKey.from_file(alice.public)
    sim, list_id, _server = _registry_with(tmp_path, "alice", signer)
    commit = sim.publish(signer, {list_id: [new_id()]})
    allowed = write_allowed_signers(tmp_path / "allowed_signers", [alice])
    done = git("-C", sim.path, "-c", f"gpg.ssh.allowedSignersFile={allowed}",
               "verify-commit", "--raw", commit, check=False)
    assert done.returncode == 0, done.stderr
    assert f'Good "git" signature for {alice.principal}' in done.stderr


def test_openpgp_endorser_commits_with_git_and_with_gitstore_over_http(
        tmp_path: Path, openpgp_keyring: OpenPGPKeyring, run_cli: RunCli,
        git_http_server: ServeRepository) -> None:
    home = str(openpgp_keyring.gnupghome)
    fingerprint = openpgp_keyring.fingerprints["bob"]  # signs with a subkey
    signer = OpenPGPSigner(fingerprint, gnupghome=home)
    sim, list_id, server = _registry_with(tmp_path, "bob", signer)
    url = git_http_server(server)
    work = tmp_path / "work"
    git("clone", "--quiet", url, work)
    commit = _commit_with_git(work, sim, list_id, signer, "-c",
                              f"user.signingkey={fingerprint}", env={"GNUPGHOME": home})
    assert "-----BEGIN PGP SIGNATURE-----" in git("-C", work, "cat-file", "commit",
                                                  commit).stdout
    done = git("-C", work, "push", "origin", "main", check=False)
    assert done.returncode == 0, done.stderr
    assert rev(server) == commit

    # The next version, signed and committed by gitreg's own gitstore with gpg.
    git("-C", sim.path, "fetch", "--quiet", url, "+refs/heads/main:refs/heads/main")
    sim.head = commit
    sim.lists[list_id] = ("1", ())
    sim.clock = datetime.now(UTC).replace(microsecond=0)
    second = sim.publish(signer, {list_id: [new_id()]})
    done = git("-C", sim.path, "push", url, "main", check=False)
    assert done.returncode == 0, done.stderr
    assert rev(server) == second
    ok(run_cli(["verify", server]))


def test_unsigned_git_commit_is_refused_over_gitreg_server_serve(
        tmp_path: Path, ssh_keys: dict[str, SSHKeyFiles],
        gitreg_serve: ServeRepository) -> None:
    signer = SSHSigner.from_file(ssh_keys["alice"].private)
    sim, list_id, server = _registry_with(tmp_path, "alice", signer)
    before = rev(server)
    url = gitreg_serve(server)
    work = tmp_path / "work"
    git("clone", "--quiet", url, work)
    commit = _commit_with_git(work, sim, list_id, signer, sign=False)
    done = git("-C", work, "push", "origin", "main", check=False)
    assert done.returncode != 0
    assert "[rule: commit-signature]" in done.stderr, done.stderr
    assert f"commit {commit[:12]}" in done.stderr
    assert rev(server) == before
    assert git("-C", server, "cat-file", "-e", commit, check=False).returncode != 0


def test_hook_verifies_without_importing_the_cli(tmp_path: Path) -> None:
    """The hook imports only what verification needs (fast start, small surface)."""
    sim, _list_id, server = _registry_with(tmp_path, "alice", ssh_signer("alice"))
    head = rev(server)
    parent = rev(server, "refs/heads/main~1")
    code = ("import sys; from gitreg.server.hook import main; status = main(); "
            "print(status, ','.join(m for m in ('typer', 'rich', 'click') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], input=f"{parent} {head} refs/heads/main\n",
                          env={**os.environ, "GIT_DIR": str(server)}, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]
    assert sim.head == head
