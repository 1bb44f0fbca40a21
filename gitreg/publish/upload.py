"""``gitreg image upload``: copy an image to storage and compute its public URI.

As in vmcaster, the endorser uploads to where they can write (a directory,
an ``scp``/``ssh`` target) and a rewrite rule from the local config turns that
location into the URI sites download from: ``upload.<name>.dest`` is the
upload location, ``upload.<name>.uri`` the public prefix it maps to.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from gitreg.errors import UnreachableError, UsageError
from gitreg.publish.imagefile import ImageDigest
from gitreg.publish.local_config import UploadTarget

_CHUNK = 1 << 20
SCHEMES = ("file", "scp", "ssh")
# An upload of many GB may take long; only the connection gets a deadline.
_SSH_DEFAULTS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=30")


@dataclass(frozen=True)
class Destination:
    """A parsed upload location (``file:///dir/``, ``scp://user@host:port/dir/``)."""

    url: str
    scheme: str
    path: str
    host: str = ""
    user: str = ""
    port: int | None = None

    @property
    def is_directory(self) -> bool:
        return self.path.endswith("/")

    def for_file(self, name: str) -> Destination:
        """The destination of file ``name`` when this one is a directory."""
        if not self.is_directory:
            return self
        return Destination(url=self.url + quote(name), scheme=self.scheme,
                           path=self.path + name, host=self.host, user=self.user,
                           port=self.port)


def parse_destination(text: str) -> Destination:
    """Parse ``file://``, ``scp://`` or ``ssh://`` destinations; UsageError otherwise."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"upload destination {text!r}: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise UsageError(f"upload destination {text!r}: unsupported scheme "
                         f"{parts.scheme or '(none)'!r}",
                         hint="use file:///DIR/, scp://[USER@]HOST[:PORT]/DIR/ or the name "
                              "of an upload target (upload.<name>.dest in the local config)")
    if parts.query or parts.fragment:
        raise UsageError(f"upload destination {text!r}: no query or fragment allowed")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise UsageError(f"upload destination {text!r}: the path must be absolute")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"upload destination {text!r}: file:// names a local path "
                             "(file:///DIR/)")
        return Destination(url=text, scheme="file", path=path)
    if not parts.hostname:
        raise UsageError(f"upload destination {text!r}: no host")
    return Destination(url=text, scheme="scp", path=path, host=parts.hostname,
                       user=unquote(parts.username or ""), port=port)


@dataclass(frozen=True)
class UploadPlan:
    """Where the file goes, the URI it will have, and how to reach the host."""

    destination: Destination
    uri: str
    ssh_options: tuple[str, ...] = ()
    rule: str | None = None


def plan_upload(to: str, file_name: str, targets: Mapping[str, UploadTarget]) -> UploadPlan:
    """Resolve ``--to`` (a target name or a URL) and the public URI of ``file_name``."""
    target = targets.get(to)
    if target is not None:
        url = target.dest
    elif "://" in to:
        url = to
        target = next((t for t in sorted(targets.values(), key=lambda t: -len(t.dest))
                       if to.startswith(t.dest)), None)
    else:
        names = ", ".join(sorted(targets)) or "none configured"
        raise UsageError(f"--to {to!r}: neither a URL nor an upload target "
                         f"(targets: {names})",
                         hint="configure one: git config gitreg.upload.NAME.dest "
                              "scp://host/dir/ and gitreg.upload.NAME.uri https://host/dir/")
    destination = parse_destination(url).for_file(file_name)
    if target is not None and target.uri:
        if not destination.url.startswith(target.dest):
            raise UsageError(f"upload target {target.name}: {destination.url} is not below "
                             f"{target.dest}")
        uri = target.uri + destination.url[len(target.dest):]
        return UploadPlan(destination, uri, target.ssh_options,
                          rule=f"{target.dest} -> {target.uri}")
    if destination.scheme == "file":
        return UploadPlan(destination, destination.url,
                          target.ssh_options if target else ())
    raise UsageError(f"--to {to!r}: no URI rule says where sites download what is uploaded "
                     "there", hint="set upload.<name>.uri (the public prefix of "
                     "upload.<name>.dest) in .git/gitreg.toml or git config gitreg.*")


def _copy_local(source: Path, destination: Path, expected: ImageDigest) -> None:
    """Copy via a temporary file in the target directory, checking size and SHA-512."""
    if not destination.parent.is_dir():
        raise UsageError(f"upload directory {destination.parent} does not exist")
    digest = hashlib.sha512()
    size = 0
    try:
        fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.",
                                   suffix=".part")
    except OSError as exc:
        raise UnreachableError(f"{destination.parent}: cannot write: {exc.strerror}") from exc
    try:
        with source.open("rb") as reader, os.fdopen(fd, "wb") as writer:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
        if size != expected.size or digest.hexdigest() != expected.sha512:
            raise UnreachableError(f"{source} changed while it was being uploaded; "
                                   "nothing was uploaded")
        Path(tmp).chmod(0o644)
        Path(tmp).replace(destination)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UnreachableError(f"cannot copy {source} to {destination}: {exc.strerror}") \
            from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def scp_command(source: Path, destination: Destination,
                ssh_options: Sequence[str]) -> list[str]:
    host = f"[{destination.host}]" if ":" in destination.host else destination.host
    remote = f"{destination.user}@{host}" if destination.user else host
    command = ["scp", "-q", *_SSH_DEFAULTS, *ssh_options]
    if destination.port is not None:
        command += ["-P", str(destination.port)]
    # "--" so that a file named "-x" is not an option; the path is given as is.
    return [*command, "--", str(source), f"{remote}:{destination.path}"]


def upload(source: Path, plan: UploadPlan, expected: ImageDigest) -> None:
    """Copy ``source`` to the planned destination."""
    destination = plan.destination
    if destination.scheme == "file":
        _copy_local(source, Path(destination.path), expected)
        return
    command = scp_command(source, destination, plan.ssh_options)
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise UsageError(f"cannot run scp: {exc}", hint="install the OpenSSH client") from exc
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else \
            f"exit status {done.returncode}"
        raise UnreachableError(f"cannot upload {source} to {destination.url}: {reason}")
