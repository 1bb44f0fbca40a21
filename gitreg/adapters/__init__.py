"""Cloud adapters: verified images from the site cache into Glance or OpenNebula.

``reconcile_clouds`` is the one entry point the site sync calls, after its
apply step: for each ``[[cloud]]`` of the config it opens the back-end and
reconciles it with the images the site holds verified in cache/. A cloud
that is down is reported in its outcome; the others carry on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gitreg.adapters.interface import CloudBackend, CloudUnreachableError
from gitreg.adapters.reconcile import CloudOutcome, Reconciler, wanted_images
from gitreg.adapters.records import CloudRecords
from gitreg.errors import GitregError
from gitreg.site.cloud_config import CloudConfig
from gitreg.site.config import SiteConfig
from gitreg.site.state import SiteState

WORK_DIR_NAME = "convert"


def open_backend(cloud: CloudConfig) -> CloudBackend:
    """The back-end of one ``[[cloud]]`` (imported here: only configured clouds load)."""
    if cloud.type == "glance":
        from gitreg.adapters.glance import GlanceBackend
        return GlanceBackend.from_config(cloud)
    from gitreg.adapters.opennebula import OpenNebulaBackend
    return OpenNebulaBackend.from_config(cloud)


def reconcile_clouds(config: SiteConfig, state: SiteState, *, now: datetime,
                     list_keys: Mapping[str, Mapping[str, Any]],
                     commits: Mapping[str, str | None]) -> list[CloudOutcome]:
    """Reconcile every configured cloud with the cached images; one outcome per cloud."""
    if not config.clouds:
        return []
    wanted = wanted_images(state.images(state="cached"), list_keys, commits)
    outcomes: list[CloudOutcome] = []
    for cloud in config.clouds:
        outcomes.append(reconcile_one(config, cloud, state, wanted, now=now))
    return outcomes


def reconcile_one(config: SiteConfig, cloud: CloudConfig, state: SiteState,
                  wanted: Sequence[Any], *, now: datetime,
                  backend: CloudBackend | None = None) -> CloudOutcome:
    try:
        backend = backend or open_backend(cloud)
    except (CloudUnreachableError, GitregError) as exc:
        return CloudOutcome(cloud.name, cloud.type, error=exc.message)
    work_dir = config.state_dir / WORK_DIR_NAME
    work_dir.mkdir(parents=True, exist_ok=True)
    return Reconciler(cloud, backend, CloudRecords(state, cloud.name), work_dir=work_dir,
                      now=now).run(wanted)
