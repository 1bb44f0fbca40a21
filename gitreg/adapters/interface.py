"""The cloud adapter plug-in family: what every cloud back-end implements.

A back-end (``glance.py``, ``opennebula.py``) knows how to talk to one kind of
cloud: list the images gitreg registered there, upload one, change its name,
visibility and properties, hide, deactivate, reactivate and delete it.
``gitreg.adapters.reconcile`` decides what to do, the same for every cloud:
it gets the verified images (files in ``cache/``, with their list and
metadata) and the site's records of what it registered, and reconciles. No
adapter ever decides trust: an image reaches an adapter only once the site
verified its list and its bytes.

Errors: ``CloudUnreachableError`` (the cloud is down or refused us: the sync
reports it, exits with the operational code, and the next run converges) and
``ImageRefusedError`` (this one image cannot be registered: wrong format, an
unsafe qcow2, a hash mismatch after upload; the others carry on).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from gitreg.errors import GitregError, RejectedError, UnreachableError

# What the reconciler needs to know of a cloud image's lifecycle.
RemoteStatus = Literal["active", "deactivated", "incomplete"]


class CloudUnreachableError(UnreachableError):
    """The cloud did not answer, or answered with a server error."""


class CloudRefusedError(GitregError):
    """The cloud answered a request with an error the sync cannot work around."""


class ImageRefusedError(RejectedError):
    """This image cannot become a cloud image (its reason is the message)."""


class ImportFailedError(ImageRefusedError):
    """The cloud's own import of this image failed (fetch, conversion): tried again next run."""


@dataclass(frozen=True)
class VerifiedImage:
    """An image the site verified and holds in cache/, as an adapter sees it."""

    uuid: str
    registry: str
    list_uuid: str
    list_version: str
    sha512: str
    size: int
    path: Path
    metadata: Mapping[str, Any]
    # The list's own keys; None when this sync did not read the list (its
    # registry was unreachable): then the image's properties are left alone.
    list_keys: Mapping[str, Any] | None
    vo: str | None
    commit: str | None = None


@dataclass
class RemoteImage:
    """One image in the cloud that carries gitreg's identifiers."""

    id: str
    name: str
    status: RemoteStatus
    hidden: bool
    visibility: str
    # The image's properties as strings (gitreg_*, os_*, vmcatcher_event_*, ...).
    properties: dict[str, str] = field(default_factory=dict)
    # The digest the cloud computed of the bytes it stores (None: unknown yet).
    sha512: str | None = None
    # True when the cloud knows instances use it (OpenNebula); Glance cannot tell.
    in_use: bool = False

    @property
    def image_uuid(self) -> str:
        return self.properties.get("gitreg_image", "")

    @property
    def list_sha512(self) -> str:
        return self.properties.get("gitreg_sha512", "")


@dataclass(frozen=True)
class Upload:
    """What to upload: a file, its format, and the digest its bytes must have."""

    path: Path
    disk_format: str
    size: int
    sha512: str
    # Glance's web-download: the cloud fetches the bytes from this URL (hv:uri) itself.
    uri: str | None = None
    # Glance's image-conversion plugin turns the imported bytes into this format,
    # whose digest (computed locally) is ``converted_sha512``.
    convert_to: str | None = None
    converted_sha512: str | None = None

    @property
    def stored_sha512(self) -> str:
        """The digest of the bytes the cloud must end up storing."""
        return self.converted_sha512 or self.sha512

    @property
    def stored_format(self) -> str:
        return self.convert_to or self.disk_format


class CloudBackend(ABC):
    """One cloud: the primitive operations the reconciler combines.

    ``reads`` and ``writes`` count the requests made, so a sync can show that
    a run with nothing new wrote nothing.
    """

    kind: str = ""

    def __init__(self) -> None:
        self.reads = 0
        self.writes = 0

    @abstractmethod
    def list_images(self) -> list[RemoteImage]:
        """Every image of this cloud that gitreg registered (tagged as gitreg's)."""

    @abstractmethod
    def upload(self, upload: Upload, *, name: str, visibility: str,
               properties: Mapping[str, str]) -> RemoteImage:
        """Create a hidden image and stream the file into it; return it as the cloud sees it.

        Implementations stop the upload before its last byte if the bytes read
        do not have ``upload.sha512``, so wrong bytes never complete an image.
        """

    @abstractmethod
    def update(self, remote: RemoteImage, *, name: str | None = None,
               hidden: bool | None = None, visibility: str | None = None,
               properties: Mapping[str, str | None] | None = None) -> None:
        """Change what is given; a property set to None is removed."""

    @abstractmethod
    def deactivate(self, remote: RemoteImage) -> None:
        """Make the image unusable for new instances, keeping its bytes."""

    @abstractmethod
    def reactivate(self, remote: RemoteImage) -> None:
        """Undo ``deactivate``."""

    @abstractmethod
    def delete(self, remote: RemoteImage) -> None:
        """Remove the image and its bytes (absent already counts as done)."""

    def retired_name(self, remote: RemoteImage, version: str, since: datetime) -> str:
        """The name of an image no longer valid: ``Name (version)`` unless a cloud says else."""
        suffix = f" ({version})"
        return remote.name if not version or remote.name.endswith(suffix) \
            else remote.name + suffix

    def set_members(self, remote: RemoteImage, projects: frozenset[str]) -> None:  # noqa: B027
        """Share the image with exactly these projects (clouds without sharing ignore it)."""
