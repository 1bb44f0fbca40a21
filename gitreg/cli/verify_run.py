"""`gitreg verify`, without typer for a plain command line, and where it pre-verifies.

A cold verification of a 2,000-list registry takes about a second, and
typer, with the pydantic it imports, costs a sixth of it. So, as for ``site
sync`` and ``search``, ``gitreg.cli.main.run`` hands a plain ``verify`` line
(``[DIR]``, ``--since``, ``--trust-root``, ``--ref``, ``--at``, ``--json``, a
leading ``--verbose``) straight to ``run_verify``; anything else goes through
typer, whose command in ``gitreg.cli.verify`` calls ``run_verify`` too.

The lists of the range are pre-verified (``gitreg.verify.batch``) on forked
worker processes: the work holds the GIL for most of its time (the strict
JSON checks), so threads gain nothing on an idle machine
(docs/benchmarks.md, "Cold `gitreg verify` as a whole process").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from gitreg.gitstore.store import RegistryStore

# Fewer lists than this are checked in this process: starting workers would
# cost more than they save.
IN_PROCESS_JOBS = 128


@dataclass(frozen=True)
class VerifyArguments:
    directory: Path = Path()
    since: str | None = None
    trust_root: str | None = None
    ref: str = "refs/heads/main"
    at: str | None = None
    json_output: bool = False
    verbose: bool = False


def plain_verify_arguments(argv: Sequence[str]) -> VerifyArguments | None:
    """The arguments of a plain ``[--verbose] verify ...`` line, else None."""
    from gitreg.cli.plain_line import parse_plain_line

    line = parse_plain_line(argv, ("verify",),
                            options={"--since": "since", "--trust-root": "trust_root",
                                     "--ref": "ref", "--at": "at"},
                            flags=("--json",), positionals=1)
    if line is None:
        return None
    ref = line.value("ref")
    return VerifyArguments(Path(*line.positionals), since=line.value("since"),
                           trust_root=line.value("trust_root"),
                           ref=VerifyArguments.ref if ref is None else ref, at=line.value("at"),
                           json_output="--json" in line.flags, verbose=line.verbose)


def run_plain(arguments: VerifyArguments) -> int:
    """Run a verification parsed by ``plain_verify_arguments``; return the exit code."""
    if arguments.verbose:
        os.environ["GITREG_VERBOSE"] = "1"  # as typer's root --verbose does
    run_verify(arguments.directory, since=arguments.since, trust_root=arguments.trust_root,
               ref=arguments.ref, json_output=arguments.json_output, at=arguments.at)
    return 0


def run_verify(directory: Path, *, since: str | None, trust_root: str | None, ref: str,
               json_output: bool, at: str | None) -> None:
    """Verify ``ref``'s history (after ``since``) and its state; print the report.

    Returns on success; raises ``RejectedError`` (exit 1) naming the commit,
    path and rule otherwise, after printing the JSON report if asked.
    """
    from gitreg.cli import output
    from gitreg.errors import PolicyViolationError, RejectedError, UsageError
    from gitreg.gitstore.store import RegistryStore
    from gitreg.model.dates import format_date, parse_date, utcnow
    from gitreg.verify.batch import Preverifier
    from gitreg.verify.cache import MemoryCache
    from gitreg.verify.context import VerifyContext
    from gitreg.verify.history import Verifier

    try:
        moment = parse_date(at) if at else utcnow()
    except ValueError as exc:
        raise UsageError(f"--at: {exc}") from None

    store = RegistryStore.open(directory)
    head = store.ref(ref)
    if head is None:
        # A registry's main is never deleted: a repository without one is refused.
        raise PolicyViolationError(f"{directory}: {ref} is missing (deleted, or never "
                                   "published)", rule="ref-delete")
    trusted = store.resolve(since) if since else None
    with PreverificationPool() as pool:
        verifier = Verifier(store, MemoryCache(), context=VerifyContext.for_history(moment),
                            pinned_policy=trust_root, preverify=Preverifier(pool))
        try:
            report = verifier.verify_range(trusted, head)
            # Expiry is a property of the head's state at the reference time.
            verdict = verifier.judge_state(head, with_lists=True)
            refusal = verdict.refusal()
            if refusal is not None:
                raise refusal
        except RejectedError as exc:
            if json_output:
                error = {"message": exc.message}
                if isinstance(exc, PolicyViolationError):
                    error.update(commit=exc.commit or "", path=exc.path or "", rule=exc.rule)
                output.data_json({"valid": False, "head": head, "at": format_date(moment),
                                  "error": error})
            raise
    findings = verdict.findings()
    # Without --trust-root (or --since) the first policy found is trusted as
    # is: say so, with its fingerprint, so the reader can pin it next time.
    # The whole history was just verified (a fresh cache skips nothing), root first.
    unpinned = (_initial_policy(store, report.verified[0])
                if trust_root is None and since is None else None)
    if json_output:
        output.data_json({
            "valid": True, "head": head, "at": format_date(moment),
            "verified": len(report.verified), "equivocations": report.equivocations,
            "state": [{"rule": f.rule, "path": f.path, "message": f.message}
                      for f in findings],
            "trust_root": trust_root or unpinned, "trust_root_pinned": trust_root is not None})
    for finding in report.equivocations:
        output.warn(finding)
    for state_finding in findings:
        output.warn(f"{state_finding.path}: {state_finding.message} "
                    f"[rule: {state_finding.rule}]")
    pinned = (f"; nothing pinned: trusted the repository's first policy {unpinned} as found "
              "(pin it with --trust-root)" if unpinned else "")
    output.ok(f"{directory}: {len(report.verified)} commit(s) verified up to {head[:12]}"
              f"{pinned}")


def _initial_policy(store: RegistryStore, root: str) -> str:
    """The fingerprint of the policy in the ``root`` commit (verified already)."""
    from gitreg.model.policy import fingerprint
    from gitreg.verify import layout

    entry = store.tree_entry(root, layout.POLICY_FILE)
    if entry is None:  # the verifier refused such a root: never reached
        return "none"
    return fingerprint(store.read_blob(entry.oid, layout.BOOTSTRAP_MAX_SIZE))


class PreverificationPool:
    """The executor ``Preverifier`` runs on: forked workers, one per core.

    Started only for a range with at least ``IN_PROCESS_JOBS`` lists (fewer
    run here, one after another); threads where the platform cannot fork;
    nothing parallel on one core. A worker that dies (killed, out of memory)
    ends the run with an error, never a hang or a partial verdict.
    """

    def __init__(self, workers: int | None = None, *,
                 in_process_jobs: int | None = None) -> None:
        self.workers = workers if workers is not None else _cores()
        self.in_process_jobs = IN_PROCESS_JOBS if in_process_jobs is None else in_process_jobs
        self._pool: Executor | None = None

    def __enter__(self) -> PreverificationPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: float | None = None, chunksize: int = 1) -> Iterator[Any]:
        (items,) = iterables
        pending = iter(items)
        first = list(islice(pending, self.in_process_jobs))
        if len(first) < self.in_process_jobs or self.workers < 2:
            return map(fn, chain(first, pending))
        results = self._executor().map(fn, chain(first, pending), timeout=timeout,
                                       chunksize=chunksize)
        return _guarded(results)

    def _executor(self) -> Executor:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

            if "fork" not in multiprocessing.get_all_start_methods():
                self._pool = ThreadPoolExecutor(self.workers)
            else:
                # Forked workers inherit the loaded modules: nothing to import again.
                context = multiprocessing.get_context("fork")
                self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
        return self._pool


def _guarded(results: Iterator[Any]) -> Iterator[Any]:
    from concurrent.futures.process import BrokenProcessPool

    from gitreg.errors import GitregError

    try:
        yield from results
    except BrokenProcessPool:
        raise GitregError("pre-verification: a worker process ended abruptly (killed, or "
                          "out of memory?); nothing was judged",
                          hint="run gitreg verify again") from None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1
