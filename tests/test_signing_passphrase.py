"""Passphrase-protected SSH signing keys: the passphrase from $GITREG_KEY_PASSPHRASE,
from the terminal, or a usage error saying how to give it (real ssh-keygen, real CLI)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gitreg.errors import UsageError
from gitreg.model.policy import parse_policy
from gitreg.signing.interface import NAMESPACE_IMAGELIST
from gitreg.signing.keys import load_public_key, load_signer
from gitreg.signing.passphrase import PASSPHRASE_ENV, is_encrypted
from gitreg.signing.ssh import SSHPublicKey
from gitreg.verify.policy_rules import check_root_signatures
from tests.fixtures.env import GITREG, RunCli
from tests.fixtures.ssh_keys import SSHKeyFiles

NOW = datetime.now(UTC)

DATA = b'{"hv:imagelist": {}}\n'


@pytest.fixture
def locked(tmp_path: Path) -> Path:
    """An Ed25519 key with passphrase "secret", as an endorser makes it."""
    key = tmp_path / "keys" / "root"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-C", "root@example.org",
                    "-f", str(key)], check=True, capture_output=True)
    return key


@pytest.fixture(autouse=True)
def _no_ambient_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    # run_cli copies os.environ: a passphrase in the developer's shell must not leak in.
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)


def key_id(public: Path) -> str:
    return SSHPublicKey.from_file(public).key_id


# --- through the CLI ------------------------------------------------------------


def test_init_signs_with_the_passphrase_from_the_environment(run_cli: RunCli, tmp_path: Path,
                                                             locked: Path) -> None:
    reg = tmp_path / "reg"
    done = run_cli(["init", reg, "--name", "Locked", "--root-key", locked],
                   env={PASSPHRASE_ENV: "secret"}, input="")
    assert done.returncode == 0, done.stderr
    envelope = parse_policy((reg / "policy.json").read_bytes())
    verdict = check_root_signatures(envelope, envelope.signed, at=NOW)
    assert verdict.enough and not verdict.invalid
    assert verdict.signed_by == (key_id(locked.with_suffix(".pub")),)


def test_a_wrong_passphrase_is_a_usage_error_naming_the_file(run_cli: RunCli, tmp_path: Path,
                                                             locked: Path) -> None:
    reg = tmp_path / "reg"
    done = run_cli(["init", reg, "--name", "Locked", "--root-key", locked],
                   env={PASSPHRASE_ENV: "not the secret"}, input="")
    assert done.returncode == 2, done.stderr
    assert f"wrong passphrase for SSH private key {locked}" in done.stderr
    assert PASSPHRASE_ENV in done.stderr
    assert "Traceback" not in done.stderr
    assert not reg.exists()


@pytest.mark.parametrize("env", [{}, {PASSPHRASE_ENV: ""}], ids=["unset", "empty"])
def test_without_a_passphrase_or_a_terminal_the_error_says_how_to_give_one(
        run_cli: RunCli, tmp_path: Path, locked: Path, env: dict[str, str]) -> None:
    reg = tmp_path / "reg"
    done = run_cli(["init", reg, "--name", "Locked", "--root-key", locked], env=env, input="")
    assert done.returncode == 2, done.stderr
    assert str(locked) in done.stderr
    assert "passphrase-protected" in done.stderr
    assert f"set {PASSPHRASE_ENV}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not reg.exists()


def _run_on_a_terminal(args: list[str], typed: bytes, timeout: float = 60) -> tuple[int, bytes]:
    """Run the CLI with a pseudo-terminal as its controlling terminal, typing
    ``typed`` once it asks for a passphrase; (exit code, everything it wrote)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child only execs
        os.execvpe(GITREG[0], [*GITREG, *args], dict(os.environ))  # noqa: S606
    seen = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and b"Passphrase for " in seen:
                os.write(fd, typed)
                answered = True
        else:
            os.kill(pid, 9)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), seen


def test_on_a_terminal_the_passphrase_is_asked_for(tmp_path: Path, locked: Path) -> None:
    reg = tmp_path / "reg"
    code, seen = _run_on_a_terminal(["init", str(reg), "--name", "Locked",
                                     "--root-key", str(locked)], b"secret\n")
    assert code == 0, seen.decode(errors="replace")
    assert f"Passphrase for {locked}: ".encode() in seen
    assert b"secret" not in seen  # not echoed
    envelope = parse_policy((reg / "policy.json").read_bytes())
    assert check_root_signatures(envelope, envelope.signed, at=NOW).enough


# --- in process ------------------------------------------------------------------


def test_the_signature_of_an_encrypted_key_verifies_with_ssh_keygen(
        tmp_path: Path, locked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "secret")
    signature = load_signer(str(locked)).sign(DATA, namespace=NAMESPACE_IMAGELIST)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"root@example.org {locked.with_suffix('.pub').read_text()}")
    sig_file = tmp_path / "list.sig"
    sig_file.write_bytes(signature)
    checked = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed),
                              "-I", "root@example.org", "-n", NAMESPACE_IMAGELIST,
                              "-s", str(sig_file)], input=DATA, capture_output=True, check=False)
    assert checked.returncode == 0, checked.stderr
    checked = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed),
                              "-I", "root@example.org", "-n", NAMESPACE_IMAGELIST,
                              "-s", str(sig_file)], input=DATA + b"x", capture_output=True,
                             check=False)
    assert checked.returncode != 0


def test_an_explicit_passphrase_wins_over_the_environment(
        locked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    signer = load_signer(str(locked), passphrase=b"secret")
    assert signer.key_id == key_id(locked.with_suffix(".pub"))
    with pytest.raises(UsageError, match="wrong passphrase") as caught:
        load_signer(str(locked))
    assert caught.value.exit_code == 2
    assert str(locked) in caught.value.message
    assert caught.value.hint is not None and PASSPHRASE_ENV in caught.value.hint


def test_an_unencrypted_key_ignores_the_environment(
        ssh_keys: dict[str, SSHKeyFiles], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "secret")
    plain = ssh_keys["alice"]
    assert not is_encrypted(plain.private.read_bytes())
    assert load_signer(str(plain.private)).key_id == key_id(plain.public)


def test_an_encrypted_pkcs8_key_gets_its_passphrase_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private = Ed25519PrivateKey.generate()
    pem = tmp_path / "key.pem"
    pem.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.BestAvailableEncryption(b"secret")))
    assert is_encrypted(pem.read_bytes())
    with pytest.raises(UsageError, match=f"{pem}.*passphrase-protected"):
        load_signer(str(pem))
    monkeypatch.setenv(PASSPHRASE_ENV, "secret")
    line = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode()
    assert load_signer(str(pem)).key_id == SSHPublicKey.from_openssh(line).key_id


def test_the_public_key_of_an_encrypted_key_needs_no_passphrase(locked: Path) -> None:
    assert is_encrypted(locked.read_bytes())
    assert load_public_key(str(locked), at=NOW).key_id == key_id(locked.with_suffix(".pub"))
