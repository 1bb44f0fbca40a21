"""The ``hv:endorser`` fields of a new list, without inventing X.509 names by hand.

HEPiX lists name their endorser with four X.509 fields (``hv:dn``, ``hv:ca``,
``hv:email``, ``dc:creator``). An X.509 endorser's come from its certificate
(the policy holds its subject and CA DNs); an SSH or OpenPGP endorser has no
certificate, so gitreg fills them in one documented way (docs/endorser.md,
"Endorser fields"):

- ``hv:dn`` = ``/O=gitreg/CN=<endorser name>``,
- ``hv:ca`` = ``/O=gitreg/CN=registry <registry UUID>`` (the policy vouches
  for the key, not a CA),
- ``hv:email``: the policy entry's email, else git's ``user.email``,
- ``dc:creator``: git's ``user.name``, else the endorser name.

Explicit options and ``gitreg.endorser.*`` settings always win. Pure: the
caller reads the policy, the settings and git's identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gitreg.errors import UsageError
from gitreg.model.policy import Policy

# Which setting provides which field, for messages and the lookup.
SETTINGS = {"hv:dn": "endorser.dn", "hv:ca": "endorser.ca",
            "hv:email": "endorser.email", "dc:creator": "endorser.creator"}


@dataclass(frozen=True)
class GitIdentity:
    """git's ``user.name`` and ``user.email`` (either may be unset)."""

    name: str | None = None
    email: str | None = None


def _slash_safe(text: str) -> str:
    # A "/" would start a new RDN in OpenSSL slash form.
    return " ".join(text.replace("/", " ").split())


def find_endorser(policy: Policy, *, name: str | None,
                  emails: tuple[str | None, ...]) -> str | None:
    """The policy endorser a new list is for: ``name``, else the one whose email is one
    of ``emails``, else the only endorser. None when that names nobody."""
    if name is not None:
        if name not in policy.endorsers:
            known = ", ".join(sorted(policy.endorsers)) or "none"
            raise UsageError(f"--endorser {name}: no such endorser in the policy "
                             f"(endorsers: {known})")
        return name
    for email in emails:
        if not email:
            continue
        matches = [n for n, e in policy.endorsers.items() if e.email == email]
        if len(matches) == 1:
            return matches[0]
    if len(policy.endorsers) == 1:
        return next(iter(policy.endorsers))
    return None


def x509_names(policy: Policy, endorser: str) -> tuple[str, str] | None:
    """(subject DN, CA DN) of the endorser's X.509 key, if it has one."""
    for key_id in policy.endorser_keys(endorser):
        material = policy.keys[key_id]
        if material.get("scheme") == "x509":
            return str(material["dn"]), str(material["ca_dn"])
    return None


def resolve_fields(*, given: Mapping[str, str | None], settings: Mapping[str, str | None],
                   policy: Policy, endorser: str | None,
                   identity: GitIdentity) -> dict[str, str]:
    """The four ``hv:x509`` fields: ``given`` (options), then ``settings``
    (``endorser.*``), then the defaults above. UsageError naming what is missing."""
    fields: dict[str, str | None] = {
        key: given.get(key) or settings.get(setting) for key, setting in SETTINGS.items()}
    entry = policy.endorsers.get(endorser) if endorser is not None else None
    names = x509_names(policy, endorser) if endorser is not None else None
    if names is not None:
        # An X.509 endorser: the certificate's names, which publish and the hook bind.
        fields["hv:dn"] = fields["hv:dn"] or names[0]
        fields["hv:ca"] = fields["hv:ca"] or names[1]
    elif endorser is not None:
        fields["hv:dn"] = fields["hv:dn"] or f"/O=gitreg/CN={endorser}"
        fields["hv:ca"] = fields["hv:ca"] or f"/O=gitreg/CN=registry {policy.registry}"
    fields["hv:email"] = fields["hv:email"] or (entry.email if entry else None) or identity.email
    fields["dc:creator"] = fields["dc:creator"] or identity.name or endorser
    if endorser is None and fields["dc:creator"] and not fields["hv:dn"] and not fields["hv:ca"]:
        # Nobody in the policy to name: the person git knows, under the registry.
        fields["hv:dn"] = f"/O=gitreg/CN={_slash_safe(str(fields['dc:creator']))}"
        fields["hv:ca"] = f"/O=gitreg/CN=registry {policy.registry}"
    return complete(fields)


def complete(fields: Mapping[str, str | None]) -> dict[str, str]:
    """``fields`` if all four are set, else a UsageError naming the missing ones."""
    missing = [key for key in SETTINGS if not fields.get(key)]
    if missing:
        names_text = ", ".join(f"{key} (gitreg.{SETTINGS[key]})" for key in missing)
        raise UsageError(f"the endorser fields {names_text} are not set",
                         hint="pass --endorser NAME (an endorser of the policy), "
                              "--dn/--ca/--email/--creator, or set git's user.name and "
                              "user.email")
    return {key: str(fields[key]) for key in SETTINGS}
