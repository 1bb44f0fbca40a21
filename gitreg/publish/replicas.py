"""Pushing ``main`` to every replica the working copy knows (its git remotes).

Each remote answers on its own: accepted, rejected (with the hook's
message), or unreachable. One bad replica never stops the push to the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gitreg.errors import EXIT_OK, EXIT_OPERATIONAL, EXIT_REJECTED, GitregError, UnreachableError
from gitreg.publish.workcopy import BRANCH, WorkingCopy

Status = Literal["accepted", "rejected", "unreachable", "failed"]


@dataclass(frozen=True)
class RemoteVerdict:
    remote: str
    url: str
    status: Status
    summary: str
    message: str = ""

    def describe(self) -> str:
        text = f"{self.remote} ({self.url}): {self.status}"
        if self.summary:
            text += f" {self.summary}"
        if self.message:
            text += "\n  " + self.message.replace("\n", "\n  ")
        return text


def remotes(copy: WorkingCopy) -> list[tuple[str, str]]:
    """(name, URL) of every configured git remote, in name order."""
    from gitreg.gitstore.command import redact

    found = []
    for remote in copy.repo.remotes:
        url = remote.push_url or remote.url or ""
        found.append((str(remote.name), redact(str(url))))
    return sorted(found)


def push_main(copy: WorkingCopy) -> list[RemoteVerdict]:
    """Push ``main`` to every remote with the git CLI (so the remotes' hooks run)."""
    from gitreg.gitstore.remote import push

    verdicts: list[RemoteVerdict] = []
    for name, url in remotes(copy):
        try:
            result = push(copy.workdir, name, BRANCH)
        except UnreachableError as exc:
            verdicts.append(RemoteVerdict(name, url, "unreachable", "", exc.message))
            continue
        except GitregError as exc:
            verdicts.append(RemoteVerdict(name, url, "failed", "", exc.message))
            continue
        verdicts.append(RemoteVerdict(name, url, "accepted" if result.accepted else "rejected",
                                      result.summary, result.message))
    return verdicts


def exit_code(verdicts: list[RemoteVerdict]) -> int:
    """1 if any remote rejected, 3 if any could not be reached (or failed), else 0."""
    if any(v.status == "rejected" for v in verdicts):
        return EXIT_REJECTED
    if any(v.status in ("unreachable", "failed") for v in verdicts):
        return EXIT_OPERATIONAL
    return EXIT_OK
