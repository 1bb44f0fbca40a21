"""Pushing to and fetching from registry remotes with the git CLI.

A push reports the remote's verdict (the pre-receive hook's ``remote:``
lines) as data, not as an exception: a rejection is an answer. A remote that
cannot be reached raises ``UnreachableError`` naming it, so that callers try
the next remote; other failures raise ``GitCommandError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import RepositoryOpenFlag

from gitreg.errors import GitregError, RejectedError, UnreachableError, UsageError
from gitreg.gitstore.command import GitCommandError, GitRun, redact, run_git

DEFAULT_TIMEOUT = 300.0
REMOTE_REF_PREFIX = "refs/gitreg/remotes"
# Signed freshness statements (gitreg.server.heartbeat), outside main.
HEARTBEAT_REF_PREFIX = "refs/gitreg/heartbeat"
STAGED_HEARTBEATS = "heartbeat"
# transfer.fsckObjects sends every fetch through index-pack, which keeps its
# pack, and gc is off during fetches: past this many packs a fetch rolls the
# small ones up, or a site syncing hourly would collect thousands (each
# with a full copy of a thin delta's base) and every object lookup slows.
MAX_PACKS = 16

# stderr fragments (LC_ALL=C) that mean "the other end could not be had".
_UNREACHABLE = (
    "unable to access",
    "could not read from remote repository",
    "does not appear to be a git repository",
    "' not found",  # repository '<url>' not found: an HTTP 404
    "could not resolve host",
    "connection refused",
    "connection timed out",
    "failed to connect",
    "operation timed out",
    "network is unreachable",
    "no route to host",
    "the remote end hung up unexpectedly",
    "repository not found",
    "returned error",
    "couldn't connect",
    "ssl",
    "gnutls",
    "early eof",
)
_FSCK = ("fsck error", "index-pack failed", "object file", "bad object", "invalid object")
_REMOTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,199}")


@dataclass(frozen=True)
class PushResult:
    """One remote's answer to a push of one branch."""

    remote: str
    ref: str
    accepted: bool
    # git's one-line summary: "abc123..def456", "[new branch]", "[up to date]",
    # "[remote rejected] (pre-receive hook declined)", "[rejected] (fetch first)".
    summary: str
    # What the remote's hooks printed (the ``remote:`` lines), prefix removed.
    message: str


@dataclass(frozen=True)
class FetchResult:
    """Where one remote's branch stands after a fetch."""

    remote: str
    name: str
    ref: str  # the local tracking ref, refs/gitreg/remotes/<name>/<branch>
    old: str | None
    new: str

    @property
    def updated(self) -> bool:
        return self.old != self.new


def remote_ref(name: str, branch: str = "main") -> str:
    """The local reference a fetch of remote ``name`` writes."""
    _check_names(name, branch)
    return f"{REMOTE_REF_PREFIX}/{name}/{branch}"


def staged_refspec(name: str) -> str:
    """The fetch refspec that stages a remote's heartbeats under ``name``."""
    _check_names(name, "main")
    return f"+{HEARTBEAT_REF_PREFIX}/*:{REMOTE_REF_PREFIX}/{name}/{STAGED_HEARTBEATS}/*"


def _check_names(name: str, branch: str) -> None:
    if not _REMOTE_NAME.fullmatch(name) or ".." in name or name.endswith(".lock"):
        raise UsageError(f"invalid remote name {name!r}",
                         hint="use letters, digits, '.', '_' and '-'")
    if (not _BRANCH.fullmatch(branch) or ".." in branch or branch.endswith((".lock", "/"))
            or "//" in branch):
        raise UsageError(f"invalid branch name {branch!r}")


def _remote_lines(stderr: str) -> str:
    lines = []
    for line in stderr.splitlines():
        if line.startswith("remote:"):
            # git pads sideband lines (and adds ESC[K on terminals) to wipe progress.
            lines.append(line[len("remote:"):].replace("\x1b[K", "").strip())
    return "\n".join(line for line in lines if line)


def _is_unreachable(stderr: str) -> bool:
    lowered = stderr.lower()
    return any(fragment in lowered for fragment in _UNREACHABLE)


# curl's and git's texts, said the way gitreg's own HTTP transport says them
# (gitreg/transport/errors.py), so one remote down reads alike everywhere.
_PLAIN = (
    (re.compile(r"Failed to connect to (\S+) port (\d+)[^:]*: (?:Couldn't connect to server|"
                r"Connection refused)"), "cannot connect to {0}:{1}: connection refused"),
    (re.compile(r"Failed to connect to (\S+) port (\d+)[^:]*: (?:Connection timed out|"
                r"Operation timed out|Timeout was reached)"),
     "cannot connect to {0}:{1}: timed out"),
    (re.compile(r"Failed to connect to (\S+) port (\d+)[^:]*: (.+)"),
     "cannot connect to {0}:{1}: {2}"),
    (re.compile(r"Could not resolve host: (\S+)"), "cannot resolve host name {0}"),
    (re.compile(r"The requested URL returned error: (\d+)"), "the server answered HTTP {0}"),
    (re.compile(r"'(.+)' does not appear to be a git repository"), "no git repository at {0}"),
    (re.compile(r"repository '(.+)' not found"), "no git repository at {0}"),
)


def _plain(reason: str) -> str:
    for pattern, text in _PLAIN:
        if (found := pattern.search(reason)) is not None:
            return text.format(*(g.rstrip("/") for g in found.groups()))
    return reason


def _last_fatal(stderr: str) -> str:
    fatal = [line for line in stderr.splitlines() if line.startswith(("fatal:", "error:"))]
    chosen = fatal[0] if fatal else (stderr.strip().splitlines() or ["no message"])[-1]
    return _plain(chosen.split(":", 1)[-1].strip() if fatal else chosen.strip())


def push(repo_path: Path, remote_url: str, ref: str = "main", *,
         timeout: float = DEFAULT_TIMEOUT, force: bool = False) -> PushResult:
    """Push branch ``ref`` of ``repo_path`` to the same branch of ``remote_url``.

    ``accepted`` is False when the remote (or git, for a non-fast-forward)
    refused; ``message`` then carries the hook's reasons.
    """
    branch = ref.removeprefix("refs/heads/")
    _check_names("origin", branch)
    shown = redact(remote_url)
    spec = f"{'+' if force else ''}refs/heads/{branch}:refs/heads/{branch}"
    run = run_git(["-C", repo_path, "push", "--porcelain", remote_url, spec],
                  timeout=timeout, what=f"remote {shown}")
    status = _porcelain_status(run.stdout, f"refs/heads/{branch}")
    if status is None:
        _raise_for(run, shown, action="push to", repo_path=repo_path)
        raise GitCommandError(f"push to {shown} gave no status for {branch}: "
                              f"{_last_fatal(run.stderr)}", stderr=run.stderr)
    flag, summary = status
    return PushResult(remote=shown, ref=f"refs/heads/{branch}", accepted=flag in " +-*=",
                      summary=summary, message=_remote_lines(run.stderr))


def _porcelain_status(stdout: str, ref: str) -> tuple[str, str] | None:
    # "<flag>\t<from>:<to>\t<summary> (<reason>)", one line per pushed ref.
    for line in stdout.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and len(fields[0]) == 1 and fields[1].endswith(":" + ref):
            return fields[0], fields[2].strip()
    return None


def _raise_for(run: GitRun, shown: str, *, action: str, repo_path: Path) -> None:
    """Turn a failed git run into the right typed error (or return if it did not fail)."""
    if run.returncode == 0:
        return
    reason = _last_fatal(run.stderr)
    lowered = run.stderr.lower()
    if "not a git repository" in lowered and str(repo_path) in run.stderr:
        raise UsageError(f"{repo_path}: not a Git repository")
    if "src refspec" in lowered:
        raise UsageError(f"{repo_path}: nothing to {action} {shown}: {reason}")
    if any(fragment in lowered for fragment in _FSCK):
        raise RejectedError(f"remote {shown} sent objects git refuses: {reason}")
    if _is_unreachable(run.stderr):
        raise UnreachableError(f"cannot {action} remote {shown}: {reason}")
    raise GitCommandError(f"cannot {action} remote {shown}: {reason}", stderr=run.stderr)


def fetch(bare_repo_path: Path, remote_url: str, *, name: str, branch: str = "main",
          timeout: float = DEFAULT_TIMEOUT, heartbeats: bool = False) -> FetchResult:
    """Fetch ``branch`` of ``remote_url`` into ``refs/gitreg/remotes/<name>/<branch>``.

    The tracking ref follows whatever the remote serves (even a rewrite):
    deciding whether that state is acceptable is the verifier's job. Objects
    are checked by ``git fsck`` rules on the way in. ``heartbeats``: also
    stage the remote's ``refs/gitreg/heartbeat/*`` under
    ``refs/gitreg/remotes/<name>/heartbeat/`` (same process; pruned to what
    the remote has now), for ``gitreg.server.heartbeat`` to judge.
    """
    local = remote_ref(name, branch)
    refspecs = [f"+refs/heads/{branch}:{local}"]
    if heartbeats:  # --prune: the staged heartbeats are what the remote has now
        refspecs.append(staged_refspec(name))
    shown = redact(remote_url)
    before = _ref_commit(bare_repo_path, local)
    run = run_git(
        ["-C", bare_repo_path,
         "-c", "transfer.fsckObjects=true", "-c", "gc.auto=0", "-c", "maintenance.auto=false",
         # index-pack deflates the base of every thin-pack delta it appends
         # (for a 10,000-list registry the 1.4 MB imagelists/ tree): storing
         # it as is halves index-pack's CPU; the roll-up compresses it later.
         "-c", "core.compression=0",
         "fetch", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules", "--quiet",
         *(["--prune"] if heartbeats else []), remote_url, *refspecs],
        timeout=timeout, what=f"remote {shown}",
    )
    if run.returncode != 0:
        if "couldn't find remote ref" in run.stderr.lower():
            raise UnreachableError(f"remote {shown} has no branch {branch}")
        _raise_for(run, shown, action="fetch from", repo_path=bare_repo_path)
    after = _ref_commit(bare_repo_path, local)
    if after is None:
        raise GitCommandError(f"fetch from {shown} did not write {local}", stderr=run.stderr)
    if after != before or heartbeats:
        # Heartbeats arrive on every run, main or not: their packs add up too.
        roll_up_packs(bare_repo_path, timeout=timeout)
    return FetchResult(remote=shown, name=name, ref=local, old=before, new=after)


def roll_up_packs(repo_path: Path, *, max_packs: int = MAX_PACKS,
                  timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Combine small packs (``git repack --geometric=2 -d``) once there are over ``max_packs``.

    A geometric roll-up keeps every object of the packs it combines,
    reachable or not, so a trusted commit no ref names survives it. Returns
    whether it ran and succeeded; a failure loses nothing (the packs stay)
    and the next fetch tries again.
    """
    try:
        git_dir = Path(pygit2.Repository(str(repo_path), flags=RepositoryOpenFlag.NO_SEARCH).path)
        count = sum(1 for p in (git_dir / "objects" / "pack").iterdir() if p.suffix == ".pack")
    except (pygit2.GitError, KeyError, ValueError, OSError):
        return False
    if count <= max_packs:
        return False
    try:
        run = run_git(["-C", repo_path, "repack", "--geometric=2", "-d", "-q"],
                      timeout=timeout, what=f"repository {repo_path}")
    except GitregError:
        return False
    return run.returncode == 0



def _ref_commit(repo_path: Path, ref: str) -> str | None:
    """The commit ``ref`` names (tags peeled), or None; as ``git rev-parse
    REF^{commit}`` answers, read in-process: two git processes per remote
    were a tenth of a sync with nothing new."""
    try:
        repo = pygit2.Repository(str(repo_path), flags=RepositoryOpenFlag.NO_SEARCH)
    except (pygit2.GitError, KeyError, ValueError, OSError):
        raise UsageError(f"{repo_path}: not a Git repository") from None
    try:
        found = repo.references.get(ref)
        return str(found.peel(pygit2.Commit).id) if found is not None else None
    except (pygit2.GitError, KeyError, ValueError, pygit2.InvalidSpecError):
        return None
