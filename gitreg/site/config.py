"""The site configuration: one TOML file that says what a cloud site subscribes to.

``load_config`` reads the file and checks every key before anything runs, so a
cron job fails on the first run with every mistake listed at once (each named
by its TOML path, e.g. ``registry[1].remotes``), never half-way through a sync.
Relative paths in the file are taken relative to the file's own directory, so
the same config works whatever directory cron starts in.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import shlex
import tomllib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from gitreg.errors import InvalidDocumentError, Problem, UsageError

NewImages = Literal["accept", "refuse"]
Conflicts = Literal["report", "priority"]

DEFAULT_DOWNLOAD_WORKERS = 2
# A stalled mirror must not hold a worker for hours: below this average rate
# (bytes per second, measured by the transport) a download is abandoned.
DEFAULT_MIN_RATE = 10 * 1024
DEFAULT_DEADLINE = 4 * 3600.0
# vmcatcher gave every handler 10 s; Glance uploads from a handler need more.
DEFAULT_HANDLER_TIMEOUT = 30.0
MAX_DOWNLOAD_WORKERS = 64

STATE_DB_NAME = "state.sqlite"
REPOSITORIES_DIR_NAME = "repos"

_TRUST_ROOT_FINGERPRINT = re.compile(r"sha256:[0-9a-fA-F]{64}")
# Registry names become directory names of the local bare repositories.
_REGISTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*(?:/s)?\s*", re.IGNORECASE)
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class RegistryConfig:
    """One subscribed registry: where to fetch it and which trust root to pin."""

    name: str
    remotes: tuple[str, ...]
    # "sha256:<hex>" (lower case) or the absolute path of a policy.json.
    trust_root: str
    priority: int = 0

    @property
    def trust_root_is_fingerprint(self) -> bool:
        return self.trust_root.startswith("sha256:")


@dataclass(frozen=True)
class Subscription:
    """Which lists and images of one registry the site wants."""

    registry: str
    imagelists: tuple[str, ...] = ("*",)
    images: tuple[str, ...] = ()
    new_images: NewImages = "accept"
    match: Mapping[str, str] = field(default_factory=dict)

    def wants_list(self, list_uuid: str) -> bool:
        """True if the list is subscribed (``*`` or its UUID, case-insensitive)."""
        return "*" in self.imagelists or list_uuid.lower() in self.imagelists

    def wants_image(self, image_uuid: str, image: Mapping[str, Any]) -> bool:
        """True if the image passes the ``images`` and ``match`` filters.

        ``new_images`` is not judged here: it needs the history of the list,
        which the plan holds.
        """
        if self.images and image_uuid.lower() not in self.images:
            return False
        return all(_as_text(image.get(key)) == value for key, value in self.match.items())


# vmcatcher's event names (gitreg.site.events.EventType), in the order of a sync.
HANDLER_EVENTS: tuple[str, ...] = ("ProcessPrefix", "AvailablePrefix", "AvailablePostfix",
                                   "ExpirePrefix", "ExpirePostfix", "ProcessPostfix")
# A delivery that failed this many times is given up (and reported once):
# handlers commonly exit non-zero on events they do not handle.
DEFAULT_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Handler:
    """An event handler: a program run without a shell, with a time limit.

    ``events``: the event types it is given (others are never journaled for
    it); ``max_attempts``: deliveries that failed this often are given up
    (0: retried at every sync, forever).
    """

    command: tuple[str, ...]
    timeout: float = DEFAULT_HANDLER_TIMEOUT
    events: tuple[str, ...] = HANDLER_EVENTS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    @property
    def name(self) -> str:
        """The handler's identity in the event journal: its command line."""
        return shlex.join(self.command)


@dataclass(frozen=True)
class SiteConfig:
    """The whole site configuration, checked and with absolute paths."""

    source: Path
    state_dir: Path
    download_workers: int = DEFAULT_DOWNLOAD_WORKERS
    min_rate: int = DEFAULT_MIN_RATE
    deadline: float = DEFAULT_DEADLINE
    conflicts: Conflicts = "report"
    registries: tuple[RegistryConfig, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()
    handlers: tuple[Handler, ...] = ()
    clouds: tuple[CloudConfig, ...] = ()

    @property
    def state_db(self) -> Path:
        return self.state_dir / STATE_DB_NAME

    @property
    def repositories_dir(self) -> Path:
        """Where the local bare repository of each registry lives."""
        return self.state_dir / REPOSITORIES_DIR_NAME

    def registry(self, name: str) -> RegistryConfig:
        for registry in self.registries:
            if registry.name == name:
                return registry
        raise UsageError(f"{self.source}: no [[registry]] named {name!r}")

    def subscriptions_for(self, registry: str) -> tuple[Subscription, ...]:
        return tuple(s for s in self.subscriptions if s.registry == registry)


def load_config(path: str | Path) -> SiteConfig:
    """Read and check a site config; raise InvalidDocumentError with every problem."""
    source = Path(path).expanduser().absolute()
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"site config not found: {source}",
                         hint="pass --config with the path of your site TOML file") from None
    except OSError as exc:
        raise UsageError(f"cannot read site config {source}: {exc.strerror or exc}") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidDocumentError(
            [Problem("", f"not UTF-8 text (byte {exc.start})")], source=str(source)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidDocumentError(
            [Problem("", f"not valid TOML: {exc}")], source=str(source)) from None
    return parse_config(document, base_dir=source.parent, source=source)


def parse_config(document: Mapping[str, Any], *, base_dir: Path,
                 source: Path | None = None) -> SiteConfig:
    """Check a parsed TOML document; relative paths are resolved against base_dir.

    Apart from checking that a trust-root path exists, this does no I/O.
    """
    reader = _Reader(base_dir)
    reader.unknown_keys("", document, ("site", "registry", "subscription", "handler", "cloud"))

    site = reader.table("site", document.get("site"), required=True)
    reader.unknown_keys("site", site, ("state_dir", "download_workers", "min_rate",
                                       "deadline", "conflicts"))
    state_dir = reader.path("site.state_dir", site.get("state_dir"), required=True)
    workers = reader.integer("site.download_workers", site.get("download_workers"),
                             default=DEFAULT_DOWNLOAD_WORKERS, low=1, high=MAX_DOWNLOAD_WORKERS)
    min_rate = reader.size("site.min_rate", site.get("min_rate"), default=DEFAULT_MIN_RATE)
    deadline = reader.duration("site.deadline", site.get("deadline"), default=DEFAULT_DEADLINE)
    conflicts = reader.choice("site.conflicts", site.get("conflicts"),
                              ("report", "priority"), default="report")

    raw_registries = reader.array_of_tables("registry", document.get("registry"))
    if not document.get("registry"):
        reader.problem("registry", "at least one [[registry]] is required")
    registries = [_parse_registry(reader, f"registry[{i}]", entry)
                  for i, entry in enumerate(raw_registries)]
    # Names from the raw tables, so that a subscription to a registry whose
    # own table has a mistake is not reported a second time.
    seen: set[str] = set()
    for i, entry in enumerate(raw_registries):
        name = entry.get("name")
        if isinstance(name, str):
            if name in seen:
                reader.problem(f"registry[{i}].name", f"duplicate registry name {name!r}")
            seen.add(name)

    subscriptions = [
        _parse_subscription(reader, f"subscription[{i}]", entry, seen)
        for i, entry in enumerate(
            reader.array_of_tables("subscription", document.get("subscription")))
    ]
    handlers = [
        _parse_handler(reader, f"handler[{i}]", entry)
        for i, entry in enumerate(reader.array_of_tables("handler", document.get("handler")))
    ]

    clouds = [_parse_cloud(reader, f"cloud[{i}]", entry, seen)
              for i, entry in enumerate(reader.array_of_tables("cloud", document.get("cloud")))]
    _unique_cloud_names(reader, clouds)

    if reader.problems or state_dir is None:
        raise InvalidDocumentError(reader.problems, source=str(source) if source else "")
    return SiteConfig(
        source=source or base_dir,
        state_dir=state_dir,
        download_workers=workers,
        min_rate=min_rate,
        deadline=deadline,
        conflicts=cast(Conflicts, conflicts),
        registries=tuple(r for r in registries if r is not None),
        subscriptions=tuple(s for s in subscriptions if s is not None),
        handlers=tuple(h for h in handlers if h is not None),
        clouds=tuple(c for c in clouds if c is not None),
    )


def _parse_registry(reader: _Reader, where: str, entry: Mapping[str, Any]) -> RegistryConfig | None:
    before = len(reader.problems)
    reader.unknown_keys(where, entry, ("name", "remotes", "trust_root", "priority"))
    name = reader.string(f"{where}.name", entry.get("name"), required=True)
    if name is not None and not _REGISTRY_NAME.fullmatch(name):
        reader.problem(f"{where}.name", f"{name!r} is not a valid registry name (letters, "
                       "digits, '.', '_', '-'; at most 64; starts with a letter or digit)")
    remotes = reader.string_list(f"{where}.remotes", entry.get("remotes"), required=True,
                                 non_empty=True, item=reader.remote)
    if remotes is not None and len(set(remotes)) != len(remotes):
        reader.problem(f"{where}.remotes", "lists the same remote twice")
    trust_root = reader.trust_root(f"{where}.trust_root", entry.get("trust_root"))
    priority = reader.integer(f"{where}.priority", entry.get("priority"), default=0)
    if len(reader.problems) != before or name is None or remotes is None or trust_root is None:
        return None
    return RegistryConfig(name=name, remotes=tuple(remotes), trust_root=trust_root,
                          priority=priority)


def _parse_subscription(reader: _Reader, where: str, entry: Mapping[str, Any],
                        registries: set[str]) -> Subscription | None:
    before = len(reader.problems)
    reader.unknown_keys(where, entry, ("registry", "imagelists", "images", "new_images", "match"))
    registry = reader.string(f"{where}.registry", entry.get("registry"), required=True)
    if registry is not None and registry not in registries:
        hint = _did_you_mean(registry, registries)
        reader.problem(f"{where}.registry", f"no [[registry]] named {registry!r}{hint}")
    imagelists = reader.string_list(f"{where}.imagelists", entry.get("imagelists"),
                                    default=["*"], non_empty=True, item=reader.list_selector)
    if imagelists is not None and "*" in imagelists and len(imagelists) > 1:
        reader.problem(f"{where}.imagelists", "'*' already means every list; give it alone")
    images = reader.string_list(f"{where}.images", entry.get("images"), default=[],
                                item=reader.uuid_text)
    new_images = reader.choice(f"{where}.new_images", entry.get("new_images"),
                               ("accept", "refuse"), default="accept")
    match = reader.string_table(f"{where}.match", entry.get("match"))
    if len(reader.problems) != before or registry is None or imagelists is None \
            or images is None or match is None:
        return None
    return Subscription(registry=registry, imagelists=tuple(imagelists), images=tuple(images),
                        new_images=cast(NewImages, new_images),
                        match=match)


def _parse_handler(reader: _Reader, where: str, entry: Mapping[str, Any]) -> Handler | None:
    before = len(reader.problems)
    reader.unknown_keys(where, entry, ("command", "timeout", "events", "max_attempts"))
    command = reader.command(f"{where}.command", entry.get("command"))
    timeout = reader.duration(f"{where}.timeout", entry.get("timeout"),
                              default=DEFAULT_HANDLER_TIMEOUT)
    def event_name(path: str, text: str) -> str | None:
        if text in HANDLER_EVENTS:
            return text
        reader.problem(path, f"unknown event {text!r}{_did_you_mean(text, HANDLER_EVENTS)} "
                             f"(events: {', '.join(HANDLER_EVENTS)})")
        return None

    events = reader.string_list(f"{where}.events", entry.get("events"),
                                default=list(HANDLER_EVENTS), non_empty=True,
                                item=event_name)
    attempts = reader.integer(f"{where}.max_attempts", entry.get("max_attempts"),
                              default=DEFAULT_MAX_ATTEMPTS, low=0, high=1000)
    if len(reader.problems) != before or command is None or events is None:
        return None
    return Handler(command=tuple(command), timeout=timeout, max_attempts=attempts,
                   events=tuple(e for e in HANDLER_EVENTS if e in events))


# --- [[cloud]]: where verified images go (gitreg.adapters) ----------------------

CloudType = Literal["glance", "opennebula"]
Visibility = Literal["private", "shared", "community", "public"]
CLOUD_TYPES = ("glance", "opennebula")
VISIBILITIES = ("private", "shared", "community", "public")
UploadMethod = Literal["stream", "web-download"]
UPLOAD_METHODS = ("stream", "web-download")
# Glance's disk formats (Image API v2 schema); OpenNebula takes the same files.
DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso",
                "ploop")
DEFAULT_RETIRE = {"hide": 0.0, "deactivate": 7 * 86400.0, "delete": 30 * 86400.0}
_CLOUD_KEYS = ("name", "type", "cloud", "registries", "disk_formats", "convert", "visibility",
               "projects", "retire", "endpoint", "auth_file", "datastore",
               "template", "permissions", "upload", "verify_plugin")


@dataclass(frozen=True)
class CloudConfig:
    """One ``[[cloud]]``: a Glance (a clouds.yaml entry) or an OpenNebula (XML-RPC)."""

    name: str
    type: CloudType
    cloud: str | None = None  # glance: the clouds.yaml entry
    registries: tuple[str, ...] = ()  # empty: every registry
    disk_formats: tuple[str, ...] = ()  # empty: any format as it is
    convert: bool = True
    # glance: convert = "glance" (Glance's image-conversion import plugin converts,
    # not a local qemu-img), upload = "web-download" (Glance fetches hv:uri itself).
    glance_converts: bool = False
    upload: UploadMethod = "stream"
    # glance: the Glance runs contrib/glance-verify-plugin (gitreg_verify), which
    # refuses imported bytes before activation; upload = "web-download" needs it.
    verify_plugin: bool = False
    visibility: Visibility = "private"
    projects: Mapping[str, str] = field(default_factory=dict)  # VO -> project id
    hide_after: float = DEFAULT_RETIRE["hide"]
    deactivate_after: float = DEFAULT_RETIRE["deactivate"]
    delete_after: float = DEFAULT_RETIRE["delete"]
    # opennebula: XML-RPC endpoint, a file holding "user:password", the datastore,
    # whether to create a VM template, and the octal permissions of new images.
    endpoint: str | None = None
    auth_file: Path | None = None
    datastore: int = 1
    template: bool = False
    permissions: str = "600"

    def wants_registry(self, registry: str) -> bool:
        return not self.registries or registry in self.registries


def _parse_cloud(reader: _Reader, where: str, entry: Mapping[str, Any],
                 registries: set[str]) -> CloudConfig | None:
    before = len(reader.problems)
    reader.unknown_keys(where, entry, _CLOUD_KEYS)
    name = reader.string(f"{where}.name", entry.get("name"), required=True)
    if name is not None and not _REGISTRY_NAME.fullmatch(name):
        reader.problem(f"{where}.name", f"{name!r} is not a valid cloud name (letters, digits, "
                       "'.', '_', '-'; at most 64; starts with a letter or digit)")
    kind = reader.choice(f"{where}.type", entry.get("type"), CLOUD_TYPES, default="glance")
    if entry.get("type") is None:
        reader.problem(f"{where}.type", f"missing (required): one of {', '.join(CLOUD_TYPES)}")
    chosen = reader.string_list(f"{where}.registries", entry.get("registries"), default=[])
    for item in chosen or []:
        if item not in registries:
            reader.problem(f"{where}.registries",
                           f"no [[registry]] named {item!r}{_did_you_mean(item, registries)}")
    formats = reader.string_list(f"{where}.disk_formats", entry.get("disk_formats"), default=[])
    for item in formats or []:
        if item not in DISK_FORMATS:
            reader.problem(f"{where}.disk_formats", f"unknown disk format {item!r} (one of "
                           f"{', '.join(DISK_FORMATS)})")
    convert = entry.get("convert", True)
    if not isinstance(convert, bool) and convert != "glance":
        shown = repr(convert) if isinstance(convert, str) else _kind(convert)
        reader.problem(f"{where}.convert", f'must be true, false or "glance", not {shown}')
    upload = reader.choice(f"{where}.upload", entry.get("upload"), UPLOAD_METHODS,
                           default="stream")
    if kind != "glance" and (convert == "glance" or upload != "stream"):
        reader.problem(f"{where}.convert" if convert == "glance" else f"{where}.upload",
                       'convert = "glance" and upload = "web-download" are Glance\'s import '
                       f"methods; the {kind} adapter takes neither")
    verify_plugin = entry.get("verify_plugin", False)
    if not isinstance(verify_plugin, bool):
        reader.problem(f"{where}.verify_plugin",
                       f"must be true or false, not {_kind(verify_plugin)}")
    elif kind != "glance" and verify_plugin:
        reader.problem(f"{where}.verify_plugin", f"is Glance's import plugin; the {kind} "
                       "adapter has none")
    elif kind == "glance" and upload == "web-download" and not verify_plugin:
        # Glance activates a web-download image when its task ends, before any
        # client can compare digests: only the plugin checks before that.
        reader.problem(f"{where}.upload", 'upload = "web-download" needs verify_plugin = true '
                       "(Glance running gitreg's import plugin, contrib/glance-verify-plugin): "
                       "without it Glance makes fetched bytes an active image before they "
                       "can be checked")
    visibility = reader.choice(f"{where}.visibility", entry.get("visibility"), VISIBILITIES,
                               default="private")
    projects = reader.string_table(f"{where}.projects", entry.get("projects"))
    retire = _retire_periods(reader, f"{where}.retire", entry.get("retire"))
    cloud = reader.string(f"{where}.cloud", entry.get("cloud"), required=kind == "glance")
    endpoint = reader.string(f"{where}.endpoint", entry.get("endpoint"),
                             required=kind == "opennebula")
    auth_file = reader.path(f"{where}.auth_file", entry.get("auth_file"))
    datastore = reader.integer(f"{where}.datastore", entry.get("datastore"), default=1, low=0)
    template = entry.get("template", False)
    if not isinstance(template, bool):
        reader.problem(f"{where}.template", f"must be true or false, not {_kind(template)}")
    permissions = reader.string(f"{where}.permissions", entry.get("permissions")) or "600"
    if not re.fullmatch(r"[0-7]{3}", permissions):
        reader.problem(f"{where}.permissions", f"{permissions!r} is not three octal digits "
                       "(owner, group, others, as in chmod: '640')")
    if len(reader.problems) != before or name is None or chosen is None or formats is None \
            or projects is None:
        return None
    return CloudConfig(
        name=name, type=cast(CloudType, kind), cloud=cloud, registries=tuple(chosen),
        disk_formats=tuple(formats), convert=convert is not False,
        glance_converts=convert == "glance", upload=cast(UploadMethod, upload),
        verify_plugin=verify_plugin is True,
        visibility=cast(Visibility, visibility), projects=projects,
        hide_after=retire["hide"], deactivate_after=retire["deactivate"],
        delete_after=retire["delete"], endpoint=endpoint,
        auth_file=auth_file, datastore=datastore, template=bool(template),
        permissions=permissions)


def _retire_periods(reader: _Reader, where: str, value: Any) -> dict[str, float]:
    """Grace periods after an image stops being valid; "0d" (at once) is allowed."""
    periods = dict(DEFAULT_RETIRE)
    table = reader.table(where, value)
    reader.unknown_keys(where, table, tuple(periods))
    for key, raw in table.items():
        if key not in periods:
            continue
        if raw in (0, "0", "0s", "0d", "0h", "0m"):
            periods[key] = 0.0
        else:
            periods[key] = reader.duration(f"{where}.{key}", raw, default=periods[key])
    if not periods["hide"] <= periods["deactivate"] <= periods["delete"]:
        reader.problem(where, "needs hide <= deactivate <= delete: an image is hidden, then "
                       "deactivated, then deleted")
    return periods


def _unique_cloud_names(reader: _Reader, clouds: Sequence[CloudConfig | None]) -> None:
    seen: set[str] = set()
    for i, cloud in enumerate(clouds):
        if cloud is None:
            continue
        if cloud.name in seen:
            reader.problem(f"cloud[{i}].name", f"duplicate cloud name {cloud.name!r}")
        seen.add(cloud.name)


class _Reader:
    """Collects problems while reading values, so that all are reported at once."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def unknown_keys(self, where: str, table: Mapping[str, Any], known: Sequence[str]) -> None:
        for key in table:
            if key not in known:
                path = f"{where}.{key}" if where else key
                self.problem(path, f"unknown key{_did_you_mean(key, known)}")

    def table(self, path: str, value: Any, *, required: bool = False) -> Mapping[str, Any]:
        if value is None:
            if required:
                self.problem(path, f"missing [{path}] table")
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be a table ([{path}]), not {_kind(value)}")
            return {}
        return value

    def array_of_tables(self, path: str, value: Any) -> list[Mapping[str, Any]]:
        if value is None:
            return []
        if isinstance(value, dict):
            self.problem(path, f"must be an array of tables: write [[{path}]], not [{path}]")
            return []
        if not isinstance(value, list):
            self.problem(path, f"must be an array of tables ([[{path}]]), not {_kind(value)}")
            return []
        tables: list[Mapping[str, Any]] = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                tables.append(item)
            else:
                self.problem(f"{path}[{i}]", f"must be a table, not {_kind(item)}")
        return tables

    def string(self, path: str, value: Any, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.problem(path, "missing (required)")
            return None
        if not isinstance(value, str):
            self.problem(path, f"must be a string, not {_kind(value)}")
            return None
        if not value.strip():
            self.problem(path, "must not be empty")
            return None
        return value

    def path(self, path: str, value: Any, *, required: bool = False) -> Path | None:
        text = self.string(path, value, required=required)
        if text is None:
            return None
        if "\x00" in text:
            self.problem(path, "must not contain a NUL character")
            return None
        return (self.base_dir / Path(text).expanduser()).absolute()

    def integer(self, path: str, value: Any, *, default: int, low: int | None = None,
                high: int | None = None) -> int:
        if value is None:
            return default
        # TOML booleans are Python ints: reject them explicitly.
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"must be an integer, not {_kind(value)}")
            return default
        if (low is not None and value < low) or (high is not None and value > high):
            self.problem(path, f"must be between {low} and {high}, not {value}")
            return default
        return value

    def choice(self, path: str, value: Any, choices: Sequence[str], *, default: str) -> str:
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            shown = repr(value) if isinstance(value, str) else _kind(value)
            self.problem(path, f"must be one of {', '.join(map(repr, choices))}, not {shown}")
            return default
        return value

    def size(self, path: str, value: Any, *, default: int) -> int:
        """A rate in bytes per second: an integer, or text such as "64 KiB/s"."""
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            amount = float(value)
        elif isinstance(value, str) and (m := _SIZE.fullmatch(value)):
            amount = float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
        else:
            self.problem(path, "must be bytes per second: an integer or text like '64 KiB/s'")
            return default
        if amount < 1:
            self.problem(path, "must be at least 1 byte per second")
            return default
        return int(amount)

    def duration(self, path: str, value: Any, *, default: float) -> float:
        """Seconds: a number, or text such as "90s", "30m", "2h"."""
        if value is None:
            return default
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION.fullmatch(value)):
            seconds = float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "s").lower()]
        else:
            self.problem(path, "must be seconds: a number or text like '90s', '30m', '2h'")
            return default
        if not seconds > 0 or seconds == float("inf"):
            self.problem(path, "must be a positive, finite number of seconds")
            return default
        return seconds

    def string_list(self, path: str, value: Any, *, required: bool = False,
                    default: list[str] | None = None, non_empty: bool = False,
                    item: Callable[[str, str], str | None] | None = None) -> list[str] | None:
        if value is None:
            if required:
                self.problem(path, "missing (required)" if not non_empty
                             else "must be a non-empty list")
                return None
            return list(default or [])
        if not isinstance(value, list):
            self.problem(path, f"must be a list of strings, not {_kind(value)}")
            return None
        if non_empty and not value:
            self.problem(path, "must be a non-empty list")
            return None
        out: list[str] = []
        ok = True
        for i, element in enumerate(value):
            text = self.string(f"{path}[{i}]", element, required=True)
            if text is not None and item is not None:
                text = item(f"{path}[{i}]", text)
            if text is None:
                ok = False
            else:
                out.append(text)
        return out if ok else None

    def string_table(self, path: str, value: Any) -> dict[str, str] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be a table of strings ([{path}]), not {_kind(value)}")
            return None
        out: dict[str, str] = {}
        ok = True
        for key, element in value.items():
            if not isinstance(element, str):
                self.problem(f'{path}."{key}"', f"must be a string, not {_kind(element)}")
                ok = False
            else:
                out[key] = element
        return out if ok else None

    def remote(self, path: str, text: str) -> str | None:
        """A Git remote: a URL or scp-like address as is; a local path made absolute."""
        if "\x00" in text or any(c in text for c in "\r\n"):
            self.problem(path, "must not contain control characters")
            return None
        if "://" in text:
            scheme = text.split("://", 1)[0].lower()
            if scheme not in ("http", "https", "git", "ssh", "file"):
                self.problem(path, f"unsupported URL scheme {scheme!r} "
                             "(use http, https, git, ssh, file or a local path)")
                return None
            return text
        if text.startswith("-"):
            # Git would read it as an option.
            self.problem(path, f"{text!r} looks like a command-line option, not a remote")
            return None
        if re.match(r"[^/]+:", text) and not Path(text).is_absolute():
            return text  # scp-like user@host:path
        return str((self.base_dir / Path(text).expanduser()).absolute())

    def trust_root(self, path: str, value: Any) -> str | None:
        text = self.string(path, value, required=True)
        if text is None:
            return None
        if text.lower().startswith("sha256:"):
            if not _TRUST_ROOT_FINGERPRINT.fullmatch(text):
                self.problem(path, "a fingerprint must be 'sha256:' and 64 hex digits "
                             "(as printed by `gitreg init`)")
                return None
            return text.lower()
        file = self.path(path, text)
        if file is None:
            return None
        if not file.is_file():
            self.problem(path, f"policy file not found: {file} "
                         "(give 'sha256:<hex>' or the path of a policy.json)")
            return None
        return str(file)

    def list_selector(self, path: str, text: str) -> str | None:
        """``*``, a list UUID (normalised), or a name: a list's title or an image series.

        Names are resolved at each sync against the registry (gitreg.site.names).
        """
        if text == "*":
            return text
        if len(text) == 36:
            with contextlib.suppress(ValueError):
                return str(uuid.UUID(text))
        return text

    def uuid_text(self, path: str, text: str) -> str | None:
        # Only the canonical 8-4-4-4-12 form: uuid.UUID also takes braces and URNs.
        if len(text) == 36:
            try:
                return str(uuid.UUID(text))
            except ValueError:
                pass
        self.problem(path, f"{text!r} is not a UUID")
        return None

    def command(self, path: str, value: Any) -> list[str] | None:
        if value is None:
            self.problem(path, "missing (required)")
            return None
        if isinstance(value, str):
            try:
                words = shlex.split(value)
            except ValueError as exc:
                self.problem(path, f"cannot be split into words: {exc}")
                return None
            if not words:
                self.problem(path, "must not be empty")
                return None
        elif isinstance(value, list):
            words = []
            for i, element in enumerate(value):
                if not isinstance(element, str):
                    self.problem(f"{path}[{i}]", f"must be a string, not {_kind(element)}")
                    return None
                words.append(element)
            if not words or not words[0]:
                self.problem(path, "must be a non-empty list with the program first")
                return None
        else:
            self.problem(path, f"must be a string or a list of strings, not {_kind(value)}")
            return None
        if any("\x00" in w for w in words):
            self.problem(path, "must not contain a NUL character")
            return None
        program = Path(words[0]).expanduser()
        # A bare name is looked up on PATH; anything with a slash is a file
        # path, relative to the config file like every other path in it.
        if "/" in words[0] and not program.is_absolute():
            words[0] = str((self.base_dir / program).absolute())
        elif words[0].startswith("~"):
            words[0] = str(program)
        return words


def _did_you_mean(word: str, choices: Sequence[str] | set[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table"}
    for type_, name in kinds.items():
        if isinstance(value, type_):
            return name
    return type(value).__name__  # dates and times


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
