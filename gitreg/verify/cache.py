"""Results the verifier never computes twice, keyed by Git object ids.

A commit, a signature over a blob, or a parsed list blob has the same verdict
forever (object ids are content hashes), so a cache keyed by object ids is
always safe to reuse within one trust root. ``MemoryCache`` serves one run;
the Git layer provides a persistent one (SQLite) with the same protocol.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

from gitreg.verify.facts import ListFacts


class VerificationCache(Protocol):
    """What the verifier remembers between commits and between runs."""

    def is_commit_verified(self, oid: str) -> bool: ...

    def mark_commit_verified(self, oid: str) -> None: ...

    def is_tree_indexed(self, tree: str) -> bool:
        """Whether every list blob of ``tree`` has its facts recorded."""
        ...

    def mark_tree_indexed(self, tree: str) -> None: ...

    def signature_ok(self, data: str, signature: str, key: str) -> bool:
        """Whether blob ``signature`` was verified over ``data`` with key ``key``.

        ``key`` is a digest of the key material, so a key id reused with
        other material (an X.509 DN under another CA) is a different key.
        """
        ...

    def mark_signature_ok(self, data: str, signature: str, key: str) -> None: ...

    def list_facts(self, blob: str) -> ListFacts | None: ...

    def put_list_facts(self, blob: str, facts: ListFacts) -> None: ...

    def blobs_with_image(self, image: str) -> set[str]:
        """List blobs (with recorded facts) that carry image UUID ``image``."""
        ...


class MemoryCache:
    """The cache for one run (tests, one-off verification)."""

    def __init__(self) -> None:
        self._commits: set[str] = set()
        self._trees: set[str] = set()
        self._signatures: set[tuple[str, str, str]] = set()
        self._facts: dict[str, ListFacts] = {}
        self._images: dict[str, set[str]] = defaultdict(set)

    def is_commit_verified(self, oid: str) -> bool:
        return oid in self._commits

    def mark_commit_verified(self, oid: str) -> None:
        self._commits.add(oid)

    def is_tree_indexed(self, tree: str) -> bool:
        return tree in self._trees

    def mark_tree_indexed(self, tree: str) -> None:
        self._trees.add(tree)

    def signature_ok(self, data: str, signature: str, key: str) -> bool:
        return (data, signature, key) in self._signatures

    def mark_signature_ok(self, data: str, signature: str, key: str) -> None:
        self._signatures.add((data, signature, key))

    def list_facts(self, blob: str) -> ListFacts | None:
        return self._facts.get(blob)

    def put_list_facts(self, blob: str, facts: ListFacts) -> None:
        self._facts[blob] = facts
        for image in facts.images:
            self._images[image].add(blob)

    def blobs_with_image(self, image: str) -> set[str]:
        return set(self._images.get(image, ()))
