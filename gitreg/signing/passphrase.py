"""Passphrases of encrypted SSH private keys: tell an encrypted key file from a
plain one, and get its passphrase from the environment or the terminal.

Lives below the CLI so that every command that loads a key (``init
--root-key``, ``policy sign --key``, ``publish --key/--commit-key``) asks the
same way; it never imports typer.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from gitreg.errors import UsageError

# The name of the variable, not a secret.
PASSPHRASE_ENV = "GITREG_KEY_PASSPHRASE"  # noqa: S105

_OPENSSH_BEGIN = b"-----BEGIN OPENSSH PRIVATE KEY-----"
_OPENSSH_END = b"-----END OPENSSH PRIVATE KEY-----"
_OPENSSH_MAGIC = b"openssh-key-v1\0"
_PEM_ENCRYPTED_MARKERS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


@dataclass(frozen=True)
class OpenSSHContainer:
    """The clear part of an ``openssh-key-v1`` private key file."""

    cipher: str
    public_keys: tuple[bytes, ...]

    @property
    def encrypted(self) -> bool:
        return self.cipher != "none"


def _take_string(body: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(body):
        raise ValueError("truncated")
    (length,) = struct.unpack_from(">I", body, offset)
    end = offset + 4 + length
    if end > len(body):
        raise ValueError("truncated")
    return body[offset + 4:end], end


def openssh_container(data: bytes) -> OpenSSHContainer | None:
    """The cipher and public keys of an OpenSSH private key file, or None when
    ``data`` is not one (or is malformed: the key loader then says why)."""
    text = data.strip()
    if not (text.startswith(_OPENSSH_BEGIN) and text.endswith(_OPENSSH_END)):
        return None
    try:
        body = base64.b64decode(b"".join(text[len(_OPENSSH_BEGIN):-len(_OPENSSH_END)].split()),
                                validate=True)
        if not body.startswith(_OPENSSH_MAGIC):
            return None
        cipher, offset = _take_string(body, len(_OPENSSH_MAGIC))
        _kdf, offset = _take_string(body, offset)
        _kdf_options, offset = _take_string(body, offset)
        if offset + 4 > len(body):
            return None
        (count,) = struct.unpack_from(">I", body, offset)
        offset += 4
        public_keys = []
        for _ in range(min(count, 16)):
            blob, offset = _take_string(body, offset)
            public_keys.append(blob)
        return OpenSSHContainer(cipher.decode("ascii"), tuple(public_keys))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def is_encrypted(data: bytes) -> bool:
    """Whether a private key file (OpenSSH or PEM) needs a passphrase."""
    container = openssh_container(data)
    if container is not None:
        return container.encrypted
    head = data.lstrip()[:4096]
    return any(marker in head for marker in _PEM_ENCRYPTED_MARKERS)


@dataclass(frozen=True)
class Passphrase:
    """A passphrase and where it came from (for the "wrong passphrase" hint)."""

    value: bytes
    source: str


def _interactive() -> bool:
    # A prompt nobody can see would hang a script or a CI job: ask only when
    # both the input and the diagnostics are a terminal.
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def passphrase_for(path: Path) -> Passphrase:
    """The passphrase of the encrypted key file ``path``: ``$GITREG_KEY_PASSPHRASE``
    if set and not empty, else asked on the terminal, else a ``UsageError``."""
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return Passphrase(os.fsencode(from_env), f"${PASSPHRASE_ENV}")
    if _interactive():
        try:
            typed = getpass.getpass(f"Passphrase for {path}: ")
        except EOFError as exc:
            raise UsageError(f"no passphrase given for SSH private key {path}") from exc
        return Passphrase(typed.encode("utf-8"), "the terminal")
    raise UsageError(
        f"SSH private key {path} is passphrase-protected and there is no terminal to ask on",
        hint=f"run the command in a terminal, set {PASSPHRASE_ENV} (scripts and CI), "
             "or use an unencrypted key",
    )
