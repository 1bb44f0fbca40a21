"""`gitreg policy ...`: edit, sign and show the registry's trust policy.

Edits change the working copy's policy.json: a new, unsigned version
(published version + 1, however many edits). Root key holders then sign it
with `gitreg policy sign`, and `gitreg publish` commits it once it carries the
threshold of the old and of the new root keys.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gitreg.cli.registry import open_copy, registry_option

if TYPE_CHECKING:
    from gitreg.model.policy import PolicyEnvelope
    from gitreg.publish.workcopy import WorkingCopy

policy_app = typer.Typer(help="Edit, sign and show the registry's trust policy.",
                         no_args_is_help=True)


def _status(copy: WorkingCopy, draft: PolicyEnvelope) -> list[str]:
    """Where the draft stands against the old and the new root thresholds."""
    from gitreg.model.dates import utcnow
    from gitreg.verify.policy_rules import check_root_signatures

    now = utcnow()
    published = copy.published_policy()
    if draft.canonical_bytes() == published.canonical_bytes():
        return [f"policy version {published.version} is published; no draft"]
    old = check_root_signatures(draft, published.signed, at=now)
    new = check_root_signatures(draft, draft.signed, at=now)
    lines = [f"draft policy version {draft.version} (published: {published.version})",
             f"  root keys of version {published.version}: {old.describe()}",
             f"  root keys of version {draft.version}: {new.describe()}"]
    if old.enough and new.enough:
        lines.append("  ready: publish it with `gitreg publish`")
    else:
        lines.append("  sign it with `gitreg policy sign --key ROOT-KEY`")
    return lines


def _edit(registry: Path | None, what: str,
          edit: Callable[[PolicyEnvelope], PolicyEnvelope]) -> None:
    from gitreg.cli import output
    from gitreg.publish.drafts import edit_policy

    copy = open_copy(registry)
    published = copy.published_policy()
    draft = edit_policy(published, copy.draft_policy(), edit)
    copy.write_policy(draft)
    output.ok(what)
    for line in _status(copy, draft):
        output.info(line)


def _public_keys(specs: list[str]) -> list[Any]:
    from gitreg.model.dates import utcnow
    from gitreg.signing.keys import load_public_key

    now = utcnow()
    return [load_public_key(spec, at=now) for spec in specs]


def _key_id(spec: str) -> str:
    """A key id as given, or the id of the public key file / openpgp: key ``spec`` names."""
    if Path(spec).is_file() or spec.startswith("openpgp:"):
        return str(_public_keys([spec])[0].key_id)
    return spec


@policy_app.command("add-endorser")
def add_endorser(
    name: str = typer.Argument(..., help="The endorser's name."),
    keys: list[str] = typer.Option(
        ..., "--key", help="A public key: an SSH .pub file, openpgp:FINGERPRINT, an armoured "
        "OpenPGP key file or an X.509 certificate file. Repeatable."),
    allow: list[str] = typer.Option(
        [], "--allow", help="A path glob the endorser may change, e.g. 'imagelists/*'. "
        "Repeatable."),
    email: str | None = typer.Option(None, "--email", help="The endorser's contact address."),
    registry: Path | None = registry_option(),
) -> None:
    """Add an endorser with its keys (and, with --allow, what it may change)."""
    from gitreg.publish import policy_edit

    public = _public_keys(keys)
    _edit(registry, f"added endorser {name} with {len(public)} key(s)"
          + (f", allowed {', '.join(allow)}" if allow else ""),
          lambda p: policy_edit.add_endorser(p, name, public, email=email, allow=allow))


@policy_app.command("remove-endorser")
def remove_endorser(
    name: str = typer.Argument(..., help="The endorser to remove (its keys and rules go too)."),
    registry: Path | None = registry_option(),
) -> None:
    """Remove an endorser: its keys and its rule entries."""
    from gitreg.publish import policy_edit

    _edit(registry, f"removed endorser {name}",
          lambda p: policy_edit.remove_endorser(p, name))


@policy_app.command("add-attester")
def add_attester(
    name: str = typer.Argument(..., metavar="SITE", help="The attester's (site's) name."),
    keys: list[str] = typer.Option(
        ..., "--key", help="Its public key: an SSH .pub file, openpgp:FINGERPRINT or an "
        "armoured OpenPGP key file (it signs statements and commits). Repeatable."),
    email: str | None = typer.Option(None, "--email", help="The site's contact address."),
    registry: Path | None = registry_option(),
) -> None:
    """Let a site sign attestations: its keys and the rule attestations/SITE/*."""
    from gitreg.publish.policy_edit import add_attester as add
    from gitreg.publish.policy_edit import attester_glob

    public = _public_keys(keys)
    _edit(registry, f"added attester {name} with {len(public)} key(s), allowed "
          f"{attester_glob(name)}", lambda p: add(p, name, public, email=email))


@policy_app.command("remove-attester")
def remove_attester(
    name: str = typer.Argument(..., metavar="SITE", help="The attester to remove."),
    registry: Path | None = registry_option(),
) -> None:
    """Remove an attester: its keys and rule entries (its statements count no more)."""
    from gitreg.publish.policy_edit import remove_attester as remove

    _edit(registry, f"removed attester {name}", lambda p: remove(p, name))


@policy_app.command("add-key")
def add_key(
    name: str = typer.Argument(..., help="An endorser of the policy."),
    key: str = typer.Option(..., "--key", help="The new public key (as for add-endorser)."),
    registry: Path | None = registry_option(),
) -> None:
    """Give an existing endorser a further key (its rules stay as they are)."""
    from gitreg.publish import policy_edit

    public = _public_keys([key])[0]
    _edit(registry, f"added key {public.key_id} to endorser {name}",
          lambda p: policy_edit.add_key(p, name, public))


@policy_app.command("remove-key")
def remove_key(
    name: str = typer.Argument(..., help="An endorser of the policy."),
    key_id: str = typer.Argument(..., metavar="KEYID",
                                 help="The key's id (or its public key file)."),
    registry: Path | None = registry_option(),
) -> None:
    """Take a key from an endorser (never its last one)."""
    from gitreg.publish import policy_edit

    wanted = _key_id(key_id)
    _edit(registry, f"removed key {wanted} from endorser {name}",
          lambda p: policy_edit.remove_key(p, name, wanted))


@policy_app.command("allow")
def allow(
    name: str = typer.Argument(..., help="An endorser of the policy."),
    glob: str = typer.Argument(..., help="A path glob, e.g. imagelists/<uuid>.json."),
    registry: Path | None = registry_option(),
) -> None:
    """Allow an endorser to change the paths matching GLOB."""
    from gitreg.publish import policy_edit

    _edit(registry, f"allowed endorser {name} to change {glob}",
          lambda p: policy_edit.allow(p, name, glob))


@policy_app.command("add-root")
def add_root(
    key: str = typer.Argument(..., metavar="PUBKEY", help="The new root's public key."),
    registry: Path | None = registry_option(),
) -> None:
    """Add a root key (the threshold stays as it is)."""
    from gitreg.publish import policy_edit

    public = _public_keys([key])[0]
    _edit(registry, f"added root key {public.key_id}",
          lambda p: policy_edit.add_root(p, public))


@policy_app.command("remove-root")
def remove_root(
    key_id: str = typer.Argument(..., metavar="KEYID",
                                 help="The root key's id (or its public key file)."),
    registry: Path | None = registry_option(),
) -> None:
    """Remove a root key."""
    from gitreg.publish import policy_edit

    wanted = _key_id(key_id)
    _edit(registry, f"removed root key {wanted}",
          lambda p: policy_edit.remove_root(p, wanted))


@policy_app.command("threshold")
def threshold(
    count: int = typer.Argument(..., metavar="N", help="Root signatures a policy change needs."),
    registry: Path | None = registry_option(),
) -> None:
    """Set how many root signatures the next policy change needs."""
    from gitreg.publish import policy_edit

    _edit(registry, f"set the root threshold to {count}",
          lambda p: policy_edit.set_threshold(p, count))


@policy_app.command("expires")
def expires(
    days: int = typer.Argument(..., metavar="DAYS", help="Days from now until the policy expires."),
    registry: Path | None = registry_option(),
) -> None:
    """Renew the policy: the next version expires DAYS from now (root keys must sign it)."""
    from datetime import timedelta

    from gitreg.errors import UsageError
    from gitreg.model.dates import utcnow
    from gitreg.publish import policy_edit

    if days < 1:
        raise UsageError(f"DAYS must be at least 1, not {days}")
    until = utcnow() + timedelta(days=days)
    _edit(registry, f"set the policy to expire on {until:%Y-%m-%dT%H:%M:%SZ}",
          lambda p: policy_edit.with_expires(p, until))


@policy_app.command("heartbeat")
def heartbeat(
    keys: list[str] = typer.Option(
        [], "--key", help="A public key whose signed heartbeats count (as for add-endorser); "
        "repeatable; replaces the heartbeat keys."),
    max_age: str | None = typer.Option(
        None, "--max-age", help="How old the newest heartbeat may be, e.g. 6h, 90m, 2d."),
    remove: bool = typer.Option(False, "--remove", help="Require no heartbeat any more."),
    registry: Path | None = registry_option(),
) -> None:
    """Require sites to see a fresh signed heartbeat (`gitreg server heartbeat`)."""
    from gitreg.errors import UsageError
    from gitreg.publish.policy_edit import remove_heartbeat, set_heartbeat

    if remove:
        if keys or max_age is not None:
            raise UsageError("--remove takes no --key or --max-age")
        _edit(registry, "removed the heartbeat requirement", remove_heartbeat)
        return
    if not keys and max_age is None:
        raise UsageError("give --key and --max-age (or --remove)")
    public = _public_keys(keys)

    what = "heartbeats required" + (f" by {', '.join(k.key_id for k in public)}"
                                    if public else "") \
        + (f", at most {max_age} old" if max_age else "")
    _edit(registry, what, lambda p: set_heartbeat(p, public, max_age))


@policy_app.command("sign")
def sign(
    key: str = typer.Option(..., "--key", help="A root signing key: an SSH private key file "
                            "or openpgp:FINGERPRINT."),
    registry: Path | None = registry_option(),
) -> None:
    """Add a root signature to the draft policy."""
    from gitreg.cli import output
    from gitreg.errors import UsageError
    from gitreg.publish.drafts import policy_changed
    from gitreg.publish.policy_edit import add_signature
    from gitreg.publish.signing_keys import load_signing_key

    copy = open_copy(registry)
    published = copy.published_policy()
    draft = copy.draft_policy()
    if not policy_changed(published, draft):
        raise UsageError(f"{copy.path('policy.json')}: no unpublished policy change to sign "
                         f"(version {published.version} is published)",
                         hint="edit it first, e.g. `gitreg policy add-endorser`")
    signer = load_signing_key(key)
    roots = set(published.signed.root_keys) | set(draft.signed.root_keys)
    if signer.key_id not in roots:
        raise UsageError(f"key {signer.key_id} is not a root key of policy version "
                         f"{published.version} or of the draft version {draft.version}")
    signed = add_signature(draft, signer)
    copy.write_policy(signed)
    output.ok(f"signed draft policy version {signed.version} with {signer.key_id}")
    for line in _status(copy, signed):
        output.info(line)


@policy_app.command("show")
def show(
    json_output: bool = typer.Option(False, "--json", help="Print policy.json on stdout."),
    registry: Path | None = registry_option(),
) -> None:
    """Show the policy of the working copy (the draft, if there is one)."""
    from gitreg.cli import output
    from gitreg.model.dates import format_date

    copy = open_copy(registry)
    draft = copy.draft_policy()
    if json_output:
        output.data_json(draft.to_dict())
        return
    policy = draft.signed
    lines = [f"registry {policy.registry}",
             f"version {policy.version}, expires {format_date(policy.expires)}",
             f"root keys (threshold {policy.threshold} of {len(policy.root_keys)}):"]
    lines += [f"  {key_id} ({policy.keys[key_id].get('scheme')})"
              + (f" endorser {owner}" if (owner := policy.endorser_of_key(key_id)) else "")
              for key_id in policy.root_keys]
    lines.append("endorsers:" if policy.endorsers else "endorsers: none")
    for name, endorser in sorted(policy.endorsers.items()):
        contact = f" <{endorser.email}>" if endorser.email else ""
        lines.append(f"  {name}{contact}")
        lines += [f"    key {key_id} ({policy.keys[key_id].get('scheme')})"
                  for key_id in endorser.keys]
    if policy.attesters:
        lines.append("attesters:")
    for name, attester in sorted(policy.attesters.items()):
        contact = f" <{attester.email}>" if attester.email else ""
        lines.append(f"  {name}{contact}")
        lines += [f"    key {key_id} ({policy.keys[key_id].get('scheme')})"
                  for key_id in attester.keys]
    lines.append("rules:" if policy.rules else "rules: none (nobody may change a list)")
    lines += [f"  {', '.join(rule.paths)}: "
              + ", ".join([*rule.endorsers, *(f"attester {a}" for a in rule.attesters)])
              for rule in policy.rules]
    limits = policy.limits
    lines.append(f"limits: file size {limits.max_file_size} bytes, list lifetime "
                 f"{limits.max_list_lifetime_days} days, {limits.max_images_per_list} images "
                 "per list")
    beat = policy.heartbeat
    lines.append(f"heartbeat: by {', '.join(beat.keys)}, at most {beat.max_age_text} old"
                 if beat else "heartbeat: not required")
    output.data("\n".join(lines))
    for line in _status(copy, draft):
        output.info(line)


def register(app: typer.Typer) -> None:
    """Add the ``policy`` command group to the ``gitreg`` app."""
    app.add_typer(policy_app, name="policy")
