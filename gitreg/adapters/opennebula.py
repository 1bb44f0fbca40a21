"""OpenNebula through its XML-RPC API (pyone, the optional extra ``gitreg[opennebula]``).

An image is created in the configured datastore from a template with
``NAME``, ``PATH`` (the verified file in the site cache: the OpenNebula
front-end must be able to read it, as with the CESGA handler), ``TYPE=OS``,
``DESCRIPTION``, the ``GITREG_*`` attributes and the ``VMCATCHER_EVENT_*``
attributes that handler wrote (every property of
``gitreg.adapters.properties``, upper-cased). Optionally a VM template
(``MEMORY`` from ``hv:ram_minimum``, ``CPU``/``VCPU`` from
``hv:core_minimum``, ``OS/ARCH``) points at it. OpenNebula has no "hidden"
flag: hiding restricts the permissions to the owner (``GITREG_HIDDEN``
remembers it). Retirement follows cloudkeeper-one: disable, rename
``EXPIRED_<time>_<name>``, restrict the permissions, and delete only once
no VM uses the image.

OpenNebula computes no digest that gitreg could compare, so the file is
read through SHA-512 right before it is registered; a mismatch registers
nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gitreg.adapters import diskimage
from gitreg.adapters.interface import (
    CloudBackend,
    CloudRefusedError,
    CloudUnreachableError,
    ImageRefusedError,
    RemoteImage,
    RemoteStatus,
    Upload,
)
from gitreg.errors import GitregError, UsageError
from gitreg.site.cloud_config import CloudConfig

# Image states (OpenNebula's image.h): READY, USED, USED_PERS count as active.
_ACTIVE = {1, 2, 8}
_DISABLED = 3
_ERROR = 5
READY_TIMEOUT = 3600.0
_OWNER_ONLY = "600"


def template_text(attributes: Mapping[str, Any]) -> str:
    """An OpenNebula template: ``KEY = "value"`` lines, vectors as ``KEY = [ A = "b" ]``."""
    lines = []
    for key, value in attributes.items():
        if isinstance(value, Mapping):
            inner = ", ".join(f'{k} = "{_escape(str(v))}"' for k, v in value.items())
            lines.append(f"{key} = [ {inner} ]")
        else:
            lines.append(f'{key} = "{_escape(str(value))}"')
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _permission_bits(octal: str) -> list[int]:
    """"640" -> chmod's nine flags (use, manage, admin for owner, group, others)."""
    bits: list[int] = []
    for digit in octal:
        value = int(digit, 8)
        bits += [int(bool(value & 4)), int(bool(value & 2)), int(bool(value & 1))]
    return bits


class OpenNebulaBackend(CloudBackend):
    kind = "opennebula"

    def __init__(self, server: Any, config: CloudConfig) -> None:
        super().__init__()
        self.server = server
        self.config = config

    @classmethod
    def from_config(cls, config: CloudConfig) -> OpenNebulaBackend:
        try:
            import pyone
        except ImportError:
            raise GitregError(f"cloud {config.name}: the OpenNebula adapter needs pyone",
                              hint="pip install 'gitreg[opennebula]'") from None
        if config.auth_file is None:
            raise UsageError(f"cloud {config.name}: auth_file is required (a file holding "
                             "'user:password', like ~/.one/one_auth)")
        try:
            session = config.auth_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cloud {config.name}: cannot read auth_file {config.auth_file}: "
                             f"{exc.strerror or exc}") from None
        return cls(pyone.OneServer(config.endpoint, session=session, timeout=300), config)

    def _call(self, method: str, *args: Any, write: bool = True) -> Any:
        import xmlrpc.client

        import pyone
        import requests

        if write:
            self.writes += 1
        else:
            self.reads += 1
        group, name = method.split(".")
        try:
            return getattr(getattr(self.server, group), name)(*args)
        except pyone.OneNoExistsException:
            raise
        except pyone.OneException as exc:
            raise CloudRefusedError(f"cloud {self.config.name}: {method}: {exc}") from None
        except (OSError, requests.RequestException, xmlrpc.client.ProtocolError) as exc:
            raise CloudUnreachableError(f"cloud {self.config.name}: {method}: "
                                        f"{type(exc).__name__}: {exc}") from None

    def list_images(self) -> list[RemoteImage]:
        pool = self._call("imagepool.info", -2, -1, -1, write=False)
        found = []
        for image in pool.IMAGE or []:
            template = dict(image.TEMPLATE or {})
            if "GITREG_CLOUD" in template:
                found.append(_remote(image, template))
        return found

    def upload(self, upload: Upload, *, name: str, visibility: str,
               properties: Mapping[str, str]) -> RemoteImage:
        if diskimage.file_sha512(upload.path) != upload.sha512:
            raise ImageRefusedError("the bytes read do not have the list's SHA-512: "
                                    "nothing registered")
        attributes: dict[str, Any] = {"NAME": name, "PATH": str(upload.path), "TYPE": "OS",
                                      "DESCRIPTION": properties.get("image_description", name),
                                      "GITREG_HIDDEN": "YES", "GITREG_VISIBILITY": visibility}
        attributes.update({k.upper(): v for k, v in properties.items()})
        image_id = int(self._call("image.allocate", template_text(attributes),
                                  self.config.datastore))
        self._chmod(image_id, _OWNER_ONLY)
        remote = self._wait_ready(image_id)
        if self.config.template:
            self._template(remote, properties)
        return remote

    def _wait_ready(self, image_id: int) -> RemoteImage:
        """The datastore copies the file asynchronously: wait until READY (or ERROR)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            image = self._call("image.info", image_id, False, write=False)
            if image.STATE in _ACTIVE:
                return _remote(image, dict(image.TEMPLATE or {}))
            if image.STATE == _ERROR or time.monotonic() > deadline:
                self._call("image.delete", image_id)
                raise ImageRefusedError(f"OpenNebula image {image_id} did not become READY "
                                        f"(state {image.STATE}): deleted")
            time.sleep(1.0)

    def _template(self, remote: RemoteImage, properties: Mapping[str, str]) -> None:
        cores = properties.get("gitreg_core_minimum") or "1"
        attributes: dict[str, Any] = {
            "NAME": remote.name, "MEMORY": properties.get("min_ram") or "512",
            "CPU": cores, "VCPU": cores, "DISK": {"IMAGE_ID": remote.id},
            "GITREG_CLOUD": self.config.name, "GITREG_IMAGE_ID": remote.id}
        if properties.get("architecture"):
            attributes["OS"] = {"ARCH": properties["architecture"]}
        self._call("template.allocate", template_text(attributes))

    def _chmod(self, image_id: int, octal: str) -> None:
        self._call("image.chmod", image_id, *_permission_bits(octal))

    def update(self, remote: RemoteImage, *, name: str | None = None,
               hidden: bool | None = None, visibility: str | None = None,
               properties: Mapping[str, str | None] | None = None) -> None:
        image_id = int(remote.id)
        if name is not None:
            self._call("image.rename", image_id, name)
            remote.name = name
        attributes: dict[str, str] = {}
        for key, value in (properties or {}).items():
            # A merge update cannot remove an attribute; an empty value stands for none.
            attributes[key.upper()] = value or ""
            if value is None:
                remote.properties.pop(key, None)
            else:
                remote.properties[key] = value
        if hidden is not None:
            attributes["GITREG_HIDDEN"] = "YES" if hidden else "NO"
            remote.hidden = hidden
        if visibility is not None:
            attributes["GITREG_VISIBILITY"] = visibility
            remote.visibility = visibility
        if attributes:
            self._call("image.update", image_id, template_text(attributes), 1)
        if hidden is not None:
            self._chmod(image_id, _OWNER_ONLY if hidden else self.config.permissions)

    def retired_name(self, remote: RemoteImage, version: str, since: datetime) -> str:
        if remote.name.startswith("EXPIRED_"):
            return remote.name
        return f"EXPIRED_{since.astimezone(UTC):%Y%m%dT%H%M%SZ}_{remote.name}"

    def deactivate(self, remote: RemoteImage) -> None:
        if remote.in_use:
            return  # OpenNebula disables only unused images; hidden, it gets no new VMs
        self._call("image.enable", int(remote.id), False)
        remote.status = "deactivated"

    def reactivate(self, remote: RemoteImage) -> None:
        self._call("image.enable", int(remote.id), True)
        remote.status = "active"

    def delete(self, remote: RemoteImage) -> None:
        import pyone

        pool = self._call("templatepool.info", -2, -1, -1, write=False)
        for template in pool.VMTEMPLATE or []:
            attrs = dict(template.TEMPLATE or {})
            if attrs.get("GITREG_IMAGE_ID") == remote.id and \
                    attrs.get("GITREG_CLOUD") == self.config.name:
                self._call("template.delete", int(template.ID), False)
        with contextlib.suppress(pyone.OneNoExistsException):
            self._call("image.delete", int(remote.id))


def _remote(image: Any, template: Mapping[str, Any]) -> RemoteImage:
    state = int(image.STATE)
    status: RemoteStatus = ("active" if state in _ACTIVE else
                            "deactivated" if state == _DISABLED else "incomplete")
    props = {k.lower(): str(v) for k, v in template.items()
             if k.startswith(("GITREG_", "VMCATCHER_EVENT_")) and k not in
             ("GITREG_HIDDEN", "GITREG_VISIBILITY") and isinstance(v, str) and v != ""}
    for key, value in template.items():
        if key.lower() in _PLAIN and isinstance(value, str) and value != "":
            props[key.lower()] = value
    return RemoteImage(id=str(image.ID), name=str(image.NAME), status=status,
                       hidden=template.get("GITREG_HIDDEN") == "YES",
                       visibility=str(template.get("GITREG_VISIBILITY", "")),
                       properties=props, sha512=props.get("gitreg_uploaded_sha512"),
                       in_use=int(image.RUNNING_VMS or 0) > 0)


_PLAIN = frozenset({"os_distro", "os_version", "architecture", "hypervisor_type",
                    "image_source", "image_description", "image_build_date", "provided_until",
                    "uuid_validity", "image_original_user", "replace_frequency", "min_ram",
                    "min_disk"})
