"""`gitreg site sync`, the command cron runs, without typer.

A sync with nothing new must cost a few interpreter start-ups (issue 4), and
typer, with the pydantic it imports to coerce options, costs more than
importing pygit2. So ``gitreg.cli.main.run`` hands a plain ``site sync``
command line (``--config``, ``--dry-run``, ``--json``, a leading
``--verbose``) straight to ``run_sync``; anything else (``--help``, a typo,
an option given twice) goes through typer, which owns the messages for
those. The typer command in ``gitreg.cli.site`` calls ``run_sync`` too, so
both ways run the same code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SyncArguments:
    config: Path
    dry_run: bool = False
    json_output: bool = False
    verbose: bool = False


def plain_sync_arguments(argv: Sequence[str]) -> SyncArguments | None:
    """The arguments of a plain ``[--verbose] site sync ...`` line, else None."""
    from gitreg.cli.plain_line import parse_plain_line

    line = parse_plain_line(argv, ("site", "sync"),
                            options={"--config": "config", "-c": "config"},
                            flags=("--dry-run", "--json"))
    config = line.value("config") if line is not None else None
    if line is None or not config:
        return None
    return SyncArguments(Path(config), dry_run="--dry-run" in line.flags,
                         json_output="--json" in line.flags, verbose=line.verbose)


def run_plain(arguments: SyncArguments) -> int:
    """Run a sync parsed by ``plain_sync_arguments``; return the exit code."""
    if arguments.verbose:
        os.environ["GITREG_VERBOSE"] = "1"  # as typer's root --verbose does
    return run_sync(arguments.config, dry_run=arguments.dry_run,
                    json_output=arguments.json_output)


def run_sync(config: Path, *, dry_run: bool, json_output: bool) -> int:
    """Fetch, verify, merge, plan and apply; print the report; return the exit code."""
    from gitreg.cli import output
    from gitreg.site.config import load_config
    from gitreg.site.sync import sync

    site = load_config(config)
    progress = _RichProgress() if sys.stderr.isatty() and not json_output else None
    try:
        report = sync(site, dry_run=dry_run, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    if json_output:
        output.data_json(report.to_json())
    else:
        _print_sync(report)
    return report.exit_code


def _print_sync(report: Any) -> None:
    from gitreg.cli import output

    for registry in report.registries:
        for remote in registry.remotes:
            if remote.state in ("invalid", "unreachable", "stale"):
                rule = f" [rule: {remote.rule}]" if remote.rule else ""
                output.warn(f"{registry.name}: remote {remote.url} is {remote.state}: "
                            f"{remote.detail}{rule}")
        for finding in registry.equivocations:
            kind = "equivocation" if finding.reason == "equivocation" else "image conflict"
            output.warn(f"{registry.name}: {kind}: {finding.describe()}")
        if registry.merge_error:
            output.warn(f"{registry.name}: {registry.merge_error}")
        for repair in registry.recovery:
            output.warn(f"{registry.name}: {repair}")
        if registry.refused:
            output.warn(f"{registry.name}: state not applied: {registry.refused}")
        for finding in registry.heartbeat_findings:
            output.warn(f"{registry.name}: {finding}")
        if registry.freeze:
            stay = (f"staying at the trusted state {registry.target[:12]}" if registry.target
                    else "nothing applied")
            output.warn(f"{registry.name}: {registry.freeze}; {stay}")
        for finding in registry.state_findings:
            output.warn(f"{registry.name}: {finding}")
        states = ", ".join(f"{r.state}" for r in registry.remotes)
        target = registry.target[:12] if registry.target else "none"
        merged = " (merged)" if registry.merged else ""
        output.info(f"{registry.name}: state {target}{merged}; remotes: {states}")
    for conflict in report.plan.conflicts:
        output.warn(f"conflict: {conflict}")
    plan = report.plan
    if report.dry_run:
        output.data("plan (dry run, nothing changed):")
        for image in plan.download:
            output.data(f"  download {image.uuid} {image.metadata.get('dc:title', '')} "
                        f"({image.size} bytes, list {image.list_uuid} v{image.list_version})")
        for retirement in plan.retire:
            output.data(f"  retire   {retirement.record.uuid} ({retirement.reason})")
        for image in plan.keep:
            output.data(f"  keep     {image.uuid} {image.metadata.get('dc:title', '')}")
        counts = (f"{len(plan.download)} to download, {len(plan.retire)} to retire, "
                  f"{len(plan.keep)} kept")
        output.summary(*sync_verdict(report, f"sync (dry run): {counts}"))
        return
    for image_uuid, reason in sorted(report.failed.items()):
        held = " (held: does not fail the sync)" if image_uuid in report.held else ""
        output.warn(f"image {image_uuid} failed{held}: {reason}")
    for failure in report.handler_failures:
        output.warn(f"handler failed (retried next sync): {failure}")
    for failure in report.handlers_given_up:
        output.warn(f"handler failed, not retried any more: {failure}")
    for cloud in report.clouds:
        if cloud.error:
            # The adapters' errors already name the cloud.
            output.warn(f"{cloud.error} (the cache stays; the next sync retries)")
        for image_uuid, reason in sorted(cloud.failed.items()):
            of_list = f" of list {cloud.lists[image_uuid]}" if image_uuid in cloud.lists else ""
            output.warn(f"cloud {cloud.name}: image {image_uuid}{of_list} refused: {reason}")
        output.info(f"cloud {cloud.name}: {len(cloud.uploaded)} uploaded, "
                    f"{len(cloud.updated)} updated, {len(cloud.retired)} retirement step(s), "
                    f"{cloud.writes} write request(s)")
    counts = (f"{len(report.downloaded)} downloaded, {len(report.retired)} retired, "
              f"{plan.kept} kept, {_failed(report)}, "
              f"{len(report.events)} event(s)")
    output.summary(*sync_verdict(report, f"sync: {counts}"))


def sync_verdict(report: Any, counts: str) -> tuple[str, str]:
    """The summary's status word and text, told by the exit code.

    ``OK`` for exit 0; ``FAILED`` when no registry got a valid state (every
    remote invalid or unreachable); ``PARTIAL`` otherwise (some registry or
    image failed while the rest was applied). The text says which failed.
    """
    code = report.exit_code
    if code == 0:
        return "OK", counts
    reasons = [f"{registry.name}: "
               f"{'no valid remote' if registry.any_invalid else 'no remote reachable'}"
               for registry in report.registries if not registry.any_valid]
    reasons += [f"{registry.name}: freeze suspected" for registry in report.registries
                if registry.freeze]
    if report.failed:
        reasons.append(f"{len(report.failed)} image(s) failed")
    reasons += [f"cloud {c.name} unreachable" for c in report.clouds if c.error]
    reasons += [f"cloud {c.name}: {len(c.failed)} image(s) refused"
                for c in report.clouds if c.failed]
    nothing = bool(report.registries) and all(not r.any_valid or r.freeze
                                              for r in report.registries)
    status = "FAILED" if nothing else "PARTIAL"
    why = f" ({'; '.join(reasons)})" if reasons else ""
    return status, f"{counts}; exit {code}{why}"


def _failed(report: Any) -> str:
    held = len(report.failed) - len(report.unacknowledged_failures)
    return f"{len(report.failed)} failed" + (f" ({held} held)" if held else "")


class _RichProgress:
    """Download bars on stderr, only when stderr is a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        self._progress = Progress(*Progress.get_default_columns(), DownloadColumn(),
                                  TransferSpeedColumn(), console=Console(stderr=True))
        self._tasks: dict[str, Any] = {}
        self._progress.start()

    def start(self, image_uuid: str, title: str, size: int) -> Callable[[int], None]:
        task = self._progress.add_task(title, total=size)
        self._tasks[image_uuid] = task

        def update(done: int) -> None:
            self._progress.update(task, completed=done)
        return update

    def finish(self, image_uuid: str) -> None:
        task = self._tasks.pop(image_uuid, None)
        if task is not None:
            self._progress.remove_task(task)

    def close(self) -> None:
        self._progress.stop()
