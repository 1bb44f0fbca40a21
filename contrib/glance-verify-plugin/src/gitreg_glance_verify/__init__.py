"""Glance import plugin: staged bytes must have the image's ``gitreg_sha512`` before activation.

Glance runs the import plugins listed in ``[image_import_opts]
image_import_plugins`` after an import staged the data and before
``_ImportToStore`` stores it and sets the image active
(glance/async_/flows/api_image_import.py, ``get_flow``). A failed plugin
task reverts the flow: the image returns to ``queued`` with the store in
``os_glance_failed_import`` and the task fails with this plugin's message.
This module runs inside Glance's environment and imports nothing of gitreg.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from glance.common import exception
from oslo_log import log as logging
from taskflow import task
from taskflow.patterns import linear_flow

LOG = logging.getLogger(__name__)

# The start of the task message on wrong bytes: gitreg reads it to refuse the image.
REFUSED = "gitreg_verify refused"
# Set on success to the digest checked: gitreg's proof the plugin ran for this import.
VERIFIED_PROPERTY = "gitreg_import_verified"
_BLOCK = 1024 * 1024
# Import methods whose staging task (an _internal_plugins download) reverts the image.
_DOWNLOADS = frozenset({"web-download", "glance-download"})


def check_file(path: str, *, sha512: str, size: int | None) -> str | None:
    """Why the file is not the expected bytes, or None when it is."""
    actual_size = Path(path).stat().st_size
    if size is not None and actual_size != size:
        return f"staged {actual_size} bytes, not gitreg_size {size}"
    digest = hashlib.sha512()
    with Path(path).open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    if digest.hexdigest() != sha512.lower():
        return f"staged bytes have SHA-512 {digest.hexdigest()}, not gitreg_sha512 {sha512}"
    return None


class _VerifyStagedBytes(task.Task):  # type: ignore[misc]  # taskflow is untyped
    """Refuse the staged file unless it is the image gitreg described."""

    def __init__(self, task_id: str, task_type: str, action_wrapper: Any,
                 stores: list[str], method: str) -> None:
        self.task_id = task_id
        self.action_wrapper = action_wrapper
        self.image_id = action_wrapper.image_id
        self.stores = stores
        self.method = method
        super().__init__(name=f"{task_type}-GitregVerify-{task_id}")

    def execute(self, file_path: str) -> None:
        with self.action_wrapper as action:
            props = action.image_extra_properties
            disk_format = action.image_disk_format
        expected = props.get("gitreg_sha512")
        if not expected:
            LOG.debug("image %s has no gitreg_sha512: not checked", self.image_id)
            return
        source_format = props.get("gitreg_source_format")
        if source_format and disk_format != source_format:
            # image_conversion already replaced the bytes the digest describes.
            self._refuse(f"the image is already {disk_format}, not {source_format}: list "
                         "gitreg_verify before image_conversion in image_import_plugins")
        size = props.get("gitreg_size")
        try:
            why = check_file(file_path.removeprefix("file://"), sha512=expected,
                             size=int(size) if size else None)
        except (OSError, ValueError) as exc:
            why = f"cannot check the staged file: {exc}"
        if why:
            self._refuse(why)
        with self.action_wrapper as action:
            action.set_image_extra_properties({VERIFIED_PROPERTY: expected.lower()})
        LOG.info("image %s: staged bytes have gitreg_sha512", self.image_id)

    def _refuse(self, why: str) -> None:
        message = f"{REFUSED}: image {self.image_id}: {why}"
        LOG.error(message)
        raise exception.UploadException(message)

    def revert(self, result: Any, **kwargs: Any) -> None:
        # No _ImportToStore ran: the stores move from importing to failed and the
        # image back to queued (never active). A download method's own revert
        # (base_download.BaseDownload.revert) does that after this one, and a
        # second queued -> queued fails the whole revert: leave it to that.
        if self.method in _DOWNLOADS:
            return
        with self.action_wrapper as action:
            action.set_image_attribute(status="queued")
            if self.stores:
                action.remove_importing_stores(self.stores)
                action.add_failed_stores(self.stores)


def get_flow(**kwargs: Any) -> Any:
    """The plugin's flow, as Glance's stevedore loader calls it (glance.image_import.plugins)."""
    task_type = kwargs["task_type"]
    method = str(((kwargs.get("import_req") or {}).get("method") or {}).get("name", ""))
    return linear_flow.Flow(task_type).add(
        _VerifyStagedBytes(kwargs["task_id"], task_type, kwargs["action_wrapper"],
                           [s for s in kwargs.get("backend") or [] if s], method))
