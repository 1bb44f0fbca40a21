"""What a disk image file really is, and converting it, with qemu-img (Debian qemu-utils).

A list's ``hv:format`` is the endorser's word; ``qemu-img info`` reads the
file's own header. A mismatch is refused, and so is a qcow2 that names a
backing file or an external data file: converting or booting it would read
another file of the host (the qcow2 attacks Glance's own image-conversion
plugin guards against). ``qemu-img`` runs without a shell, with a time
limit, and with ``-U`` (no lock: the cache file is only read).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gitreg.adapters.interface import ImageRefusedError
from gitreg.errors import GitregError

QEMU_IMG_TIMEOUT = 120.0
CONVERT_TIMEOUT = 4 * 3600.0
HASH_CHUNK = 4 * 1024 * 1024

# hv:format spellings -> qemu-img's format names.
_FORMAT_ALIASES = {"raw": "raw", "img": "raw", "qcow2": "qcow2", "qcow": "qcow2",
                   "vmdk": "vmdk", "vdi": "vdi", "vhd": "vpc", "vpc": "vpc", "vhdx": "vhdx",
                   "iso": "raw"}
# qemu-img's names -> Glance's disk_format.
_GLANCE_FORMAT = {"raw": "raw", "qcow2": "qcow2", "vmdk": "vmdk", "vdi": "vdi", "vpc": "vhd",
                  "vhdx": "vhdx"}


@dataclass(frozen=True)
class DiskInfo:
    format: str  # Glance's disk_format name
    virtual_size: int


def qemu_img() -> str:
    found = shutil.which("qemu-img")
    if found is None:
        raise GitregError("qemu-img not found: a cloud with disk_formats needs it to check "
                          "and convert images", hint="install Debian's qemu-utils")
    return found


def inspect(path: Path, *, declared: str | None) -> DiskInfo:
    """The file's real format and virtual size; refuse unsafe or mislabelled images."""
    try:
        done = subprocess.run([qemu_img(), "info", "-U", "--output=json", str(path)],
                              capture_output=True, text=True, timeout=QEMU_IMG_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        raise ImageRefusedError(f"qemu-img info {path.name} did not finish in "
                                f"{QEMU_IMG_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        raise ImageRefusedError(f"qemu-img cannot read {path.name}: "
                                f"{done.stderr.strip()[-300:]}")
    info = json.loads(done.stdout)
    real = str(info.get("format", ""))
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise ImageRefusedError(f"{real} image names a backing file "
                                f"({info.get('backing-filename')!r}): refused")
    data = (info.get("format-specific") or {}).get("data") or {}
    if data.get("data-file") or data.get("data-file-raw"):
        raise ImageRefusedError(f"{real} image names an external data file "
                                f"({data.get('data-file')!r}): refused")
    if real not in _GLANCE_FORMAT:
        raise ImageRefusedError(f"unsupported disk format {real!r}")
    if declared:
        expected = _FORMAT_ALIASES.get(declared.strip().lower())
        if expected is None:
            raise ImageRefusedError(f"hv:format {declared!r} is not a disk format gitreg knows")
        if expected != real:
            raise ImageRefusedError(f"hv:format says {declared!r} but the file is {real}")
    return DiskInfo(_GLANCE_FORMAT[real], int(info.get("virtual-size") or 0))


def convert(source: Path, target: Path, *, source_format: str, target_format: str) -> str:
    """Convert into ``target`` (written beside, then renamed); return its SHA-512."""
    names = {v: k for k, v in _GLANCE_FORMAT.items()}
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)
    try:
        done = subprocess.run(
            [qemu_img(), "convert", "-U", "-f", names[source_format], "-O",
             names[target_format], str(source), str(partial)],
            capture_output=True, text=True, timeout=CONVERT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise ImageRefusedError(f"qemu-img convert {source.name} timed out") from None
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise ImageRefusedError(f"qemu-img convert {source.name} to {target_format} failed: "
                                f"{done.stderr.strip()[-300:]}")
    digest = file_sha512(partial)
    partial.replace(target)
    return digest


def file_sha512(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
