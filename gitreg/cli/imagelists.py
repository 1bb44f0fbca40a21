"""`gitreg list ...`: create, edit and show imagelists in the working copy.

LIST is a list UUID or a title that names exactly one list. Edits change the
working copy's draft; `gitreg publish` signs and commits them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gitreg.cli.registry import open_copy, registry_option

if TYPE_CHECKING:
    from gitreg.model.imagelist import Imagelist
    from gitreg.publish.workcopy import WorkingCopy

list_app = typer.Typer(help="Create, edit and show imagelists.", no_args_is_help=True)


def find_list(copy: WorkingCopy, spec: str) -> Imagelist:
    from gitreg.publish.drafts import resolve_list

    return resolve_list(copy.draft_lists(), spec)


def json_value_option() -> Any:
    """The ``--json`` flag of the ``set`` commands."""
    return typer.Option(False, "--json", help="VALUE is JSON, not a string.")


def set_draft_key(registry: Path | None, imagelist: str, image: str | None, key: str,
                  value: str, *, as_json: bool) -> None:
    """Set one key of a draft list, or of one of its images, and write the list."""
    from gitreg.cli import output
    from gitreg.publish.drafts import (
        describe_value,
        parse_value,
        resolve_image,
        set_image_key,
        set_list_key,
    )

    copy = open_copy(registry)
    found = find_list(copy, imagelist)
    target = resolve_image(found, image) if image is not None else None
    parsed = parse_value(key, value, as_json=as_json)
    if target is None:
        set_list_key(found, key, parsed)
        where = f"imagelist {found.identifier}"
    else:
        set_image_key(found, target.identifier, key, parsed)
        where = f"imagelist {found.identifier}, image {target.identifier}"
    copy.write_list(found)
    output.ok(f"{where}: {key} = {describe_value(parsed)}")


def list_state(copy: WorkingCopy, imagelist: Imagelist) -> tuple[str, str | None]:
    """("new" | "modified" | "published", the published version)."""
    from gitreg.verify import layout

    published = copy.published(layout.list_path(imagelist.identifier))
    if published is None:
        return "new", None
    old = copy.published_list(imagelist.identifier)
    version = old.version if old else None
    return ("published" if published == imagelist.canonical_bytes() else "modified"), version


@list_app.command("new")
def new(
    *,
    title: str = typer.Option(..., "--title", help="The list's title (dc:title)."),
    uuid: str | None = typer.Option(None, "--uuid", help="The list's UUID (default: new)."),
    description: str | None = typer.Option(None, "--description",
                                           help="dc:description (default: the title)."),
    endorser: str | None = typer.Option(
        None, "--endorser", help="The policy endorser the list is for (default: "
        "endorser.name, the endorser whose email is yours, or the only one)."),
    dn: str | None = typer.Option(None, "--dn", help="hv:dn (default: endorser.dn, the "
                                  "X.509 endorser's subject, or /O=gitreg/CN=ENDORSER)."),
    ca: str | None = typer.Option(None, "--ca", help="hv:ca (default: endorser.ca, the "
                                  "X.509 endorser's CA, or /O=gitreg/CN=registry UUID)."),
    email: str | None = typer.Option(None, "--email", help="hv:email (default: "
                                     "endorser.email, the policy's email, git user.email)."),
    creator: str | None = typer.Option(None, "--creator", help="dc:creator (default: "
                                       "endorser.creator, git user.name, the endorser)."),
    registry: Path | None = registry_option(),
) -> None:
    """Create an empty draft list; prints only its UUID."""
    from gitreg.cli import output
    from gitreg.errors import UsageError
    from gitreg.publish.drafts import EndorserFields, new_list
    from gitreg.publish.endorser_fields import SETTINGS, find_endorser, resolve_fields
    from gitreg.publish.local_config import git_identity
    from gitreg.verify import layout

    copy = open_copy(registry)
    config = copy.config
    policy = copy.draft_policy().signed
    identity = git_identity(copy.workdir)
    who = find_endorser(policy, name=endorser or config.get("endorser.name"),
                        emails=(email, config.get("endorser.email"), identity.email))
    resolved = resolve_fields(
        given={"hv:dn": dn, "hv:ca": ca, "hv:email": email, "dc:creator": creator},
        settings={setting: config.get(setting) for setting in SETTINGS.values()},
        policy=policy, endorser=who, identity=identity)
    fields = EndorserFields(dn=resolved["hv:dn"], ca=resolved["hv:ca"],
                            email=resolved["hv:email"], creator=resolved["dc:creator"])
    imagelist = new_list(title, endorser=fields, identifier=uuid, description=description,
                         source=config.get("list.source") or copy.info().name,
                         uri_template=config.get("list.uri"))
    relative = layout.list_path(imagelist.identifier)
    if copy.path(relative).exists() or copy.published(relative) is not None:
        raise UsageError(f"{relative}: a list with UUID {imagelist.identifier} already exists")
    copy.write_list(imagelist)
    output.ok(f"created draft list {imagelist.identifier} ({title}) in {relative}")
    output.data(imagelist.identifier)


@list_app.command("set")
def set_key(
    imagelist: str = typer.Argument(..., metavar="LIST"),
    key: str = typer.Argument(..., help="A list key (dc:title, hv:uri, ad:vo, ...); the "
                              "endorser keys hv:dn, hv:ca, hv:email, dc:creator are accepted."),
    value: str = typer.Argument(...),
    as_json: bool = json_value_option(),
    registry: Path | None = registry_option(),
) -> None:
    """Set one key of a list."""
    set_draft_key(registry, imagelist, None, key, value, as_json=as_json)


def _summary(copy: WorkingCopy, imagelist: Imagelist) -> dict[str, Any]:
    state, published = list_state(copy, imagelist)
    return {"identifier": imagelist.identifier, "title": imagelist.title, "state": state,
            "published_version": published, "draft_version": imagelist.version,
            "images": len(imagelist.images)}


@list_app.command("show")
def show(
    imagelist: str = typer.Argument(..., metavar="LIST"),
    json_output: bool = typer.Option(False, "--json",
                                     help="Print the list document (the draft) on stdout."),
    registry: Path | None = registry_option(),
) -> None:
    """Show a list: its keys and images (the working copy's draft)."""
    from gitreg.cli import output

    copy = open_copy(registry)
    found = find_list(copy, imagelist)
    if json_output:
        output.data_json(found.to_dict())
        return
    state, published = list_state(copy, found)
    lines = [f"{found.identifier}  {found.title}",
             f"  state: {state}" + (f" (published version {published})" if published else ""),
             f"  version: {found.version}",
             f"  created: {found.get('dc:date:created')}  expires: "
             f"{found.get('dc:date:expires')}",
             f"  description: {found.description}",
             f"  endorser: {found.endorser_creator} <{found.endorser_email}> "
             f"{found.endorser_dn} (CA {found.endorser_ca})",
             f"  uri: {found.uri}",
             f"  images: {len(found.images)}"]
    for image in found.images:
        lines.append(f"    {image.identifier}  {image.title}  version {image.version}  "
                     f"{image.os} {image.osversion} {image.arch}  {image.size} bytes")
        lines.append(f"      {image.uri}")
    output.data("\n".join(lines))


@list_app.command("ls")
def ls(
    json_output: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
    registry: Path | None = registry_option(),
) -> None:
    """List the registry's lists: UUID, state, versions, image count, title."""
    from gitreg.cli import output

    copy = open_copy(registry)
    summaries = [_summary(copy, il) for il in copy.draft_lists().values()]
    if json_output:
        output.data_json(summaries)
        return
    if not summaries:
        output.info("no lists yet: create one with `gitreg list new --title TITLE`")
        return
    output.data("\n".join(
        f"{s['identifier']}  {s['state']:<9}  {s['published_version'] or '-':<8}  "
        f"{s['images']:>3} image(s)  {s['title']}" for s in summaries))


def register(app: typer.Typer) -> None:
    """Add the ``list`` command group to the ``gitreg`` app."""
    app.add_typer(list_app, name="list")
