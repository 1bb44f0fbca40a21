"""Running the ``git`` command line: one environment, one timeout, one error shape.

Remote operations go through the git CLI, never libgit2's transports: a
local push through libgit2 skips the server's hooks, and libgit2 does not
report a remote's rejection as an error.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gitreg.errors import GitregError, UnreachableError, UsageError

# Variables that point git at another repository or object store. A gitreg
# command started from inside a hook inherits them; they must not leak into
# git commands that name their repository explicitly.
_REPOSITORY_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_PUSH_OPTION_COUNT",
)

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class GitCommandError(GitregError):
    """git failed for a reason that is neither an unreachable remote nor a verdict."""

    def __init__(self, message: str, *, stderr: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.stderr = stderr


@dataclass(frozen=True)
class GitRun:
    """What one git command did."""

    returncode: int
    stdout: str
    stderr: str


def absolute_remote(address: str, base: Path) -> str:
    """A Git remote as git reads it from any directory: a URL or scp-like address
    (``user@host:path``) as is, a local path made absolute against ``base``.

    git resolves a relative path against the repository it runs in, not the
    directory a user typed it in.
    """
    if "://" in address or (re.match(r"[^/]+:", address) and not Path(address).is_absolute()):
        return address
    return str((base / Path(address).expanduser()).absolute())


def redact(url: str) -> str:
    """The URL without user:password, fit for messages and logs."""
    return _USERINFO.sub("", url)


def git_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every git subprocess of gitreg gets."""
    env = {k: v for k, v in os.environ.items() if k not in _REPOSITORY_VARIABLES}
    # Never wait for a password on a terminal nobody watches (cron, hooks).
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("GIT_ASKPASS", "")
    env.setdefault("SSH_ASKPASS", "")
    # Messages are matched to tell "unreachable" from other failures.
    env["LC_ALL"] = "C"
    env["LANGUAGE"] = "C"
    if extra:
        env.update(extra)
    return env


def run_git(args: Sequence[str | Path], *, timeout: float, what: str,
            env: Mapping[str, str] | None = None, cwd: Path | None = None,
            stdin: bytes | None = None) -> GitRun:
    """Run ``git ARGS`` to completion or kill its whole process group at ``timeout``.

    ``what`` names the remote or repository for the timeout message. A
    timeout raises ``UnreachableError``: the other end did not answer.
    ``stdin``: what git reads on its standard input (nothing otherwise).
    """
    argv = ["git", *map(str, args)]
    try:
        # A new session so that a timeout also kills git-remote-http, ssh, ...
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=git_environment(env), cwd=cwd, start_new_session=True,
        )
    except OSError as exc:
        raise UsageError(f"cannot run git: {exc}", hint="install git and put it on PATH") from exc
    try:
        out, err = proc.communicate(input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise UnreachableError(f"{what} did not answer within {timeout:g} s") from None
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    return GitRun(
        proc.returncode,
        out.decode("utf-8", errors="replace"),
        err.decode("utf-8", errors="replace"),
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
