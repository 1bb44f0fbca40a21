"""The endorser's local settings for one registry working copy.

Two sources, first found wins, so a registry can override what an endorser
sets once for all registries in ``~/.gitconfig``:

1. ``.git/gitreg.toml`` of the working copy (never committed, never pushed);
2. git config keys ``gitreg.<key>`` (repository, then global config).

Keys (dotted; in TOML a table path, in git config prefixed with ``gitreg.``):

- ``endorser.name``: the policy endorser new lists are for;
  ``endorser.dn``, ``endorser.ca``, ``endorser.email``, ``endorser.creator``:
  the ``hv:endorser`` fields written into new lists (defaults:
  ``endorser_fields``);
- ``list.source``: the ``dc:source`` of new lists; ``list.uri``: the ``hv:uri``
  of new lists, where ``{uuid}`` is replaced by the list UUID;
- ``publish.key``, ``publish.commit_key``, ``publish.lifetime``: defaults for
  ``gitreg publish``;
- ``upload.<name>.dest``, ``upload.<name>.uri``, ``upload.<name>.ssh_options``:
  image upload targets (``gitreg image upload --to <name>``).

Parsing is pure (``parse_toml``, ``parse_git_config``); ``load`` does the I/O.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitreg.errors import UnreachableError, UsageError
from gitreg.publish.endorser_fields import GitIdentity

TOML_NAME = "gitreg.toml"
GIT_PREFIX = "gitreg."
MAX_CONFIG_SIZE = 1 << 20


@dataclass(frozen=True)
class UploadTarget:
    """Where ``image upload`` copies a file, and the public URI it then has."""

    name: str
    dest: str
    uri: str | None = None
    ssh_options: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalConfig:
    """Flat dotted keys (``endorser.dn``) -> string values, with their origin."""

    values: Mapping[str, str] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        value = self.values.get(key)
        return value if value else None

    def origin(self, key: str) -> str:
        return self.origins.get(key, "nowhere")

    def lifetime_days(self) -> int | None:
        text = self.get("publish.lifetime")
        if text is None:
            return None
        try:
            days = int(text)
        except ValueError:
            raise UsageError(f"{self.origin('publish.lifetime')}: publish.lifetime must be a "
                             f"whole number of days, not {text!r}") from None
        if days < 1:
            raise UsageError(f"{self.origin('publish.lifetime')}: publish.lifetime must be at "
                             f"least 1, not {days}")
        return days

    def upload_targets(self) -> dict[str, UploadTarget]:
        names = sorted({key.split(".")[1] for key in self.values
                        if key.startswith("upload.") and key.count(".") >= 2})
        targets: dict[str, UploadTarget] = {}
        for name in names:
            dest = self.get(f"upload.{name}.dest")
            if dest is None:
                raise UsageError(f"{self.origin(f'upload.{name}.uri')}: upload target {name!r} "
                                 f"has no upload.{name}.dest")
            options = self.get(f"upload.{name}.ssh_options")
            targets[name] = UploadTarget(
                name=name, dest=dest, uri=self.get(f"upload.{name}.uri"),
                ssh_options=tuple(shlex.split(options)) if options else ())
        return targets


def _flatten(table: Mapping[str, Any], prefix: str, source: str,
             out: dict[str, str]) -> None:
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, f"{dotted}.", source, out)
        elif isinstance(value, list):
            # Only ssh_options is a list; it is kept as one shell-quoted string.
            if not all(isinstance(item, str) for item in value):
                raise UsageError(f"{source}: {dotted}: a list must hold only strings")
            out[dotted] = shlex.join(value)
        elif isinstance(value, bool):
            out[dotted] = "true" if value else "false"
        elif isinstance(value, int | float | str):
            out[dotted] = str(value)
        else:
            raise UsageError(f"{source}: {dotted}: unsupported value {value!r}")


def parse_toml(data: bytes, *, source: str) -> dict[str, str]:
    """Flatten a ``gitreg.toml`` into dotted keys; UsageError naming the file on bad TOML."""
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None
    out: dict[str, str] = {}
    _flatten(document, "", source, out)
    return out


def parse_git_config(listing: bytes) -> dict[str, str]:
    """Dotted keys from ``git config -z --get-regexp ^gitreg\\.`` output (last wins).

    Git lower-cases section and key names but keeps subsection case, so
    ``gitreg.upload.Mirror.dest`` keeps ``Mirror``.
    """
    out: dict[str, str] = {}
    for record in listing.split(b"\0"):
        if not record:
            continue
        name, _, value = record.decode("utf-8", errors="replace").partition("\n")
        if name.lower().startswith(GIT_PREFIX):
            out[name[len(GIT_PREFIX):]] = value
    return out


def _git_config(workdir: Path) -> dict[str, str]:
    try:
        done = subprocess.run(["git", "config", "-z", "--get-regexp", r"^gitreg\."],
                              cwd=workdir, capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnreachableError(f"{workdir}: cannot run git config: {exc}") from exc
    # Exit 1 means "no such key": an endorser who configured nothing.
    if done.returncode not in (0, 1):
        raise UnreachableError(f"{workdir}: git config failed: "
                               f"{done.stderr.decode(errors='replace').strip()}")
    return parse_git_config(done.stdout)


def git_identity(workdir: Path) -> GitIdentity:
    """git's author identity for ``workdir``: ``GIT_AUTHOR_NAME``/``GIT_AUTHOR_EMAIL``,
    else ``user.name``/``user.email`` (None where unset)."""
    try:
        done = subprocess.run(["git", "config", "-z", "--get-regexp", r"^user\.(name|email)$"],
                              cwd=workdir, capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnreachableError(f"{workdir}: cannot run git config: {exc}") from exc
    values: dict[str, str] = {}
    for record in done.stdout.split(b"\0"):
        name, _, value = record.decode("utf-8", errors="replace").partition("\n")
        if value.strip():
            values[name.lower()] = value.strip()
    # git itself lets GIT_AUTHOR_* override the config for commits; so do we.
    return GitIdentity(name=os.environ.get("GIT_AUTHOR_NAME") or values.get("user.name"),
                       email=os.environ.get("GIT_AUTHOR_EMAIL") or values.get("user.email"))


def load(workdir: Path, git_dir: Path) -> LocalConfig:
    """The settings of the working copy at ``workdir`` (TOML first, then git config)."""
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    for key, value in _git_config(workdir).items():
        values[key] = value
        origins[key] = f"git config gitreg.{key}"
    toml_path = git_dir / TOML_NAME
    if toml_path.is_file():
        try:
            data = toml_path.read_bytes()[:MAX_CONFIG_SIZE + 1]
        except OSError as exc:
            raise UnreachableError(f"{toml_path}: cannot read: {exc.strerror}") from exc
        if len(data) > MAX_CONFIG_SIZE:
            raise UsageError(f"{toml_path}: larger than {MAX_CONFIG_SIZE} bytes")
        for key, value in parse_toml(data, source=str(toml_path)).items():
            values[key] = value
            origins[key] = f"{toml_path} ({key})"
    return LocalConfig(values=values, origins=origins)
