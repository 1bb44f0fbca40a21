"""Cloud image properties from a verified imagelist entry (pure: no I/O).

The names are those the tools around a cloud already read: Glance's common
image properties (``os_distro`` in libosinfo's lowercase, ``os_version``,
``architecture`` in its canonical spelling, ``hypervisor_type``), the SCS
image metadata standard (``image_source``, ``image_description``,
``image_build_date``, ``provided_until``, ``replace_frequency``,
``uuid_validity``, ``image_original_user``), gitreg's own identifiers
(``gitreg_*``) and the ``vmcatcher_event_*`` properties that
cloud-info-provider and the EGI tools read (the lower-cased names of the
event variables of ``gitreg.site.events``). docs/clouds.md lists them all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from gitreg.adapters.interface import VerifiedImage
from gitreg.site.events import IMAGE_VARIABLES

# Glance refuses a property value longer than this.
MAX_PROPERTY_LENGTH = 255
GITREG_TAG = "gitreg"

# Debian/Ubuntu and vendor spellings -> the names Nova and libosinfo use.
ARCHITECTURES = {
    "amd64": "x86_64", "x86-64": "x86_64", "x64": "x86_64", "x86_64": "x86_64",
    "i386": "i686", "i486": "i686", "i586": "i686", "i686": "i686", "x86": "i686",
    "arm64": "aarch64", "aarch64": "aarch64", "armhf": "armv7l", "armv7l": "armv7l",
    "ppc64el": "ppc64le", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x",
    "riscv64": "riscv64",
}

# sl:osname / sl:os as endorsers write them -> os_distro (libosinfo short ids).
DISTROS = {
    "ubuntu": "ubuntu", "debian": "debian", "centos": "centos", "centos stream": "centos",
    "almalinux": "almalinux", "alma linux": "almalinux", "alma": "almalinux",
    "rocky": "rocky", "rocky linux": "rocky", "rockylinux": "rocky",
    "fedora": "fedora", "opensuse": "opensuse", "opensuse leap": "opensuse",
    "sles": "sles", "suse": "sles", "red hat enterprise linux": "rhel", "rhel": "rhel",
    "redhat": "rhel", "scientific linux": "scientificlinux", "sl": "scientificlinux",
    "scientificlinux": "scientificlinux", "oracle linux": "ol", "arch": "arch",
    "arch linux": "arch", "gentoo": "gentoo", "freebsd": "freebsd", "windows": "windows",
    "cirros": "cirros",
}
# Words that name a kernel family, not a distribution.
_GENERIC_OS = {"linux", "gnu/linux", "unix", "other", ""}

_ORIGINAL_USER = re.compile(
    r"(?:default\s+)?(?:login|user(?:name)?|account)(?:\s+name)?\s*(?:is|:|=)\s*"
    r"['\"]?([a-z_][a-z0-9_-]{0,31})\b", re.IGNORECASE)
_RAM = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|[KMGT])?\s*", re.IGNORECASE)
_RAM_MIB = {"k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0 * 1024}
_REPLACE_FREQUENCIES = {"yearly", "quarterly", "monthly", "weekly", "daily", "critical_bug",
                        "never"}


def architecture(value: Any) -> str | None:
    """The canonical architecture (amd64 -> x86_64, ...); None if not given."""
    text = text_value(value)
    if text is None:
        return None
    return ARCHITECTURES.get(text.lower(), text.lower())


def os_distro(image: Mapping[str, Any]) -> str | None:
    """libosinfo-style ``os_distro`` from ``sl:osname``, else ``sl:os`` unless generic."""
    for key in ("sl:osname", "sl:os"):
        text = text_value(image.get(key))
        if text is None or text.lower() in _GENERIC_OS:
            continue
        lowered = " ".join(text.lower().split())
        return DISTROS.get(lowered, re.sub(r"[^a-z0-9]", "", lowered) or None)
    return None


def ram_mib(value: Any) -> int | None:
    """``hv:ram_minimum`` in MiB: AppDB sends a bare number of MB; units are honoured."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return max(0, math.ceil(value))
    match = _RAM.fullmatch(str(value))
    if match is None:
        return None
    unit = (match.group(2) or "m")[0].lower()
    return max(0, math.ceil(float(match.group(1)) * _RAM_MIB[unit]))


def cores(value: Any) -> int | None:
    """``hv:core_minimum`` as an integer number of cores."""
    text = text_value(value)
    if text is None or not text.isdigit():
        return None
    return int(text)


def original_user(comments: Any) -> str | None:
    """The login user when ``sl:comments`` says so ("default user: ubuntu")."""
    text = text_value(comments)
    if text is None:
        return None
    match = _ORIGINAL_USER.search(text)
    return match.group(1) if match else None


def min_disk_gib(virtual_size: int | None, size: int) -> int:
    """Glance's ``min_disk`` (GiB, rounded up) from the image's virtual size."""
    return max(1, math.ceil((virtual_size or size) / 1024**3))


def expiry(image: VerifiedImage) -> str | None:
    """The image's expiry (its own ``dc:date:expires``, else its list's) as YYYY-MM-DD."""
    for keys in (image.metadata, image.list_keys or {}):
        text = text_value(keys.get("dc:date:expires"))
        if text:
            return text[:10]
    return None


def image_properties(image: VerifiedImage, *, cloud: str) -> dict[str, str]:
    """Every string property gitreg sets on a cloud image (values capped for Glance)."""
    meta = image.metadata
    props: dict[str, str | None] = {
        "gitreg_cloud": cloud,
        "gitreg_registry": image.registry,
        "gitreg_imagelist": image.list_uuid,
        "gitreg_image": image.uuid,
        "gitreg_version": text_value(meta.get("hv:version")),
        "gitreg_list_version": image.list_version,
        "gitreg_sha512": image.sha512.lower(),
        "gitreg_series": text_value(meta.get("gitreg:series")),
        "os_distro": os_distro(meta),
        "os_version": text_value(meta.get("sl:osversion")),
        "architecture": architecture(meta.get("sl:arch")),
        "hypervisor_type": _hypervisor(meta.get("hv:hypervisor")),
        "image_source": text_value(meta.get("hv:uri")),
        "image_description": text_value(meta.get("dc:description")),
        "provided_until": expiry(image),
        "uuid_validity": "none",
        "image_original_user": original_user(meta.get("sl:comments")),
    }
    created = text_value(meta.get("dc:date:created")) or text_value((image.list_keys or {}).get(
        "dc:date:created"))
    props["image_build_date"] = created[:10] if created else None
    core_minimum = cores(meta.get("hv:core_minimum"))
    if core_minimum is not None:
        props["gitreg_core_minimum"] = str(core_minimum)
    frequency = text_value(meta.get("gitreg:replace_frequency"))
    if frequency in _REPLACE_FREQUENCIES:
        props["replace_frequency"] = frequency
    for key, variable in IMAGE_VARIABLES.items():
        props[variable.lower()] = text_value(meta.get(key))
    props["vmcatcher_event_il_dc_identifier"] = image.list_uuid
    props["vmcatcher_event_vo"] = image.vo
    return {k: v[:MAX_PROPERTY_LENGTH] for k, v in props.items() if v}


def _hypervisor(value: Any) -> str | None:
    """``hypervisor_type`` as Nova spells it: the first listed, lower case (QEMU-KVM -> qemu)."""
    text = text_value(value)
    if text is None:
        return None
    first = re.split(r"[,/ -]+", text.strip())[0].lower()
    return first or None


def text_value(value: Any) -> str | None:
    """A key's value as stripped text; None for absent, empty or structured values."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return text or None
