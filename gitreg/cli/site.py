"""`gitreg site sync|status|images|available|hold|release`: a cloud site's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

site_app = typer.Typer(help="Run a cloud site: sync images from registries, show its state.",
                       no_args_is_help=True)

_CONFIG = typer.Option(..., "--config", "-c", help="The site's TOML configuration file.")
_JSON = typer.Option(False, "--json", help="Print a JSON report on stdout.")


@site_app.command("sync")
def sync_command(
    config: Path = _CONFIG,
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Print the plan (download, retire, keep); change nothing."),
    json_output: bool = _JSON,
) -> None:
    """Fetch, verify, merge, plan and apply: exit 0, 1 (invalid), 3 (nothing reachable)."""
    # A plain command line never gets here (see gitreg.cli.site_sync); both run this.
    from gitreg.cli.site_sync import run_sync

    raise typer.Exit(run_sync(config, dry_run=dry_run, json_output=json_output))


@site_app.command("status")
def status_command(config: Path = _CONFIG, json_output: bool = _JSON) -> None:
    """Per registry its trusted commit and remotes; per image its state and why."""
    from gitreg.cli import output
    from gitreg.site.config import load_config

    site = load_config(config)
    data = _status(site)
    if json_output:
        output.data_json(data)
        return
    for registry in data["registries"]:
        commit = (registry["trusted_commit"] or "")[:12] or "none (never synced)"
        merge = (" (this site's merge of "
                 f"{', '.join(p[:12] for p in registry['merge_parents'])})"
                 if registry["merge_parents"] else "")
        output.data(f"registry {registry['name']}: trusted {commit}{merge}, "
                    f"advanced {registry['advanced_at'] or '-'}")
        fresh = registry.get("freshness")
        for remote in registry["remotes"]:
            at = f" at {remote['commit'][:12]}" if remote["commit"] else ""
            detail = f" ({remote['detail']})" if remote["detail"] else ""
            output.data(f"  remote {remote['url']}: {remote['state']}{at}{detail}"
                        f"{_heartbeat_text(remote.get('heartbeat'), fresh)}")
        if fresh is not None:
            output.data(f"  freshness: {'fresh' if fresh['fresh'] else 'FREEZE SUSPECTED'}: "
                        f"{fresh['detail']}")
        for found in registry["equivocations"]:
            # Evidence against a signer: kept after the sync that saw it, and loud.
            output.warn(f"registry {registry['name']}: {found['detail']} (first seen "
                        f"{found['first_seen']}, last seen {found['last_seen']})")
    for image in data["images"]:
        title = f" {image['title']}" if image["title"] else ""
        reason = f": {image['reason']}" if image["reason"] else ""
        output.data(f"image {image['uuid']}{title} [{image['registry']}]: "
                    f"{image['state']}{reason}")
    for held in data["held"]:
        reason = f": {held['reason']}" if held["reason"] else ""
        output.data(f"image {held['uuid']} held since {held['held_at']}{reason} "
                    "(its failures do not fail a sync; `gitreg site release` ends it)")
    for conflict in data["conflicts"]:
        output.warn(f"conflict: {conflict['detail']}")
    if data["pending_events"]:
        output.data(f"{data['pending_events']} event(s) with deliveries still to retry")


def _heartbeat_text(beat: dict[str, Any] | None, fresh: dict[str, Any] | None) -> str:
    """``; heartbeat 2h 5m old`` for a remote's line (nothing if none is required)."""
    if fresh is None:
        return ""
    if beat is None:
        return "; heartbeat: none"
    state = "" if beat["covers_state"] else f", for older state {beat['commit'][:12]}"
    return f"; heartbeat {beat['age']} old ({beat['replica']}{state})"


def _add_freshness(site: Any, entry: dict[str, Any]) -> None:
    """Each remote's newest valid heartbeat, judged now (`gitreg.site.freshness`)."""
    from datetime import UTC, datetime

    from gitreg.site.freshness import status_freshness
    from gitreg.verify.context import VerifyContext

    registry = site.registry(entry["name"])
    fresh = status_freshness(registry, site.repositories_dir / f"{registry.name}.git",
                             entry["trusted_commit"],
                             VerifyContext.for_site(datetime.now(UTC).replace(microsecond=0)))
    entry["freshness"] = fresh
    beats = {r["url"]: r["heartbeat"] for r in (fresh or {}).get("remotes", [])}
    for remote in entry["remotes"]:
        remote["heartbeat"] = beats.get(remote["url"]) if fresh is not None else None


def _status(site: Any) -> dict[str, Any]:
    """The state database as status reports it (nothing is created on a fresh site)."""
    from gitreg.site.state import SiteState

    data: dict[str, Any] = {"registries": [], "images": [], "conflicts": [], "held": [],
                            "pending_events": 0}
    if not site.state_db.exists():
        data["registries"] = [{"name": r.name, "trusted_commit": None, "advanced_at": None,
                               "merge_parents": [], "remotes": [], "equivocations": [],
                               "freshness": None}
                              for r in site.registries]
        return data
    with SiteState.open(site.state_db) as state:
        for registry in site.registries:
            record = state.registry(registry.name)
            data["registries"].append({
                "name": registry.name,
                "trusted_commit": record.trusted_commit if record else None,
                "advanced_at": _time(record.advanced_at if record else None),
                "merge_parents": list(record.merge_parents) if record else [],
                "remotes": [{"url": r.url, "state": r.state, "detail": r.detail,
                             "commit": r.commit, "checked_at": _time(r.checked_at)}
                            for r in state.remotes(registry.name)],
                "equivocations": [_equivocation(e) for e in state.equivocations(registry.name)],
            })
            _add_freshness(site, data["registries"][-1])
        data["images"] = [{"uuid": i.uuid, "registry": i.registry, "list": i.list_uuid,
                           "list_version": i.list_version,
                           "title": str(i.metadata.get("dc:title", "")),
                           "state": i.state, "reason": i.reason, "path": i.path,
                           "updated_at": _time(i.updated_at)}
                          for i in state.images()]
        data["conflicts"] = [{"uuid": c.image_uuid, "registries": list(c.registries),
                              "taken_from": c.taken_from, "detail": c.detail,
                              "seen_at": _time(c.seen_at)}
                             for c in state.conflicts()]
        data["pending_events"] = len(state.pending_events())
        data["held"] = [{"uuid": u, "reason": reason, "held_at": _time(since)}
                        for u, (reason, since) in state.holds().items()]
    return data


def _equivocation(record: Any) -> dict[str, Any]:
    from gitreg.verify import layout

    path = record.path
    return {"path": path, "list": layout.list_id_of(path) if layout.is_list(path) else None,
            "version": record.version, "blobs": list(record.blobs),
            "commits": list(record.commits), "chosen": record.chosen, "reason": record.reason,
            "detail": record.detail, "first_seen": _time(record.first_seen),
            "last_seen": _time(record.last_seen)}


@site_app.command("available")
def available_command(config: Path = _CONFIG, json_output: bool = _JSON) -> None:
    """The lists and images of each registry's trusted state (vmcatcher_image -l)."""
    from datetime import UTC, datetime

    from gitreg.cli import output
    from gitreg.site.available import available
    from gitreg.site.config import load_config

    offers = available(load_config(config), now=datetime.now(UTC))
    if json_output:
        output.data_json([{"registry": o.registry, "trusted_commit": o.commit,
                           "lists": o.lists} for o in offers])
        return
    for offer in offers:
        if offer.commit is None:
            output.data(f"registry {offer.registry}: nothing trusted yet (run gitreg site sync)")
            continue
        output.data(f"registry {offer.registry} (trusted {offer.commit[:12]}): "
                    f"{len(offer.lists)} list(s)")
        for row in offer.lists:
            marks = [m for m, on in (("subscribed", row["subscribed"]),
                                     ("expired", row["expired"])) if on]
            shown = f" [{', '.join(marks)}]" if marks else ""
            output.data(f"  list {row['uuid']} {row['title']!r} v{row['version']}, "
                        f"expires {row['expires']}{shown}")
            for image in row["images"]:
                series = f" series {image['series']!r}" if image["series"] else ""
                output.data(f"    image {image['uuid']} {image['title']!r} "
                            f"v{image['version']}{series} ({image['os']} "
                            f"{image['osversion']} {image['arch']}, {image['size']} bytes)")
                said = image["attestations"]
                if said["by"]:
                    output.data(f"      attested: {said['passed']} passed, {said['failed']} "
                                f"failed ({'; '.join(said['by'])})")


_IMAGE = typer.Argument(..., help="The image's UUID (as `gitreg site status` shows it).")


@site_app.command("hold")
def hold_command(image: str = _IMAGE, config: Path = _CONFIG,
                 reason: str = typer.Option("", "--reason", help="Why, shown by status.")
                 ) -> None:
    """Acknowledge an image whose download fails: a sync failing only on held images exits 0."""
    from gitreg.cli import output
    from gitreg.site.state import SiteState

    with SiteState.open(_known_image(config, image)) as state:
        state.hold(image, reason)
    output.ok(f"image {image.lower()} held: its failures no longer fail a sync")


@site_app.command("release")
def release_command(image: str = _IMAGE, config: Path = _CONFIG) -> None:
    """End a hold: the image's failures fail a sync again."""
    from gitreg.cli import output
    from gitreg.errors import UsageError
    from gitreg.site.config import load_config
    from gitreg.site.state import SiteState

    site = load_config(config)
    released = False
    if site.state_db.exists():
        with SiteState.open(site.state_db) as state:
            released = state.release(image)
    if not released:
        raise UsageError(f"image {image.lower()} is not held", hint="`gitreg site status` "
                         "lists the held images")
    output.ok(f"image {image.lower()} released")


def _known_image(config: Path, image: str) -> Path:
    """The state database, if the site has a record of ``image`` (else a usage error)."""
    from gitreg.errors import UsageError
    from gitreg.site.config import load_config
    from gitreg.site.state import SiteState

    site = load_config(config)
    if site.state_db.exists():
        with SiteState.open(site.state_db) as state:
            if state.image(image.lower()) is not None:
                return site.state_db
    raise UsageError(f"no image {image.lower()} in the site's records of {config}",
                     hint="`gitreg site status` lists the images the site knows")


@site_app.command("images")
def images_command(config: Path = _CONFIG, json_output: bool = _JSON) -> None:
    """The images the site holds: list, version, path and SHA-512."""
    from gitreg.cli import output
    from gitreg.site.config import load_config
    from gitreg.site.state import SiteState

    site = load_config(config)
    rows: list[dict[str, Any]] = []
    if site.state_db.exists():
        with SiteState.open(site.state_db) as state:
            rows = [{"uuid": i.uuid, "registry": i.registry, "list": i.list_uuid,
                     "list_version": i.list_version, "title": i.metadata.get("dc:title", ""),
                     "version": i.metadata.get("hv:version", ""), "size": i.size,
                     "path": i.path, "sha512": i.sha512}
                    for i in state.images(state="cached")]
    if json_output:
        output.data_json(rows)
        return
    for row in rows:
        output.data(f"{row['uuid']}  {row['title']} v{row['version']}  list {row['list']} "
                    f"v{row['list_version']}\n  {row['path']}\n  sha512 {row['sha512']}")


def _time(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def register(app: typer.Typer) -> None:
    """Add the ``site`` command group to the ``gitreg`` app."""
    app.add_typer(site_app, name="site")
