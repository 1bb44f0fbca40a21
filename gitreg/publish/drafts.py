"""Editing drafts: lists, images and the policy, before they are published.

Pure: imagelists and policy envelopes in, new ones (or typed errors) out.
``gitreg publish`` later stamps dates and versions and signs; here the
endorser's intent is checked as early as possible, with messages naming the
list or image at fault.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gitreg.errors import UsageError
from gitreg.model.imagelist import (
    CREATED,
    DESCRIPTION_MD,
    ENDORSER,
    ENDORSER_KEYS,
    ENDORSER_X509,
    EXPIRES,
    IDENTIFIER,
    IMAGES,
    SERIES,
    Image,
    Imagelist,
)
from gitreg.model.policy import PolicyEnvelope
from gitreg.model.registry_info import uuid_problem
from gitreg.model.strictjson import loads
from gitreg.publish import policy_edit
from gitreg.publish.endorser_fields import complete

DEFAULT_HYPERVISOR = "QEMU-KVM"
# Keys whose value is a count: typed on the command line as digits, stored as numbers.
INTEGER_KEYS = frozenset({"hv:size", "hv:ram_minimum", "hv:core_minimum"})
# Set by publish or fixed forever: editing them by hand would only be overwritten or refused.
_PUBLISH_KEYS = frozenset({CREATED, EXPIRES})


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def check_uuid(value: str, what: str) -> str:
    """``value`` if it is a canonical (lower-case, hyphenated) UUID, else UsageError."""
    problem = uuid_problem(value)
    if problem is not None:
        raise UsageError(f"{what}: {problem}")
    return value


# --- finding lists and images ----------------------------------------------


def resolve_list(lists: Mapping[str, Imagelist], spec: str) -> Imagelist:
    """The list named by ``spec``: its UUID, or a title matching exactly one list."""
    wanted = spec.lower()
    if wanted in lists:
        return lists[wanted]
    matches = [il for il in lists.values() if il.title == spec]
    if not matches:
        matches = [il for il in lists.values() if il.title.casefold() == spec.casefold()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(f"{il.identifier} ({il.title})" for il in lists.values()) or "none"
        raise UsageError(f"no imagelist {spec!r} in this registry (lists: {known})")
    ids = ", ".join(il.identifier for il in matches)
    raise UsageError(f"the title {spec!r} names {len(matches)} lists ({ids}); use a UUID")


def resolve_image(imagelist: Imagelist, spec: str) -> Image:
    """The image of ``imagelist`` named by its UUID or by a title unique in the list."""
    if imagelist.has_image(spec):
        return imagelist.image(spec)
    matches = [image for image in imagelist.images if image.title == spec]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"imagelist {imagelist.identifier} ({imagelist.title}) has no "
                         f"image {spec!r}")
    ids = ", ".join(image.identifier for image in matches)
    raise UsageError(f"the title {spec!r} names {len(matches)} images of imagelist "
                     f"{imagelist.identifier} ({ids}); use a UUID")


def image_owner(lists: Iterable[Imagelist], image_id: str) -> str | None:
    """The list that already carries image ``image_id``, if any."""
    for imagelist in lists:
        if imagelist.has_image(image_id):
            return imagelist.identifier
    return None


# --- values typed on the command line -----------------------------------------


def parse_value(key: str, text: str, *, as_json: bool = False) -> Any:
    """The JSON value of ``text`` for ``key``: strict JSON with ``as_json``, a
    non-negative integer for count keys, a string otherwise."""
    if as_json:
        return loads(text.encode("utf-8"), source=f"value of {key}")
    if key in INTEGER_KEYS:
        if not text.isdigit() or not text.isascii():
            raise UsageError(f"{key}: {text!r} is not a non-negative integer")
        return int(text)
    return text


# --- lists ------------------------------------------------------------------


@dataclass(frozen=True)
class EndorserFields:
    """The ``hv:endorser`` / ``hv:x509`` fields of a new list."""

    dn: str | None
    ca: str | None
    email: str | None
    creator: str | None

    def to_x509(self) -> dict[str, str]:
        return complete({"hv:dn": self.dn, "hv:ca": self.ca, "hv:email": self.email,
                         "dc:creator": self.creator})


def new_list(title: str, *, endorser: EndorserFields, identifier: str | None = None,
             description: str | None = None, source: str = "",
             uri_template: str | None = None) -> Imagelist:
    """A new, empty draft list (version "0" and epoch dates until it is published)."""
    list_id = check_uuid(identifier, "--uuid") if identifier else new_uuid()
    if not title.strip():
        raise UsageError("--title must not be empty")
    uri = uri_template.replace("{uuid}", list_id) if uri_template else ""
    return Imagelist.new(list_id, title, description if description is not None else title,
                         endorser.to_x509(), uri=uri, source=source)


def set_list_key(imagelist: Imagelist, key: str, value: Any) -> None:
    """Set a list-level key; endorser keys go into ``hv:endorser``/``hv:x509``."""
    label = f"imagelist {imagelist.identifier}"
    if key == IDENTIFIER:
        raise UsageError(f"{label}: dc:identifier never changes (it names the file)")
    if key == IMAGES:
        raise UsageError(f"{label}: change images with `gitreg image add/set/remove`")
    if key in _PUBLISH_KEYS:
        raise UsageError(f"{label}: {key} is set by `gitreg publish` (see --lifetime)")
    if key in ENDORSER_KEYS:
        endorser = {ENDORSER_X509: {**imagelist.endorser, key: value}}
        imagelist.set_key(ENDORSER, endorser)
        return
    imagelist.set_key(key, value)


# --- images -------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFields:
    """What ``gitreg image add`` knows about a new image."""

    uri: str
    size: int
    sha512: str
    title: str
    os: str
    osversion: str
    arch: str
    description: str | None = None
    comments: str = ""
    format: str | None = None
    hypervisor: str = DEFAULT_HYPERVISOR
    version: str = "1"
    identifier: str | None = None
    series: str | None = None
    description_md: str | None = None

    def to_image(self) -> dict[str, Any]:
        image: dict[str, Any] = {
            IDENTIFIER: check_uuid(self.identifier, "--uuid") if self.identifier
            else new_uuid(),
            "dc:title": self.title,
            "dc:description": self.description if self.description is not None
            else self.title,
            "hv:uri": self.uri,
            "hv:size": self.size,
            "sl:checksum:sha512": self.sha512.lower(),
            "sl:arch": self.arch,
            "sl:os": self.os,
            "sl:osversion": self.osversion,
            "sl:comments": self.comments,
            "hv:hypervisor": self.hypervisor,
            "hv:version": self.version,
        }
        if self.format is not None:
            image["hv:format"] = self.format
        if self.series is not None:
            image[SERIES] = self.series
        if self.description_md is not None:
            image[DESCRIPTION_MD] = self.description_md
        return image


def add_image(imagelist: Imagelist, fields: ImageFields,
              others: Iterable[Imagelist] = ()) -> str:
    """Add a new image to ``imagelist``; return its UUID.

    ``others`` are the registry's other lists: an image UUID is unique across
    the registry, as the server hook will check.
    """
    image = fields.to_image()
    image_id = str(image[IDENTIFIER])
    owner = image_owner([il for il in others if il.identifier != imagelist.identifier],
                        image_id)
    if owner is not None:
        raise UsageError(f"image {image_id} is already published in imagelist {owner}")
    if imagelist.has_image(image_id):
        raise UsageError(f"imagelist {imagelist.identifier} already has image {image_id}")
    imagelist.add_image(image)
    return image_id


def set_image_key(imagelist: Imagelist, image_id: str, key: str, value: Any) -> None:
    if key == IDENTIFIER:
        raise UsageError(f"image {image_id}: dc:identifier never changes; add a new image "
                         "and remove this one instead")
    imagelist.set_image_key(image_id, key, value)


# --- the policy ---------------------------------------------------------------


def edit_policy(published: PolicyEnvelope, draft: PolicyEnvelope,
                edit: Callable[[PolicyEnvelope], PolicyEnvelope]) -> PolicyEnvelope:
    """Apply ``edit`` to the draft policy; the result is always version published + 1.

    Several edits before one publication are one policy change, so one version
    bump and one round of root signatures. An edit that returns the policy to
    its published content returns the published envelope itself (no change).
    """
    base = draft if draft.signed != published.signed else published
    edited = edit(base)
    if policy_edit.with_version(edited, published.version).signed == published.signed:
        return published
    return policy_edit.with_version(edited, published.version + 1)


def policy_changed(published: PolicyEnvelope, draft: PolicyEnvelope) -> bool:
    """Whether the working tree's policy differs from the published one."""
    return draft.canonical_bytes() != published.canonical_bytes()


def describe_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
