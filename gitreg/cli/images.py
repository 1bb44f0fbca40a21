"""`gitreg image ...`: add, change, revoke and upload the images of a list.

LIST is a list UUID or unambiguous title; IMAGE an image UUID or a title
unique in its list. Edits change the working copy's draft; `gitreg publish`
signs and commits them.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gitreg.cli.imagelists import find_list, json_value_option, set_draft_key
from gitreg.cli.registry import open_copy, registry_option

image_app = typer.Typer(help="Add, change, revoke and upload images.", no_args_is_help=True)

_MAX_DESCRIPTION_MD = 64 * 1024


def _read_markdown(path: Path) -> str:
    from gitreg.errors import UnreachableError, UsageError

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"--description-md {path}: no such file") from None
    except OSError as exc:
        raise UnreachableError(f"--description-md {path}: cannot read: {exc.strerror}") \
            from exc
    if len(data) > _MAX_DESCRIPTION_MD:
        raise UsageError(f"--description-md {path}: larger than {_MAX_DESCRIPTION_MD} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--description-md {path}: not UTF-8 text") from None


@image_app.command("add")
def add(
    *,
    imagelist: str = typer.Argument(..., metavar="LIST"),
    uri: str | None = typer.Option(None, "--uri", help="Where sites download the image "
                                   "(hv:uri); without it, set by `gitreg image upload`."),
    file: Path | None = typer.Option(None, "--file", help="The image file: size and SHA-512 "
                                     "are computed from it (read once)."),
    size: int | None = typer.Option(None, "--size", help="Size in bytes (without --file)."),
    sha512: str | None = typer.Option(None, "--sha512", help="SHA-512, 128 hex digits "
                                      "(without --file)."),
    title: str = typer.Option(..., "--title", help="dc:title."),
    os_name: str = typer.Option(..., "--os", help="sl:os, e.g. Linux."),
    osversion: str = typer.Option(..., "--osversion", help="sl:osversion, e.g. 'AlmaLinux 9'."),
    arch: str = typer.Option(..., "--arch", help="sl:arch, e.g. x86_64."),
    image_format: str | None = typer.Option(None, "--format", help="hv:format, e.g. qcow2."),
    hypervisor: str = typer.Option("QEMU-KVM", "--hypervisor", help="hv:hypervisor."),
    version: str = typer.Option("1", "--version", help="The image's hv:version."),
    uuid: str | None = typer.Option(None, "--uuid", help="The image UUID (default: new)."),
    series: str | None = typer.Option(None, "--series",
                                      help="gitreg:series, e.g. 'almalinux-9'."),
    description: str | None = typer.Option(None, "--description",
                                           help="dc:description (default: the title)."),
    comments: str = typer.Option("", "--comments", help="sl:comments."),
    description_md: Path | None = typer.Option(
        None, "--description-md", help="A Markdown file: gitreg:description_md."),
    registry: Path | None = registry_option(),
) -> None:
    """Add an image to a list; prints only the image UUID."""
    from gitreg.cli import output
    from gitreg.errors import UsageError
    from gitreg.publish.drafts import ImageFields, add_image

    if file is not None and (size is not None or sha512 is not None):
        raise UsageError("give either --file or --size and --sha512, not both")
    if file is None and (size is None or sha512 is None):
        raise UsageError("give --file, or both --size and --sha512")
    markdown = _read_markdown(description_md) if description_md is not None else None
    copy = open_copy(registry)
    lists = copy.draft_lists()
    from gitreg.publish.drafts import resolve_list

    found = resolve_list(lists, imagelist)
    if file is not None:
        from gitreg.publish.imagefile import measure

        digest = measure(file)
        size, sha512 = digest.size, digest.sha512
    assert size is not None and sha512 is not None
    fields = ImageFields(uri=uri or "", size=size, sha512=sha512, title=title, os=os_name,
                         osversion=osversion, arch=arch, description=description,
                         comments=comments, format=image_format, hypervisor=hypervisor,
                         version=version, identifier=uuid, series=series,
                         description_md=markdown)
    image_id = add_image(found, fields, lists.values())
    copy.write_list(found)
    output.ok(f"imagelist {found.identifier}: added image {image_id} ({title}, {size} bytes)")
    if not uri:
        output.info(f"image {image_id} has no hv:uri yet: `gitreg image upload` sets it "
                    "(publish refuses it until then)")
    output.data(image_id)


@image_app.command("set")
def set_key(
    *,
    imagelist: str = typer.Argument(..., metavar="LIST"),
    image: str = typer.Argument(..., metavar="IMAGE"),
    key: str = typer.Argument(..., help="An image key (hv:uri, sl:osversion, ...)."),
    value: str = typer.Argument(...),
    as_json: bool = json_value_option(),
    registry: Path | None = registry_option(),
) -> None:
    """Set one key of an image."""
    set_draft_key(registry, imagelist, image, key, value, as_json=as_json)


@image_app.command("update")
def update(
    *,
    imagelist: str = typer.Argument(..., metavar="LIST"),
    image: str = typer.Argument(..., metavar="IMAGE"),
    file: Path = typer.Option(..., "--file", help="The new image file: size and SHA-512 "
                              "are computed from it (read once)."),
    uri: str | None = typer.Option(None, "--uri", help="The new file's hv:uri."),
    osversion: str | None = typer.Option(None, "--osversion", help="A new sl:osversion."),
    registry: Path | None = registry_option(),
) -> None:
    """A new version of an image: size, SHA-512 (and --uri) from --file, hv:version bumped.

    The version moves past the published one once per publication; an
    unchanged file changes nothing. Prints the image's hv:version.
    """
    from gitreg.cli import output
    from gitreg.publish.drafts import resolve_image
    from gitreg.publish.image_update import update_image
    from gitreg.publish.imagefile import measure

    copy = open_copy(registry)
    found = find_list(copy, imagelist)
    target = resolve_image(found, image)
    digest = measure(file)
    result = update_image(found, target.identifier, digest,
                          published=copy.published_list(found.identifier), uri=uri,
                          osversion=osversion)
    where = f"imagelist {found.identifier}, image {target.identifier}"
    if not result.changed:
        output.ok(f"{where}: unchanged ({file} is the file the list names)")
    else:
        copy.write_list(found)
        changed = ", ".join(f"{key} {old} -> {new}" if key in ("hv:version", "hv:size")
                            else key for key, (old, new) in result.changes.items())
        output.ok(f"{where}: updated {changed}")
    output.data(found.image(target.identifier).version)


@image_app.command("remove")
def remove(
    imagelist: str = typer.Argument(..., metavar="LIST"),
    image: str = typer.Argument(..., metavar="IMAGE"),
    registry: Path | None = registry_option(),
) -> None:
    """Remove (revoke) an image: sites drop it once the new list version is published."""
    from gitreg.cli import output
    from gitreg.publish.drafts import resolve_image

    copy = open_copy(registry)
    found = find_list(copy, imagelist)
    target = resolve_image(found, image)
    found.remove_image(target.identifier)
    copy.write_list(found)
    output.ok(f"imagelist {found.identifier}: removed image {target.identifier} "
              f"({target.title}); publish to revoke it")


@image_app.command("upload")
def upload(
    imagelist: str = typer.Argument(..., metavar="LIST"),
    image: str = typer.Argument(..., metavar="IMAGE"),
    file: Path = typer.Argument(..., help="The image file to upload."),
    to: str = typer.Option(..., "--to", help="An upload target name (upload.<name>.* in the "
                           "local config) or a file://, scp:// or ssh:// URL."),
    registry: Path | None = registry_option(),
) -> None:
    """Copy the image file to storage and set the image's hv:uri, size and SHA-512.

    Prints the new hv:uri.
    """
    from gitreg.cli import output
    from gitreg.publish.drafts import resolve_image
    from gitreg.publish.imagefile import measure
    from gitreg.publish.upload import plan_upload
    from gitreg.publish.upload import upload as do_upload

    copy = open_copy(registry)
    found = find_list(copy, imagelist)
    target = resolve_image(found, image)
    plan = plan_upload(to, file.name, copy.config.upload_targets())
    digest = measure(file)
    output.info(f"uploading {file} ({digest.size} bytes) to {plan.destination.url}")
    do_upload(file, plan, digest)
    if target.size != digest.size or target.sha512 != digest.sha512:
        output.warn(f"image {target.identifier}: size and SHA-512 updated from {file}")
    found.set_image_key(target.identifier, "hv:uri", plan.uri)
    found.set_image_key(target.identifier, "hv:size", digest.size)
    found.set_image_key(target.identifier, "sl:checksum:sha512", digest.sha512)
    copy.write_list(found)
    output.ok(f"imagelist {found.identifier}, image {target.identifier}: hv:uri = {plan.uri}")
    output.data(plan.uri)


def register(app: typer.Typer) -> None:
    """Add the ``image`` command group to the ``gitreg`` app."""
    app.add_typer(image_app, name="image")
