"""The site configuration: one TOML file that says what a cloud site subscribes to.

``load_config`` reads the file and checks every key before anything runs, so a
cron job fails on the first run with every mistake listed at once (each named
by its TOML path, e.g. ``registry[1].remotes``), never half-way through a sync.
Relative paths in the file are taken relative to the file's own directory, so
the same config works whatever directory cron starts in.
"""

from __future__ import annotations

import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from gitreg.errors import InvalidDocumentError, Problem, UsageError
from gitreg.site.cloud_config import CloudConfig, parse_cloud, unique_cloud_names
from gitreg.site.config_reader import NAME, Reader, as_text, did_you_mean

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
        return all(as_text(image.get(key)) == value for key, value in self.match.items())


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
    reader = Reader(base_dir)
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

    clouds = [parse_cloud(reader, f"cloud[{i}]", entry, seen)
              for i, entry in enumerate(reader.array_of_tables("cloud", document.get("cloud")))]
    unique_cloud_names(reader, clouds)

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


def _parse_registry(reader: Reader, where: str, entry: Mapping[str, Any]) -> RegistryConfig | None:
    before = len(reader.problems)
    reader.unknown_keys(where, entry, ("name", "remotes", "trust_root", "priority"))
    name = reader.string(f"{where}.name", entry.get("name"), required=True)
    if name is not None and not NAME.fullmatch(name):
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


def _parse_subscription(reader: Reader, where: str, entry: Mapping[str, Any],
                        registries: set[str]) -> Subscription | None:
    before = len(reader.problems)
    reader.unknown_keys(where, entry, ("registry", "imagelists", "images", "new_images", "match"))
    registry = reader.string(f"{where}.registry", entry.get("registry"), required=True)
    if registry is not None and registry not in registries:
        hint = did_you_mean(registry, registries)
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


def _parse_handler(reader: Reader, where: str, entry: Mapping[str, Any]) -> Handler | None:
    before = len(reader.problems)
    reader.unknown_keys(where, entry, ("command", "timeout", "events", "max_attempts"))
    command = reader.command(f"{where}.command", entry.get("command"))
    timeout = reader.duration(f"{where}.timeout", entry.get("timeout"),
                              default=DEFAULT_HANDLER_TIMEOUT)
    def event_name(path: str, text: str) -> str | None:
        if text in HANDLER_EVENTS:
            return text
        reader.problem(path, f"unknown event {text!r}{did_you_mean(text, HANDLER_EVENTS)} "
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


