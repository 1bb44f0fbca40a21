"""Create (or bring up to date) a registry's server-side bare repository.

The repository is seeded from an existing registry before the hook exists,
then protected by git's own receive checks and gitreg's pre-receive hook.
Re-running updates the hook and the configuration and never touches refs.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from gitreg.errors import GitregError, UsageError
from gitreg.gitstore.command import GitCommandError, run_git
from gitreg.server.hook import CACHE_FILE, TRUST_ROOT_KEY
from gitreg.verify.layout import BOOTSTRAP_MAX_SIZE

DEFAULT_MAX_INPUT_SIZE = 64 * 1024 * 1024
_TIMEOUT = 300.0

# Used when gitreg runs from an installed wheel without the source tree's hooks/.
_DEFAULT_HOOK = '''#!/usr/bin/env python3
"""gitreg pre-receive hook: verify every pushed update before git accepts it."""

import sys

from gitreg.server.hook import main

if __name__ == "__main__":
    sys.exit(main())
'''


def hook_template() -> str:
    """The pre-receive script gitreg installs: the source tree's hooks/pre-receive."""
    shipped = Path(__file__).resolve().parents[2] / "hooks" / "pre-receive"
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    return _DEFAULT_HOOK


def _interpreter_line(script: str, python: str) -> str:
    """A Python ``script`` made to run under ``python``; other scripts stay as they are."""
    first = script.split("\n", 1)[0]
    if first.startswith("#!") and "python" not in first:
        return script
    body = script.split("\n", 1)[1] if first.startswith("#!") else script
    # Kernels cut shebangs at 127 bytes (older) and split on spaces; such
    # interpreters go through sh, which re-executes the file as Python.
    if len(python) < 120 and not any(c.isspace() for c in python):
        return f"#!{python}\n{body}"
    quoted = "'" + python.replace("'", "'\"'\"'") + "'"
    return f"#!/bin/sh\n''''exec {quoted} \"$0\" \"$@\" # '''\n{body}"


def server_config(max_input_size: int = DEFAULT_MAX_INPUT_SIZE) -> dict[str, str]:
    """The git configuration a registry server repository carries."""
    return {
        # History is append-only; the hook checks content, git checks shape.
        "receive.denyNonFastForwards": "true",
        "receive.denyDeletes": "true",
        "receive.fsckObjects": "true",
        "receive.maxInputSize": str(max_input_size),
        # Smart HTTP pushes without REMOTE_USER (gitreg server serve).
        "http.receivepack": "true",
        # Our hooks/ wins over a core.hooksPath set system-wide or globally;
        # relative, it resolves inside the bare repository where hooks run.
        "core.hooksPath": "hooks",
    }


def _git(args: list[str | Path], what: str) -> str:
    run = run_git(args, timeout=_TIMEOUT, what=what)
    if run.returncode != 0:
        command = " ".join(str(a) for a in args)
        raise GitCommandError(f"{what}: `git {command}` failed: {run.stderr.strip()}",
                              stderr=run.stderr)
    return run.stdout.strip()


def _has_main(repo: Path) -> bool:
    run = run_git(["-C", repo, "rev-parse", "--verify", "--quiet", "refs/heads/main^{commit}"],
                  timeout=_TIMEOUT, what=str(repo))
    return run.returncode == 0


def _is_bare_repository(path: Path) -> bool:
    run = run_git(["-C", path, "rev-parse", "--is-bare-repository", "--absolute-git-dir"],
                  timeout=_TIMEOUT, what=str(path))
    if run.returncode != 0:
        return False
    lines = run.stdout.split()
    return len(lines) == 2 and lines[0] == "true" and Path(lines[1]) == path.resolve()


def _verify_seed(source: Path, server: Path) -> tuple[str, str]:
    """Verify the source's whole history; return the head verified and the
    initial policy's fingerprint.

    The verdicts land in the server's verifier cache, so the first push is cheap.
    """
    from gitreg.gitstore.store import RegistryStore
    from gitreg.gitstore.verify_cache import SqliteCache
    from gitreg.model.dates import utcnow
    from gitreg.model.policy import fingerprint
    from gitreg.verify.context import VerifyContext
    from gitreg.verify.history import Verifier

    store = RegistryStore.open(source)
    head = store.resolve("refs/heads/main")
    root = store.commits_between(None, head)[0]
    entry = store.entry(store.commit(root).tree, "policy.json")
    if entry is None:
        raise UsageError(f"{source}: the first commit has no policy.json; not a registry")
    trust_root = fingerprint(store.blob(entry.oid, BOOTSTRAP_MAX_SIZE))
    cache = SqliteCache(server / CACHE_FILE, trust_root=trust_root)
    try:
        Verifier(store, cache, context=VerifyContext.for_history(utcnow()),
                 pinned_policy=trust_root).verify_range(None, head)
    finally:
        cache.close()
    return head, trust_root


def init_server(path: Path, *, source: Path,
                max_input_size: int = DEFAULT_MAX_INPUT_SIZE) -> None:
    """Make ``path`` a bare registry repository seeded with ``main`` from ``source``.

    Idempotent: on an existing server repository it only reinstalls the
    hook and rewrites the configuration; refs are never changed or lost.
    """
    path = path.expanduser().absolute()
    source = source.expanduser().absolute()
    if not source.exists():
        raise UsageError(f"{source}: no such registry to seed the server from")
    if not _has_main(source):
        raise UsageError(f"{source}: not a registry repository (no branch main)",
                         hint="create one with `gitreg init` and publish a first commit")
    if path.exists() and not _is_bare_repository(path):
        if path.is_dir() and not any(path.iterdir()):
            pass  # an empty directory made for us: fill it
        else:
            raise UsageError(f"{path}: exists and is not a bare Git repository")
    if path.resolve() == source.resolve():
        raise UsageError(f"{path}: the server repository cannot be its own source")

    created = not _is_bare_repository(path)
    if created:
        _git(["-C", path.parent, "init", "--quiet", "--bare", "--initial-branch=main", path],
             f"{path}")
    if not _has_main(path):
        # Seeded before the hook exists, so the seed is verified here, by the
        # same verifier, and its initial policy pinned as the server's trust root.
        try:
            head, trust_root = _verify_seed(source, path)
        except GitregError:
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise
        # The verified commit, not the source's main of now: a commit made
        # there meanwhile would be seeded unverified, past the hook.
        _git(["-C", path, "-c", "transfer.fsckObjects=true", "fetch", "--quiet", "--no-tags",
              str(source), f"{head}:refs/heads/main"], f"{path}")
        _git(["-C", path, "config", TRUST_ROOT_KEY, trust_root], f"{path}")
    _git(["-C", path, "symbolic-ref", "HEAD", "refs/heads/main"], f"{path}")
    for key, value in server_config(max_input_size).items():
        _git(["-C", path, "config", key, value], f"{path}")
    install_hook(path)


def install_hook(path: Path, script: str | None = None, *, python: str | None = None) -> Path:
    """Write a pre-receive hook into the bare repository ``path``; return its path.

    ``script`` defaults to gitreg's hook; a Python script's first line is
    rewritten to ``python`` (default: the running interpreter).
    """
    hooks = path / "hooks"
    hooks.mkdir(exist_ok=True)
    target = hooks / "pre-receive"
    text = _interpreter_line(script if script is not None else hook_template(),
                             python or sys.executable)
    partial = hooks / ".pre-receive.gitreg-new"
    partial.write_text(text, encoding="utf-8")
    partial.chmod(0o755)
    # Atomic: a push never sees a half-written hook.
    partial.replace(target)
    return target
