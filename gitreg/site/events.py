"""vmcatcher-compatible events: the environment a handler sees, and running handlers.

Event names, variable names and their meaning are vmcatcher's, so that
handlers written for vmcatcher_cache (glancepush, vmcatcher_eventHndl_ON,
cloudkeeper's front-ends) work unchanged:

- ``ProcessPrefix`` / ``ProcessPostfix``: start and end of one sync; no image
  variables (vmcatcher passes an empty metadata dict).
- ``AvailablePrefix``: the image was downloaded and verified and is about to
  enter cache/; ``VMCATCHER_EVENT_FILENAME`` is its name in partial/.
- ``AvailablePostfix``: the image is in cache/<uuid>.
- ``ExpirePrefix``: the image is about to leave cache/<uuid>.
- ``ExpirePostfix``: the image is in expired/; ``VMCATCHER_EVENT_FILENAME`` is
  ``<uuid>.<stamp>``, its name there (vmcatcher renames the index entry too).

Like vmcatcher, a value the imagelist does not have is not set at all (not
set to ""). Unlike vmcatcher, which reused one mutated ``os.environ`` for
every event, values never leak from one event into the next: every
``VMCATCHER_EVENT_*`` variable inherited from the parent is removed first.
Handlers run without a shell, each with its own time limit; output is
captured but bounded, and a handler that overruns is killed with its whole
process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gitreg.site.cache import CacheDirs
from gitreg.site.config import Handler


class EventType(StrEnum):
    PROCESS_PREFIX = "ProcessPrefix"
    AVAILABLE_PREFIX = "AvailablePrefix"
    AVAILABLE_POSTFIX = "AvailablePostfix"
    EXPIRE_PREFIX = "ExpirePrefix"
    EXPIRE_POSTFIX = "ExpirePostfix"
    PROCESS_POSTFIX = "ProcessPostfix"


IMAGE_EVENTS = frozenset({EventType.AVAILABLE_PREFIX, EventType.AVAILABLE_POSTFIX,
                          EventType.EXPIRE_PREFIX, EventType.EXPIRE_POSTFIX})

EVENT_PREFIX = "VMCATCHER_EVENT_"
VAR_TYPE = "VMCATCHER_EVENT_TYPE"
VAR_FILENAME = "VMCATCHER_EVENT_FILENAME"
VAR_IL_DC_IDENTIFIER = "VMCATCHER_EVENT_IL_DC_IDENTIFIER"
VAR_VO = "VMCATCHER_EVENT_VO"
VAR_UUID_SESSION = "VMCATCHER_EVENT_UUID_SESSION"
VAR_DIR_CACHE = "VMCATCHER_CACHE_DIR_CACHE"
VAR_DIR_DOWNLOAD = "VMCATCHER_CACHE_DIR_DOWNLOAD"
VAR_DIR_EXPIRE = "VMCATCHER_CACHE_DIR_EXPIRE"
# gitreg's own additions, outside vmcatcher's namespace: let a handler that
# cares recognise a redelivery (see docs/site.md, "Delivery guarantee").
VAR_GITREG_EVENT_ID = "GITREG_EVENT_ID"
VAR_GITREG_EVENT_ATTEMPT = "GITREG_EVENT_ATTEMPT"

# Image keys (hv:image) -> variables, as in vmcatcher's launch.py mapping.
IMAGE_VARIABLES: Mapping[str, str] = {
    "dc:identifier": "VMCATCHER_EVENT_DC_IDENTIFIER",
    "dc:title": "VMCATCHER_EVENT_DC_TITLE",
    "dc:description": "VMCATCHER_EVENT_DC_DESCRIPTION",
    "hv:uri": "VMCATCHER_EVENT_HV_URI",
    "hv:size": "VMCATCHER_EVENT_HV_SIZE",
    "hv:hypervisor": "VMCATCHER_EVENT_HV_HYPERVISOR",
    "hv:version": "VMCATCHER_EVENT_HV_VERSION",
    "hv:format": "VMCATCHER_EVENT_HV_FORMAT",
    "sl:arch": "VMCATCHER_EVENT_SL_ARCH",
    "sl:checksum:sha512": "VMCATCHER_EVENT_SL_CHECKSUM_SHA512",
    "sl:comments": "VMCATCHER_EVENT_SL_COMMENTS",
    "sl:os": "VMCATCHER_EVENT_SL_OS",
    "sl:osversion": "VMCATCHER_EVENT_SL_OSVERSION",
    "ad:mpuri": "VMCATCHER_EVENT_AD_MPURI",
}

# Every variable event_environment can set, for documentation and tests.
ALL_VARIABLES = (VAR_TYPE, *IMAGE_VARIABLES.values(), VAR_FILENAME, VAR_IL_DC_IDENTIFIER,
                 VAR_VO, VAR_UUID_SESSION, VAR_DIR_CACHE, VAR_DIR_DOWNLOAD, VAR_DIR_EXPIRE)

# Enough of a handler's output to explain a failure, never its whole log.
OUTPUT_TAIL_BYTES = 8 * 1024
# After SIGTERM a handler gets this long to clean up before SIGKILL.
KILL_GRACE_SECONDS = 2.0
# After the handler exits, a background child that kept the pipes open is
# not waited for longer than this.
DRAIN_SECONDS = 0.5


def event_key(event_type: EventType | str, image_uuid: str, sha512: str,
              list_version: str) -> str:
    """The session-independent idempotency key of an image event in the journal."""
    return f"{EventType(event_type)}:{image_uuid}:{sha512.lower()}:{list_version}"


def _directory(path: os.PathLike[str] | str) -> str:
    text = os.fspath(path)
    return text if text.endswith("/") else f"{text}/"


def event_environment(event_type: EventType | str, image: Mapping[str, Any] | None,
                      imagelist: Mapping[str, Any] | None, *, filename: str | None = None,
                      vo: str | None = None, session_uuid: str,
                      cache_dirs: CacheDirs) -> dict[str, str]:
    """The ``VMCATCHER_*`` variables of one event (only those with a value).

    ``image`` and ``imagelist`` may be given bare or wrapped (``{"hv:image":
    {...}}``, ``{"hv:imagelist": {...}}``); the list's own images are not
    read. ``filename`` defaults to the image's ``dc:identifier``; ``vo``
    defaults to the list's ``ad:vo``. Process events carry no image
    variables even if an image is given.
    """
    kind = EventType(event_type)
    env: dict[str, str] = {
        VAR_TYPE: kind.value,
        VAR_UUID_SESSION: _env_value(session_uuid) or "",
        # With a trailing slash, as in vmcatcher's documented configuration:
        # handlers such as glancepush's gpvmcupdate append the file name.
        VAR_DIR_CACHE: _directory(cache_dirs.cache),
        VAR_DIR_DOWNLOAD: _directory(cache_dirs.download),
        VAR_DIR_EXPIRE: _directory(cache_dirs.expire),
    }
    if kind not in IMAGE_EVENTS:
        return env
    image_keys = _unwrap(image, "hv:image")
    list_keys = _unwrap(imagelist, "hv:imagelist")
    for key, variable in IMAGE_VARIABLES.items():
        value = _env_value(image_keys.get(key))
        if value is not None:
            env[variable] = value
    name = filename if filename is not None else _env_value(image_keys.get("dc:identifier"))
    if name:
        env[VAR_FILENAME] = _env_value(name) or ""
    list_id = _env_value(list_keys.get("dc:identifier"))
    if list_id is not None:
        env[VAR_IL_DC_IDENTIFIER] = list_id
    vo_value = _env_value(vo if vo is not None else list_keys.get("ad:vo"))
    if vo_value:  # vmcatcher sets the VO only when it is not empty
        env[VAR_VO] = vo_value
    return env


def delivery_variables(key: str, attempt: int) -> dict[str, str]:
    """gitreg's extra variables for one delivery: the event id and the attempt number."""
    return {VAR_GITREG_EVENT_ID: _env_value(key) or "", VAR_GITREG_EVENT_ATTEMPT: str(attempt)}


@dataclass(frozen=True)
class HandlerOutcome:
    """What happened when one handler ran for one event."""

    command: tuple[str, ...]
    returncode: int | None  # None if it could not be started; negative: killed by signal
    timed_out: bool
    stderr_tail: str
    stdout_tail: str = ""
    duration: float = 0.0
    error: str = ""  # why it could not be started

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def describe(self) -> str:
        """One line for a report: why it failed, or "ok"."""
        if self.ok:
            return "ok"
        if self.error:
            return self.error
        if self.timed_out:
            return f"timed out after {self.duration:.1f}s and was killed"
        if self.returncode is not None and self.returncode < 0:
            return f"killed by signal {-self.returncode}"
        return f"exit code {self.returncode}"


def handler_base_environment(parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent environment without stale event variables."""
    source = os.environ if parent is None else parent
    return {k: v for k, v in source.items()
            if not k.startswith(EVENT_PREFIX) and not k.startswith("GITREG_EVENT_")}


def run_handlers(handlers: Sequence[Handler], env: Mapping[str, str], *,
                 base_env: Mapping[str, str] | None = None) -> list[HandlerOutcome]:
    """Run each handler once, in order, with the parent environment plus ``env``.

    Every handler runs even if an earlier one failed; the caller records
    each outcome separately so that only the failed ones are retried.
    """
    full_env = handler_base_environment(base_env)
    full_env.update(env)
    return [run_handler(handler, full_env) for handler in handlers]


def run_handler(handler: Handler, env: Mapping[str, str]) -> HandlerOutcome:
    """Run one handler with exactly ``env`` as its environment."""
    command = tuple(handler.command)
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            command, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, close_fds=True,
            # Its own process group, so that a timeout kills what it started too.
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return HandlerOutcome(command, None, False, "", "", 0.0,
                              error=f"cannot start {command[0]}: {reason}")
    deadline = start + handler.timeout
    stdout, stderr, timed_out = _collect(process, deadline)
    if timed_out:
        _kill_group(process)
    returncode = process.wait()
    return HandlerOutcome(
        command=command, returncode=returncode, timed_out=timed_out,
        stderr_tail=_tail_text(stderr), stdout_tail=_tail_text(stdout),
        duration=time.monotonic() - start,
    )


def _collect(process: subprocess.Popen[bytes], deadline: float
             ) -> tuple[bytearray, bytearray, bool]:
    """Read both pipes (keeping only their tails) until EOF, exit or the deadline."""
    stdout, stderr = process.stdout, process.stderr
    if stdout is None or stderr is None:  # pragma: no cover  # both are PIPE
        raise RuntimeError("handler pipes missing")
    out_fd, err_fd = stdout.fileno(), stderr.fileno()
    tails = {out_fd: bytearray(), err_fd: bytearray()}
    selector = selectors.DefaultSelector()
    for fd in tails:
        selector.register(fd, selectors.EVENT_READ)
    drain_until: float | None = None
    timed_out = False
    try:
        while selector.get_map():
            now = time.monotonic()
            if drain_until is None and process.poll() is not None:
                drain_until = now + DRAIN_SECONDS
            limit = drain_until if drain_until is not None else deadline
            if now >= limit:
                timed_out = drain_until is None
                break
            # Wake up now and then to notice an exit whose pipes stay open.
            for key, _ in selector.select(min(limit - now, 0.1)):
                fd = int(key.fd)
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(fd)
                    continue
                buffer = tails[fd]
                buffer += chunk
                del buffer[:-OUTPUT_TAIL_BYTES]
        if not timed_out and drain_until is None:
            # Pipes closed; the process itself may still run until the deadline.
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        selector.close()
        stdout.close()
        stderr.close()
    return tails[out_fd], tails[err_fd], timed_out


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the handler's process group, then SIGKILL whatever is left."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=KILL_GRACE_SECONDS)
    # Whether or not the leader obeyed, its children may not have: finish them.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _unwrap(document: Mapping[str, Any] | None, wrapper: str) -> Mapping[str, Any]:
    if document is None:
        return {}
    inner = document.get(wrapper)
    if len(document) == 1 and isinstance(inner, Mapping):
        return inner
    return document


def _env_value(value: Any) -> str | None:
    """A value as environment text: no NUL (the OS forbids it), valid UTF-8."""
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | float):
        text = str(value)
    else:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    # Lone surrogates (valid in JSON, not in UTF-8) would fail at exec time.
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _tail_text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", "replace")
