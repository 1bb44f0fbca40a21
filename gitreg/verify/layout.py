"""Which paths and modes a registry tree may hold (format version 1)."""

from __future__ import annotations

import re
from collections.abc import Callable

from gitreg.errors import PolicyViolationError
from gitreg.model.attestation import ATTESTER_NAME
from gitreg.verify.source import MODE_BLOB, MODE_COMMIT, MODE_EXEC, MODE_LINK, Change, Entry

REGISTRY_FILE = "gitreg.json"
# Cap on gitreg.json and policy.json, read before any policy (and its limits) is known.
BOOTSTRAP_MAX_SIZE = 1 << 20
POLICY_FILE = "policy.json"
LIST_DIR = "imagelists/"
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_LIST_RE = re.compile(rf"imagelists/({_UUID})\.json")
_SIG_RE = re.compile(rf"imagelists/({_UUID})\.json\.sig")
ATTESTATION_DIR = "attestations/"
_ATTESTATION_RE = re.compile(rf"attestations/({ATTESTER_NAME.pattern})/({_UUID})\.json(\.sig)?")


def list_path(list_id: str) -> str:
    return f"{LIST_DIR}{list_id}.json"


def sig_path(list_id: str) -> str:
    return f"{LIST_DIR}{list_id}.json.sig"


def list_id_of(path: str) -> str | None:
    """The list UUID of ``imagelists/<uuid>.json`` or its ``.sig``, else ``None``."""
    match = _LIST_RE.fullmatch(path) or _SIG_RE.fullmatch(path)
    return match.group(1) if match else None


def is_list(path: str) -> bool:
    return _LIST_RE.fullmatch(path) is not None


def attestation_path(attester: str, image: str) -> str:
    return f"{ATTESTATION_DIR}{attester}/{image}.json"


def attestation_of(path: str) -> tuple[str, str] | None:
    """(attester, image UUID) of ``attestations/<attester>/<uuid>.json`` or its ``.sig``."""
    # The prefix test first: most paths of a registry are lists.
    match = _ATTESTATION_RE.fullmatch(path) if path.startswith(ATTESTATION_DIR) else None
    return (match.group(1), match.group(2)) if match else None


def is_attestation(path: str) -> bool:
    """Whether ``path`` is a statement (not its ``.sig``)."""
    return (path.startswith(ATTESTATION_DIR) and path.endswith(".json")
            and _ATTESTATION_RE.fullmatch(path) is not None)


def check_mode(entry: Entry, *, commit: str) -> None:
    """Reject anything but a regular, non-executable file (mode 100644)."""
    path = entry.path
    if entry.mode == MODE_LINK:
        raise PolicyViolationError("symbolic links are not allowed", rule="layout-mode",
                                   commit=commit, path=path)
    if entry.mode == MODE_COMMIT:
        raise PolicyViolationError("submodules are not allowed", rule="layout-mode",
                                   commit=commit, path=path)
    if entry.mode == MODE_EXEC:
        raise PolicyViolationError("executable files are not allowed (mode 100755)",
                                   rule="layout-mode", commit=commit, path=path)
    if entry.mode != MODE_BLOB:
        raise PolicyViolationError(f"file mode {entry.mode:o} is not allowed",
                                   rule="layout-mode", commit=commit, path=path)


def check_entry(entry: Entry, *, commit: str, max_size: int, size: Callable[[], int]) -> None:
    """Reject a path outside the layout, a non-regular mode, or an oversized file.

    ``size`` is asked only once the entry is known to be a blob: a gitlink
    names a commit that need not exist, and must be refused for its mode.
    """
    check_mode(entry, commit=commit)
    path = entry.path
    if (path not in (REGISTRY_FILE, POLICY_FILE) and list_id_of(path) is None
            and attestation_of(path) is None):
        raise PolicyViolationError(
            "path outside the registry layout (allowed: gitreg.json, policy.json, "
            "imagelists/<uuid>.json, attestations/<attester>/<uuid>.json and their .sig)",
            rule="layout-path", commit=commit, path=path)
    size_bytes = size()
    if size_bytes > max_size:
        raise PolicyViolationError(f"file of {size_bytes} bytes exceeds the policy limit of "
                                   f"{max_size} bytes", rule="size-limit", commit=commit, path=path)


def check_required(info: Entry | None, policy: Entry | None, *,
                   commit: str | None) -> tuple[Entry, Entry]:
    """Every tree holds gitreg.json and policy.json (``layout-required``)."""
    if info is None or policy is None:
        missing = REGISTRY_FILE if info is None else POLICY_FILE
        raise PolicyViolationError(f"{missing} is missing", rule="layout-required",
                                   commit=commit, path=missing)
    return info, policy


def check_root_entry(entry: Entry, *, commit: str, size: Callable[[], int]) -> None:
    """The root commit holds only gitreg.json and policy.json (``root-layout``)."""
    check_entry(entry, commit=commit, max_size=BOOTSTRAP_MAX_SIZE, size=size)
    if entry.path not in (REGISTRY_FILE, POLICY_FILE):
        raise PolicyViolationError("the root commit may hold only gitreg.json and policy.json",
                                   rule="root-layout", commit=commit, path=entry.path)


def check_change(change: Change, *, commit: str, max_size: int,
                 size: Callable[[], int] | None) -> None:
    """A changed path: lists are never deleted, gitreg.json never changes, and what
    is added or changed fits the layout (``size``: of the new blob, asked lazily)."""
    if change.new is None:
        if list_id_of(change.path) is not None:
            raise PolicyViolationError(
                "lists are never deleted; decommission one by publishing a newer version "
                "with no images", rule="list-deleted", commit=commit, path=change.path)
        if attestation_of(change.path) is not None:
            raise PolicyViolationError(
                "attestations are never deleted; a newer statement replaces an older one",
                rule="attestation-deleted", commit=commit, path=change.path)
        if change.path in (REGISTRY_FILE, POLICY_FILE):
            raise PolicyViolationError(f"{change.path} may not be removed",
                                       rule="layout-required", commit=commit, path=change.path)
        return  # removing a stray path is how a bad tree gets repaired
    assert size is not None
    check_entry(change.new, commit=commit, max_size=max_size, size=size)
    if change.path == REGISTRY_FILE:
        raise PolicyViolationError("gitreg.json (the registry identity) never changes",
                                   rule="registry-immutable", commit=commit, path=change.path)
