"""Git tree objects read as bytes: checked to tile into entries, searched and compared.

gitreg parses trees itself (not through libgit2's tree cache), so that one
parser decides what a tree holds (gitreg/gitstore/store.py), and comparing
two trees costs what differs between them, not what they hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gitreg.errors import RejectedError

# One tree entry as git writes it: octal mode, space, name, NUL, binary id.
# A name holds neither NUL nor "/"; parsing must tile the whole object.
_TREE_ENTRY = re.compile(rb"([0-7]{1,7}) ([^\0/]+)\0(.{20})", re.DOTALL)
# Whole entries from the start: fullmatch checks a tree tiles, match(raw, 0, n)
# finds the last entry boundary at or before n, both at C speed.
_TREE_TILES = re.compile(rb"(?:[0-7]{1,7} [^\0/]+\0.{20})*", re.DOTALL)
_MODE_DIGITS = frozenset(b"01234567")
# Each search of a tree's bytes for a name costs up to one scan of the tree.
_SEARCHES_BEFORE_PARSE = 8

RawEntry = tuple[bytes, bytes, bytes]


@dataclass
class ParsedTree:
    """A tree object's bytes; checked to tile into entries before any answer.

    A push that changes one list of a 10,000-list registry reads two 1.4 MB
    imagelists/ trees: comparing and searching their bytes at C speed, rather
    than building 20,000 entries of each, keeps the cost with the change.
    """

    oid: str
    raw: bytes
    valid: bool = False
    _entries: list[RawEntry] | None = None
    _by_name: dict[bytes, RawEntry] | None = None
    _found: dict[bytes, RawEntry | None] = field(default_factory=dict)
    _searches: int = 0

    def validate(self) -> None:
        """Refuse bytes that do not tile into entries: a tree git would not accept."""
        if not self.valid:
            if _TREE_TILES.fullmatch(self.raw) is None:
                raise RejectedError(f"tree {self.oid} is malformed")
            self.valid = True

    @property
    def entries(self) -> list[RawEntry]:
        if self._entries is None:
            self.validate()
            entries: list[RawEntry] = _TREE_ENTRY.findall(self.raw)
            by_name = {e[1]: e for e in entries}
            if len(by_name) != len(entries):
                raise RejectedError(f"tree {self.oid} has two entries with the same name")
            self._entries, self._by_name = entries, by_name
        return self._entries

    @property
    def is_empty(self) -> bool:
        return not self.raw

    def by_name(self) -> dict[bytes, RawEntry]:
        if self._by_name is None:
            self.entries  # noqa: B018 -- parses and fills _by_name
        assert self._by_name is not None
        return self._by_name

    def lookup(self, name: bytes) -> RawEntry | None:
        """The entry named ``name``, found without parsing the whole tree."""
        if self._by_name is not None:
            return self._by_name.get(name)
        if name not in self._found:
            self._searches += 1
            if self._searches > _SEARCHES_BEFORE_PARSE:
                # Many searches cost more than one parse of the whole tree.
                return self.by_name().get(name)
            self.validate()
            self._found[name] = self._search(name)
        return self._found[name]

    def remember(self, entries: list[RawEntry]) -> None:
        """Entries parsed elsewhere (a window of a comparison), for later lookups."""
        for entry in entries:
            self._found[entry[1]] = entry

    def _search(self, name: bytes) -> RawEntry | None:
        needle = b" " + name + b"\0"
        pos = self.raw.find(needle)
        while pos != -1:
            start = self._entry_start(pos)
            if start is not None:
                match = _TREE_ENTRY.match(self.raw, start)
                if match is not None and match.group(2) == name:
                    mode, found, oid = match.groups()
                    return (mode, found, oid)
            # The bytes also occur inside another entry (its name or id): go on.
            pos = self.raw.find(needle, pos + 1)
        return None

    def _entry_start(self, space: int) -> int | None:
        """Where the entry whose mode ends at ``space`` starts, if one does there."""
        for digits in range(1, 8):
            start = space - digits
            if start < 0 or self.raw[start] not in _MODE_DIGITS:
                return None
            boundary = _TREE_TILES.match(self.raw, 0, start)
            if boundary is not None and boundary.end() == start:
                return start
        return None


def differing_window(old_tree: ParsedTree,
                      new_tree: ParsedTree) -> tuple[list[RawEntry], list[RawEntry]]:
    """The entries of two trees that lie between their common head and tail.

    The longest common prefix and suffix of the bytes are bisected with bytes
    comparisons (memcmp), widened to entry boundaries, and only the entries
    between them are parsed: a one-list change in a 10,000-list tree parses
    two entries. Both trees are checked to tile on the way, in one pass over
    their shared bytes.
    """
    old, new = old_tree.raw, new_tree.raw
    limit = min(len(old), len(new))
    head = _common_prefix(old, new, limit)
    # The same bytes from the start hold the same whole entries in both trees;
    # the scan stops early at bytes that are no entry, and parsing fails there.
    start = _TREE_TILES.match(old, 0, head)
    begin = start.end() if start is not None else 0
    tail = _common_suffix(old, new, limit - begin)
    old_window, old_end = _entries_until(old_tree, begin, len(old) - tail)
    new_window, new_end = _entries_until(new_tree, begin, len(new) - tail)
    # Both windows must stop where equally many trailing bytes remain: those
    # are then the same whole entries. Usually true at once; else parse on.
    while len(old) - old_end != len(new) - new_end:
        if len(old) - old_end > len(new) - new_end:
            more, old_end = _entries_until(old_tree, old_end, len(old) - (len(new) - new_end))
            old_window.extend(more)
        else:
            more, new_end = _entries_until(new_tree, new_end, len(new) - (len(old) - old_end))
            new_window.extend(more)
    if not (old_tree.valid and new_tree.valid):
        # The shared tail is the last bytes left unchecked in both trees.
        if _TREE_TILES.fullmatch(new, new_end) is None:
            raise RejectedError(f"tree {new_tree.oid} is malformed")
        old_tree.valid = new_tree.valid = True
    return old_window, new_window


def _common_prefix(a: bytes, b: bytes, limit: int) -> int:
    """The length of the longest common prefix of ``a`` and ``b`` (at most ``limit``)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        # Only the bytes not yet known equal are compared: the work halves each step.
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """The length of the longest common suffix of ``a`` and ``b`` (at most ``limit``)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid:len(a) - lo] == b[len(b) - mid:len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _entries_until(tree: ParsedTree, pos: int, stop: int) -> tuple[list[RawEntry], int]:
    """Entries of ``tree`` from boundary ``pos`` until one starts at or after ``stop``.

    Returns them and the boundary reached.
    """
    entries: list[RawEntry] = []
    raw = tree.raw
    while pos < stop:
        match = _TREE_ENTRY.match(raw, pos)
        if match is None:
            raise RejectedError(f"tree {tree.oid} is malformed")
        mode, name, oid = match.groups()
        entries.append((mode, name, oid))
        pos = match.end()
    return entries, pos
