"""A new version of an image in one step: its file, hence size and SHA-512, and version.

``gitreg image update`` replaces what took five ``image set`` calls. The
image's ``hv:version`` moves past the published one exactly once per
publication, however often the draft is updated, so sites see one new
version. Pure: lists and a measured digest in, the draft changed in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from gitreg.errors import UsageError
from gitreg.model.imagelist import Imagelist
from gitreg.model.versions import bump_version, compare_versions
from gitreg.publish.imagefile import ImageDigest


@dataclass(frozen=True)
class ImageUpdate:
    """What ``update_image`` changed: old -> new of each key it set."""

    image_id: str
    changes: dict[str, tuple[object, object]]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def next_image_version(draft: str, published: str | None) -> str:
    """The draft's version if it is already past the published one, else a bump of that."""
    if published is None or compare_versions(draft, published) > 0:
        return draft
    return bump_version(published)


def update_image(imagelist: Imagelist, image_id: str, digest: ImageDigest, *,
                 published: Imagelist | None, uri: str | None = None,
                 osversion: str | None = None) -> ImageUpdate:
    """Set the image's size, SHA-512 (and ``uri``, ``osversion``) and bump its version.

    A file identical to the one the draft names changes nothing (no bump): the
    update is idempotent.
    """
    image = imagelist.image(image_id)
    wanted: dict[str, object] = {"hv:size": digest.size, "sl:checksum:sha512": digest.sha512}
    if uri is not None:
        if not uri.strip():
            raise UsageError(f"image {image_id}: --uri must not be empty")
        wanted["hv:uri"] = uri
    if osversion is not None:
        wanted["sl:osversion"] = osversion
    changes = {key: (image.get(key), value) for key, value in wanted.items()
               if image.get(key) != value}
    if not changes:
        return ImageUpdate(image_id, {})
    old_image = (published.image(image_id)
                 if published is not None and published.has_image(image_id) else None)
    version = next_image_version(image.version, old_image.version if old_image else None)
    if version != image.version:
        changes["hv:version"] = (image.version, version)
    for key, (_, value) in changes.items():
        imagelist.set_image_key(image_id, key, value)
    return ImageUpdate(image_id, changes)
