"""Registries for the catalogue tests: real signed Git history, built in process.

``CatalogueWorld`` holds a registry (``RegistrySimulator``, bare) whose
endorser ``alice`` publishes lists with series, architectures and Markdown
descriptions, including one carrying the usual script-injection attempts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from gitreg.model.dates import format_date
from gitreg.model.strictjson import canonical_dumps
from gitreg.signing.ssh import SSHSigner
from tests.registry_simulator import RegistrySimulator, image_entry, new_id, ssh_signer

# What a hostile description tries; every piece must render inert.
HOSTILE_MD = (
    "# Hardened image\n\n"
    "Boots **fast**, see [the notes](https://docs.example.org/alma).\n\n"
    "<script>window.__pwned = 'script'</script>\n\n"
    "<img src=x onerror=\"window.__pwned='onerror'\">\n\n"
    "[click me](javascript:window.__pwned='link') "
    "[data](data:text/html,<script>window.__pwned='data'</script>)\n"
)


@dataclass
class CatalogueWorld:
    sim: RegistrySimulator
    alice: SSHSigner
    versions: dict[str, int] = field(default_factory=dict)
    images: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def create(cls, path: Path, *, bare: bool = True) -> CatalogueWorld:
        sim = RegistrySimulator.create(path, bare=bare, name="Catalogue test registry")
        alice = ssh_signer("alice")
        sim.add_endorser("alice", [alice.public_key()], ["imagelists/*.json"])
        return cls(sim=sim, alice=alice)

    def image(self, title: str, *, version: str, arch: str = "x86_64",
              series: str | None = None, md: str | None = None, os: str = "Linux",
              osversion: str = "AlmaLinux 9", extra: Mapping[str, Any] | None = None,
              seed: str | None = None) -> dict[str, Any]:
        body = image_entry(new_id(seed), title=title, version=version)
        body.update({"sl:arch": arch, "sl:os": os, "sl:osversion": osversion})
        if series is not None:
            body["gitreg:series"] = series
        if md is not None:
            body["gitreg:description_md"] = md
        body.update(extra or {})
        return body

    def publish(self, list_id: str, title: str, images: Sequence[Mapping[str, Any]], *,
                md: str | None = None, lifetime: timedelta | None = None,
                signer: SSHSigner | None = None) -> str:
        """Publish the next version of ``list_id`` (signed list, signed commit)."""
        version = self.versions.get(list_id, 0) + 1
        created = self.sim.clock
        body: dict[str, Any] = {
            "dc:identifier": list_id, "dc:title": title, "dc:description": f"{title} images",
            "dc:source": "gitreg test", "hv:uri": f"https://lists.example.org/{list_id}.json",
            "hv:version": str(version), "dc:date:created": format_date(created),
            "dc:date:expires": format_date(created + (lifetime or self.sim.lifetime)),
            "hv:endorser": {"hv:x509": {"hv:dn": "/DC=org/DC=example/CN=Alice",
                                        "hv:ca": "/DC=org/DC=example/CN=Test CA",
                                        "hv:email": "alice@example.org",
                                        "dc:creator": "Alice"}},
            "hv:images": [{"hv:image": dict(i)} for i in images],
        }
        if md is not None:
            body["gitreg:description_md"] = md
        data = canonical_dumps({"hv:imagelist": body})
        by = signer or self.alice
        oid = self.sim.commit(self.sim.signed_list(list_id, data, by), by,
                              message=f"Publish {title} version {version}")
        self.versions[list_id] = version
        self.images[list_id] = [dict(i) for i in images]
        return oid


def standard_world(path: Path, *, bare: bool = True) -> tuple[CatalogueWorld, dict[str, str]]:
    """Three lists: AlmaLinux (two versions of series alma9), Ubuntu (arm), an expired one."""
    world = CatalogueWorld.create(path, bare=bare)
    ids = {"alma": new_id("list-alma"), "ubuntu": new_id("list-ubuntu"),
           "old": new_id("list-old")}
    alma1 = world.image("AlmaLinux 9 base", version="9.3", series="alma9", md=HOSTILE_MD,
                        seed="alma-9.3")
    world.publish(ids["alma"], "AlmaLinux", [alma1], md="The **AlmaLinux** images.")
    ubuntu = world.image("Ubuntu 22.04 server", version="22.04.3", arch="aarch64",
                         series="ubuntu-lts", osversion="Ubuntu 22.04",
                         extra={"ad:appid": "1234"}, seed="ubuntu")
    world.publish(ids["ubuntu"], "Ubuntu", [ubuntu])
    world.publish(ids["old"], "Old CentOS", [world.image(
        "CentOS 7", version="7.9", series="centos7", osversion="CentOS 7", seed="centos")],
        lifetime=timedelta(days=2))
    alma2 = world.image("AlmaLinux 9 base", version="9.4", series="alma9", md=HOSTILE_MD,
                        seed="alma-9.4")
    world.publish(ids["alma"], "AlmaLinux", [alma1, alma2])
    return world, ids
