"""OpenStack Glance through the Image API v2, authenticated from clouds.yaml.

openstacksdk (the optional extra ``gitreg[glance]``) reads the ``clouds.yaml``
every OpenStack tool reads (``OS_CLIENT_CONFIG_FILE`` honoured) and gives a
keystoneauth session for any of its auth types (Keystone password,
application credentials, OIDC client credentials, ``none``). The Image API
calls themselves are made here, one request each, so that a sync makes
exactly the calls it needs and counts them, and an upload streams from the
file (1 MiB reads, never the image in memory).

The upload reads the file through a SHA-512 check that withholds the last
block until the digest of everything read matches: bytes that are not the
list's never complete a Glance image. After the upload the image's
``os_hash_value`` (Glance's ``hashing_algorithm`` must be sha512, its
default) is compared as well; the reconciler deletes it on a mismatch.

Glance's interoperable import (Image API v2.6) is the other way in: with
``web-download`` Glance fetches ``hv:uri`` itself; with ``glance-direct`` the
file is staged through the same withholding check. Either way Glance's
image-conversion plugin, where the site has one, converts before the image
goes active. Glance takes no expected digest for an import and activates the
image as soon as its task ends; gitreg's import plugin
(contrib/glance-verify-plugin, ``verify_plugin = true``, required for
web-download) compares the staged bytes with ``gitreg_size`` and
``gitreg_sha512`` inside the task, before activation, fails the task on a
mismatch and otherwise records ``gitreg_import_verified``, without which an
imported image is deleted. An imported image is still created private and
hidden and its ``os_hash_value`` checked after the task: only then does it
get its visibility.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Mapping
from typing import Any

from gitreg.adapters.interface import (
    CloudBackend,
    CloudRefusedError,
    CloudUnreachableError,
    ImageRefusedError,
    ImportFailedError,
    RemoteImage,
    RemoteStatus,
    Upload,
)
from gitreg.adapters.properties import GITREG_TAG
from gitreg.errors import GitregError, UsageError
from gitreg.site.cloud_config import CloudConfig

READ_BLOCK = 1024 * 1024
TIMEOUT = 300.0
PAGE = 1000
PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
IMPORT_TIMEOUT = 3600.0
# The protocol with contrib/glance-verify-plugin (which cannot import gitreg):
# the start of its task message on wrong bytes, and the property it sets when
# the staged bytes had the image's gitreg_sha512.
PLUGIN_REFUSED = "gitreg_verify refused"
PLUGIN_VERIFIED = "gitreg_import_verified"
# Polling an import: first after 0.2 s, then 1.5 times longer each time, at most 5 s.
_POLL_FIRST, _POLL_GROWTH, _POLL_MAX = 0.2, 1.5, 5.0
_TASK_END_WAIT = 30.0
# Image fields that are not free-form properties.
_CORE = frozenset({"id", "name", "status", "visibility", "os_hidden", "tags", "size",
                   "virtual_size", "checksum", "os_hash_algo", "os_hash_value",
                   "container_format", "disk_format", "owner", "protected", "created_at",
                   "updated_at", "self", "file", "schema", "stores", "locations", "direct_url",
                   "min_ram", "min_disk"})
_INTEGER_FIELDS = frozenset({"min_ram", "min_disk"})


class _WrongBytesError(Exception):
    """Raised from inside the request body: aborts the upload before its last byte."""


class _CheckedFile:
    """A file-like body of a known length whose last block is sent only if the digest matches."""

    def __init__(self, upload: Upload) -> None:
        self.upload = upload
        self.file = upload.path.open("rb")
        self.sent = 0
        self.digest = hashlib.sha512()

    def __len__(self) -> int:
        return self.upload.size - self.sent

    def read(self, size: int = -1) -> bytes:
        # Whatever http.client asks for, 1 MiB reads: fewer calls, same memory bound.
        block = self.file.read(min(READ_BLOCK, self.upload.size - self.sent))
        if not block and self.sent < self.upload.size:
            raise _WrongBytesError(f"file ended after {self.sent} of {self.upload.size} bytes")
        self.sent += len(block)
        self.digest.update(block)
        if self.sent >= self.upload.size and block:
            if self.file.read(1):
                raise _WrongBytesError(f"file is longer than {self.upload.size} bytes")
            if self.digest.hexdigest() != self.upload.sha512:
                raise _WrongBytesError("the bytes read do not have the list's SHA-512")
        return block

    def close(self) -> None:
        self.file.close()


class GlanceBackend(CloudBackend):
    kind = "glance"

    def __init__(self, session: Any, endpoint: str, *, cloud: str,
                 verify_plugin: bool = False) -> None:
        super().__init__()
        self.session = session
        self.endpoint = endpoint.rstrip("/").removesuffix("/v2")
        self.cloud = cloud
        self.verify_plugin = verify_plugin
        self._errors = _transport_errors()

    @classmethod
    def from_config(cls, config: CloudConfig) -> GlanceBackend:
        """Authenticate as clouds.yaml says for ``config.cloud``."""
        try:
            from openstack import config as os_config
            from openstack import exceptions as os_exceptions
        except ImportError:
            raise GitregError(f"cloud {config.name}: the Glance adapter needs openstacksdk",
                              hint="pip install 'gitreg[glance]'") from None
        try:
            region = os_config.OpenStackConfig().get_one(cloud=config.cloud)
            session = region.get_session()
            endpoint = region.get_endpoint("image") or session.get_endpoint(
                service_type="image", interface=region.get_interface(),
                region_name=region.get_region_name())
        except os_exceptions.ConfigException as exc:
            raise UsageError(f"cloud {config.name}: clouds.yaml entry {config.cloud!r}: {exc}",
                             hint="check clouds.yaml (or OS_CLIENT_CONFIG_FILE)") from None
        except _transport_errors() as exc:
            raise CloudUnreachableError(f"cloud {config.name}: cannot authenticate with "
                                        f"{config.cloud!r}: {exc}") from None
        if not endpoint:
            raise UsageError(f"cloud {config.name}: no image endpoint for {config.cloud!r}",
                             hint="set image_endpoint_override in clouds.yaml")
        return cls(session, str(endpoint), cloud=config.name,
                   verify_plugin=config.verify_plugin)

    # --- HTTP -----------------------------------------------------------------

    def _request(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 204),
                 retries: int = 2, **kwargs: Any) -> Any:
        if method == "GET":
            self.reads += 1
        else:
            self.writes += 1
        url = path if path.startswith("http") else f"{self.endpoint}{path}"
        try:
            # A kept-alive connection the server has closed fails at once; a
            # retry on a new one is safe for every call but the file upload.
            response = self.session.request(url, method, raise_exc=False,
                                            connect_retries=retries, timeout=TIMEOUT, **kwargs)
        except self._errors as exc:
            raise CloudUnreachableError(f"cloud {self.cloud}: {method} {path}: "
                                        f"{type(exc).__name__}: {exc}") from None
        if response.status_code in ok:
            return response
        detail = response.text.strip().replace("\n", " ")[:300]
        message = f"cloud {self.cloud}: {method} {path}: HTTP {response.status_code} {detail}"
        if response.status_code >= 500:
            raise CloudUnreachableError(message)
        raise CloudRefusedError(message)

    # --- the backend -----------------------------------------------------------

    def list_images(self) -> list[RemoteImage]:
        found: list[RemoteImage] = []
        for hidden in ("false", "true"):
            path: str | None = (f"/v2/images?tag={GITREG_TAG}&visibility=all"
                                f"&os_hidden={hidden}&limit={PAGE}")
            while path:
                body = self._request("GET", path).json()
                found.extend(_remote(image) for image in body.get("images", []))
                path = body.get("next")
        return found

    def upload(self, upload: Upload, *, name: str, visibility: str,
               properties: Mapping[str, str]) -> RemoteImage:
        method = "web-download" if upload.uri else "glance-direct" if upload.convert_to \
            else None
        body: dict[str, Any] = {"name": name, "disk_format": upload.disk_format,
                                "container_format": "bare",
                                # Imported bytes are checked only once active: until
                                # then no other project may see the image.
                                "visibility": "private" if method else visibility,
                                "os_hidden": True, "tags": [GITREG_TAG]}
        for key, value in properties.items():
            body[key] = int(value) if key in _INTEGER_FIELDS else value
        created = _remote(self._request("POST", "/v2/images", json=body).json())
        if method is None:
            self._send_file(created, upload, "file")
            return self._get(created.id)
        if method == "glance-direct":
            self._send_file(created, upload, "stage")
        request: dict[str, Any] = {"name": method}
        if upload.uri:
            request["uri"] = upload.uri
        try:
            self._request("POST", f"/v2/images/{created.id}/import", json={"method": request},
                          ok=(202,))
        except CloudRefusedError as exc:
            self.delete(created)
            raise ImportFailedError(f"Glance refused the {method} import: {exc.message}; "
                                    "image deleted") from None
        return self._wait_import(created, method, upload)

    def _send_file(self, created: RemoteImage, upload: Upload, target: str) -> None:
        """Stream the file into the image (``file``) or its staging area (``stage``)."""
        data = _CheckedFile(upload)
        # The body cannot be sent twice: send it on a fresh connection, not on a
        # kept-alive one the server may have closed (uWSGI closes after a body).
        pool = getattr(self.session, "session", None)
        if pool is not None:
            pool.close()
        try:
            self._request("PUT", f"/v2/images/{created.id}/{target}", data=data, retries=0,
                          headers={"Content-Type": "application/octet-stream",
                                   "Connection": "close"})
        except _WrongBytesError as exc:
            self.delete(created)
            raise ImageRefusedError(f"upload stopped before its end: {exc}; nothing "
                                    "became active") from None
        finally:
            data.close()

    def _wait_import(self, created: RemoteImage, method: str, upload: Upload) -> RemoteImage:
        """Poll the image until its import task made it active, or failed (then delete it)."""
        deadline = time.monotonic() + IMPORT_TIMEOUT
        delay = _POLL_FIRST
        while True:
            image = self._request("GET", f"/v2/images/{created.id}").json()
            status = image.get("status")
            # Active comes before the task's last steps; its lock goes last. Until
            # then a write races the task's own (SQLite Glance: "database is locked").
            if status == "active" and not image.get("os_glance_import_task"):
                if self.verify_plugin and image.get(PLUGIN_VERIFIED) != upload.sha512:
                    self.delete(created)
                    raise ImportFailedError(
                        f"Glance made the {method} import active without gitreg's verify "
                        f"plugin's {PLUGIN_VERIFIED} = the list's SHA-512: is gitreg_verify "
                        "installed and listed first in [image_import_opts] "
                        "image_import_plugins? image deleted")
                if image.get("disk_format") != upload.stored_format:
                    self.delete(created)
                    raise ImageRefusedError(
                        f"Glance's {method} import stored disk_format "
                        f"{image.get('disk_format')!r}, not {upload.stored_format!r}: image "
                        "deleted")
                return _remote(image)
            # A failed import puts the image back to queued and names the store.
            failed = status in ("killed", "deleted", "deactivated") or (
                bool(image.get("os_glance_failed_import"))
                and not image.get("os_glance_importing_to_stores"))
            if failed or time.monotonic() > deadline:
                why = self._task_message(created.id) if failed else \
                    f"not active after {IMPORT_TIMEOUT:.0f} s (status {status})"
                self.delete(created)
                if why.startswith(PLUGIN_REFUSED):
                    # Wrong bytes, found before activation: refused as a wrong upload is.
                    raise ImageRefusedError(
                        f"wrong bytes from {method}, refused by gitreg's verify plugin in "
                        f"Glance before activation ({why.removeprefix(PLUGIN_REFUSED + ': ')}"
                        f"); never active, image deleted")
                raise ImportFailedError(f"Glance's {method} import failed: {why}; image "
                                        "deleted")
            time.sleep(delay)
            delay = min(delay * _POLL_GROWTH, _POLL_MAX)

    def _task_message(self, image_id: str) -> str:
        """Why the image's last import task failed, in Glance's words.

        Glance reverts the image before it marks the task failed and saves its
        message: wait (briefly) for the task to end.
        """
        deadline = time.monotonic() + _TASK_END_WAIT
        while True:
            try:
                tasks = self._request("GET", f"/v2/images/{image_id}/tasks").json()
            except (CloudRefusedError, CloudUnreachableError):
                return "no task message"
            ordered = sorted(tasks.get("tasks", []), key=lambda t: str(t.get("created_at", "")))
            last = ordered[-1] if ordered else {}
            if last.get("status") in ("failure", "success") or time.monotonic() > deadline:
                message = str(last.get("message") or "")
                return message.strip().replace("\n", " ")[:300] or "no task message"
            time.sleep(_POLL_FIRST)

    def _get(self, image_id: str) -> RemoteImage:
        return _remote(self._request("GET", f"/v2/images/{image_id}").json())

    def update(self, remote: RemoteImage, *, name: str | None = None,
               hidden: bool | None = None, visibility: str | None = None,
               properties: Mapping[str, str | None] | None = None) -> None:
        ops: list[dict[str, Any]] = []
        if name is not None:
            ops.append({"op": "replace", "path": "/name", "value": name})
        if hidden is not None:
            ops.append({"op": "replace", "path": "/os_hidden", "value": hidden})
        if visibility is not None:
            ops.append({"op": "replace", "path": "/visibility", "value": visibility})
        for key, value in (properties or {}).items():
            if value is None:
                if key in remote.properties:
                    ops.append({"op": "remove", "path": f"/{key}"})
                continue
            op = "replace" if key in remote.properties or key in _INTEGER_FIELDS else "add"
            ops.append({"op": op, "path": f"/{key}",
                        "value": int(value) if key in _INTEGER_FIELDS else value})
        if not ops:
            return
        fresh = _remote(self._request("PATCH", f"/v2/images/{remote.id}", json=ops,
                                      headers={"Content-Type": PATCH_TYPE}).json())
        remote.name, remote.hidden = fresh.name, fresh.hidden
        remote.visibility, remote.properties = fresh.visibility, fresh.properties

    def deactivate(self, remote: RemoteImage) -> None:
        self._request("POST", f"/v2/images/{remote.id}/actions/deactivate")
        remote.status = "deactivated"

    def reactivate(self, remote: RemoteImage) -> None:
        self._request("POST", f"/v2/images/{remote.id}/actions/reactivate")
        remote.status = "active"

    def delete(self, remote: RemoteImage) -> None:
        self._request("DELETE", f"/v2/images/{remote.id}", ok=(204, 404))

    def set_members(self, remote: RemoteImage, projects: frozenset[str]) -> None:
        listed = self._request("GET", f"/v2/images/{remote.id}/members").json()
        current = {m["member_id"]: m["status"] for m in listed.get("members", [])}
        for project in sorted(projects - set(current)):
            self._request("POST", f"/v2/images/{remote.id}/members", json={"member": project})
            current[project] = "pending"
        for project in sorted(projects):
            if current.get(project) != "accepted":
                # Accepting for the member works only with credentials that may
                # (an admin's); otherwise the member accepts it themselves.
                with contextlib.suppress(CloudRefusedError):
                    self._request("PUT", f"/v2/images/{remote.id}/members/{project}",
                                  json={"status": "accepted"})
        for project in sorted(set(current) - projects):
            self._request("DELETE", f"/v2/images/{remote.id}/members/{project}",
                          ok=(204, 404))


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a request raises when the cloud cannot be reached (keystoneauth wraps requests)."""
    import requests
    from keystoneauth1 import exceptions as ks_exceptions

    return (ks_exceptions.ClientException, requests.RequestException, OSError)


def _remote(image: Mapping[str, Any]) -> RemoteImage:
    status = str(image.get("status", ""))
    mapped: RemoteStatus = ("active" if status == "active" else
                            "deactivated" if status == "deactivated" else "incomplete")
    props = {k: str(v) for k, v in image.items()
             if k not in _CORE and isinstance(v, str | int | float) and not isinstance(v, bool)}
    for key in _INTEGER_FIELDS:
        if image.get(key) is not None:
            props[key] = str(image[key])
    digest = image.get("os_hash_value") if image.get("os_hash_algo") == "sha512" else None
    return RemoteImage(id=str(image["id"]), name=str(image.get("name") or ""), status=mapped,
                       hidden=bool(image.get("os_hidden")),
                       visibility=str(image.get("visibility", "")), properties=props,
                       sha512=str(digest) if digest else None)
