"""Pre-verification: the expensive per-list work of a range, done in parallel.

Before the sequential walk (``Verifier.verify_range``) judges a range, this
module parses every changed list and checks every SSH list signature of it,
independently of each other, on an executor the caller injects (threads:
``cryptography`` releases the GIL while it verifies; or processes). Results
go into the verification cache, keyed exactly as the walk asks for them
(list facts by blob id; "signature blob S over data blob D verified with key
material K"), so the walk, which still enforces every rule, finds them there.

Nothing here decides trust: a failure of any kind records nothing, and the
walk then meets the problem itself and reports it as it always does. A
success is a fact about bytes (this signature verifies over this data with
this key material), true under whichever policy later names that key. Only
SSH signatures are pre-verified: their verdict does not depend on the time,
which the cache key does not carry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

# What a job uses is imported here, not in the job: forked workers inherit it
# loaded instead of each importing it again (``gitreg.model.imagelist``: by
# ``list_facts``).
import gitreg.model.imagelist  # noqa: F401
from gitreg.errors import GitregError
from gitreg.model.policy import Policy
from gitreg.signing import ssh
from gitreg.signing.interface import NAMESPACE_IMAGELIST
from gitreg.signing.keys import public_key_from_policy
from gitreg.verify import layout
from gitreg.verify.facts import ListFacts, list_facts
from gitreg.verify.signatures import key_digest

if TYPE_CHECKING:
    from gitreg.verify.history import Verifier

# Jobs handed to the executor at once: large enough to amortise the hand-over
# (pickling, for processes), small enough to keep both cores busy to the end.
CHUNK = 64


class Executor(Protocol):
    """What ``concurrent.futures`` executors offer and this module uses."""

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1) -> Iterator[Any]: ...


@dataclass(frozen=True)
class ListJob:
    """One list blob and its signature, with the SSH key material of the policy."""

    data_id: str
    signature_id: str
    path: str
    data: bytes
    signature: bytes
    max_size: int
    ssh_keys: Mapping[str, Mapping[str, Any]]  # policy key id -> ``keys`` entry


@dataclass(frozen=True)
class ListOutcome:
    facts: ListFacts | None
    signer: str | None  # the policy key whose material verified the signature


def check_list_job(job: ListJob) -> ListOutcome:
    """Parse the list and check its signature; every failure is just "not done".

    Module level and free of I/O, so a process pool can run it too. The
    signature is parsed once, here: its embedded key picks the policy key.
    """
    try:
        facts: ListFacts | None = list_facts(job.data, source=job.path, max_size=job.max_size)
    except GitregError:
        facts = None
    try:
        parsed = ssh.parse_signature(job.signature)
        entry = job.ssh_keys.get(parsed.key_id)
        if entry is None:
            return ListOutcome(facts, None)
        key = public_key_from_policy(entry)
        assert isinstance(key, ssh.SSHPublicKey)
        key.verify_parsed(job.data, parsed, namespace=NAMESPACE_IMAGELIST)
    except GitregError:
        return ListOutcome(facts, None)
    return ListOutcome(facts, parsed.key_id)


class Preverifier:
    """Fills a verifier's cache for a range, on ``executor``, before its walk."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def __call__(self, verifier: Verifier, commits: list[str]) -> None:
        # What the results are recorded under; the jobs' bytes are not kept.
        planned: list[tuple[str, str, Policy]] = []

        def jobs() -> Iterator[ListJob]:
            # Handed over as they are read: the workers start on the first
            # chunk while the blobs of the next ones are still being read.
            for job, policy in self._jobs(verifier, commits):
                planned.append((job.data_id, job.signature_id, policy))
                yield job

        outcomes = self.executor.map(check_list_job, jobs(), chunksize=CHUNK)
        for index, outcome in enumerate(outcomes):
            data_id, signature_id, policy = planned[index]
            if outcome.facts is not None:
                verifier.cache.put_list_facts(data_id, outcome.facts)
            if outcome.signer is not None:
                verifier.cache.mark_signature_ok(data_id, signature_id,
                                                 key_digest(policy, outcome.signer))

    def _jobs(self, verifier: Verifier, commits: list[str]) -> Iterator[tuple[ListJob, Policy]]:
        source = verifier.source
        seen: set[str] = set()
        for oid in commits:
            try:
                facts = source.commit(oid)
                if len(facts.parents) != 1:
                    continue  # root and merge commits: the walk does them alone
                parent = source.commit(facts.parents[0])
                policy = verifier.state(parent.tree, commit=parent.oid).policy.signed
                changes = source.changes(parent.tree, facts.tree)
            except GitregError:
                continue
            ssh_keys = {k: dict(v) for k, v in policy.keys.items() if v.get("scheme") == "ssh"}
            for change in changes:
                list_id = layout.list_id_of(change.path)
                if (change.new is None or list_id is None
                        or change.path != layout.list_path(list_id)
                        or change.new.oid in seen):
                    continue
                seen.add(change.new.oid)
                job = _job(verifier, tree=facts.tree, data_id=change.new.oid,
                           path=change.path, list_id=list_id,
                           max_size=policy.limits.max_file_size, ssh_keys=ssh_keys)
                if job is not None:
                    yield job, policy


def _job(verifier: Verifier, *, tree: str, data_id: str, path: str, list_id: str,
         max_size: int, ssh_keys: Mapping[str, Mapping[str, Any]]) -> ListJob | None:
    """The job for one changed list; None when the walk must meet a problem itself."""
    source = verifier.source
    try:
        sig_entry = source.entry(tree, layout.sig_path(list_id))
        if sig_entry is None:
            return None
        return ListJob(data_id, sig_entry.oid, path, source.blob(data_id, max_size),
                       source.blob(sig_entry.oid, max_size), max_size, ssh_keys)
    except GitregError:
        return None
