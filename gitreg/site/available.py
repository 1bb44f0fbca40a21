"""What each registry offers a site: the lists and images of its trusted state.

`gitreg site available` (vmcatcher's ``vmcatcher_image -l``): read from the
site's local repository at the commit the site last verified and applied,
so it shows only what the site trusts. Nothing is fetched or changed. Each
image carries its attestation counts: which attesters of the trusted state's
policy said it passed or failed (``gitreg.catalogue.attestations``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gitreg.catalogue.attestations import read_attestations
from gitreg.catalogue.search import attestation_counts
from gitreg.gitstore.store import RegistryStore
from gitreg.model.dates import format_date
from gitreg.model.imagelist import parse_imagelist
from gitreg.site.config import SiteConfig
from gitreg.site.planner import MAX_LIST_BYTES
from gitreg.site.state import SiteState
from gitreg.verify import layout
from gitreg.verify.cache import MemoryCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.history import Verifier
from gitreg.verify.source import Entry


@dataclass
class Offer:
    """One registry's trusted state as a site sees it."""

    registry: str
    commit: str | None
    lists: list[dict[str, Any]] = field(default_factory=list)


def available(config: SiteConfig, *, now: datetime) -> list[Offer]:
    """Per configured registry, its lists and images at the trusted commit."""
    trusted: dict[str, str | None] = {r.name: None for r in config.registries}
    if config.state_db.exists():
        with SiteState.open(config.state_db) as state:
            for registry in config.registries:
                record = state.registry(registry.name)
                trusted[registry.name] = record.trusted_commit if record else None
    offers: list[Offer] = []
    for registry in config.registries:
        commit = trusted[registry.name]
        offer = Offer(registry.name, commit)
        offers.append(offer)
        path = config.repositories_dir / f"{registry.name}.git"
        if commit is None or not (path / "HEAD").exists():
            continue
        subscriptions = config.subscriptions_for(registry.name)
        store = RegistryStore.open(path)
        entries = store.entries(store.commit(commit).tree)
        said = _attestations(store, commit, entries, now)
        for entry in entries:
            if not layout.is_list(entry.path):
                continue
            imagelist = parse_imagelist(store.blob(entry.oid, MAX_LIST_BYTES),
                                        source=f"{commit[:12]}:{entry.path}",
                                        max_size=MAX_LIST_BYTES)
            list_uuid = imagelist.identifier.lower()
            offer.lists.append({
                "uuid": list_uuid, "title": imagelist.title, "version": imagelist.version,
                "expires": format_date(imagelist.expires),
                "expired": imagelist.expires <= now,
                "subscribed": any(
                    s.wants_list(list_uuid) or imagelist.title in s.imagelists
                    or any(i.series in s.imagelists for i in imagelist.images)
                    for s in subscriptions),
                "images": [{
                    "uuid": image.identifier.lower(), "title": image.title,
                    "version": image.version, "series": image.series,
                    "os": image.os, "osversion": image.osversion, "arch": image.arch,
                    "size": image.size,
                    "attestations": attestation_counts({"attestations": said},
                                                       image.identifier.lower()),
                } for image in imagelist.images],
            })
    return offers


def _attestations(store: RegistryStore, commit: str, entries: list[Entry],
                  now: datetime) -> dict[str, Any]:
    """Image UUID -> the statements that count under the trusted state's policy."""
    if not any(layout.is_attestation(e.path) for e in entries):
        return {}
    cache = MemoryCache()
    tree = store.commit(commit).tree
    policy = Verifier(store, cache, context=VerifyContext.for_site(now)).state(
        tree, commit=commit).policy.signed
    found = read_attestations(store, policy, cache, head=commit,
                              entries={e.path: e for e in entries}, at=now)
    # As in search and the web catalogue: an expired attester's statements count no more.
    gone = policy.expired_attesters(now)
    return {image: [a for a in said if a.get("attester") not in gone]
            for image, said in found["by_image"].items()}
