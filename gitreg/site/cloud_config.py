"""The ``[[cloud]]`` tables of the site configuration: where verified images go.

Each names a Glance (a clouds.yaml entry) or an OpenNebula (XML-RPC) and how
gitreg's adapters (gitreg.adapters) put images there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from gitreg.site.config_reader import NAME, Reader, did_you_mean, kind_of

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


def parse_cloud(reader: Reader, where: str, entry: Mapping[str, Any],
                 registries: set[str]) -> CloudConfig | None:
    before = len(reader.problems)
    reader.unknown_keys(where, entry, _CLOUD_KEYS)
    name = reader.string(f"{where}.name", entry.get("name"), required=True)
    if name is not None and not NAME.fullmatch(name):
        reader.problem(f"{where}.name", f"{name!r} is not a valid cloud name (letters, digits, "
                       "'.', '_', '-'; at most 64; starts with a letter or digit)")
    kind = reader.choice(f"{where}.type", entry.get("type"), CLOUD_TYPES, default="glance")
    if entry.get("type") is None:
        reader.problem(f"{where}.type", f"missing (required): one of {', '.join(CLOUD_TYPES)}")
    chosen = reader.string_list(f"{where}.registries", entry.get("registries"), default=[])
    for item in chosen or []:
        if item not in registries:
            reader.problem(f"{where}.registries",
                           f"no [[registry]] named {item!r}{did_you_mean(item, registries)}")
    formats = reader.string_list(f"{where}.disk_formats", entry.get("disk_formats"), default=[])
    for item in formats or []:
        if item not in DISK_FORMATS:
            reader.problem(f"{where}.disk_formats", f"unknown disk format {item!r} (one of "
                           f"{', '.join(DISK_FORMATS)})")
    convert = entry.get("convert", True)
    if not isinstance(convert, bool) and convert != "glance":
        shown = repr(convert) if isinstance(convert, str) else kind_of(convert)
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
                       f"must be true or false, not {kind_of(verify_plugin)}")
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
        reader.problem(f"{where}.template", f"must be true or false, not {kind_of(template)}")
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


def _retire_periods(reader: Reader, where: str, value: Any) -> dict[str, float]:
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


def unique_cloud_names(reader: Reader, clouds: Sequence[CloudConfig | None]) -> None:
    seen: set[str] = set()
    for i, cloud in enumerate(clouds):
        if cloud is None:
            continue
        if cloud.name in seen:
            reader.problem(f"cloud[{i}].name", f"duplicate cloud name {cloud.name!r}")
        seen.add(cloud.name)
