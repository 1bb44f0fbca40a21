"""The registry trust policy, ``policy.json``: a signed envelope, parsed strictly.

Pure: bytes and dicts in, objects and typed errors out. Signatures are
verified only with ``PublicKey`` objects built from the policy's own key
material, never with an ambient keyring or CA bundle.

The ``signed`` dict is kept as parsed and written back as is, so unknown
top-level keys (and unknown fields of key material and limits) survive a
round trip byte for byte. Inside ``root``, ``endorsers`` and ``rules`` unknown
keys are refused: an older gitreg ignoring a newer restriction there would
grant more than the root holders signed for.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from gitreg.errors import (
    ExpiredError,
    GitregError,
    InvalidDocumentError,
    InvalidKeyError,
    Problem,
    UntrustedSignerError,
    UsageError,
)
from gitreg.model import strictjson
from gitreg.model.attestation import ATTESTER_NAME
from gitreg.model.dates import DATE_FORMAT, format_date, parse_date
from gitreg.model.globs import glob_matches, glob_problem, is_literal
from gitreg.model.registry_info import uuid_problem
from gitreg.signing import schemes
from gitreg.signing.interface import PublicKey

POLICY_FILE = "policy.json"
SCHEMES = tuple(schemes.SCHEMES)
SIG_SUFFIX = ".sig"

ENDORSER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")

_SIGNED_REQUIRED = ("version", "expires", "registry", "root", "keys", "endorsers", "rules")
_ROOT_FIELDS = ("keys", "threshold")
# Endorser and attester entries alike.
_ENDORSER_FIELDS = ("keys", "email", "expires")
_RULE_FIELDS = ("paths", "endorsers", "attesters")
# Where attestations live: a rule naming attesters covers only paths below it.
ATTESTATION_DIR = "attestations/"
_SIGNATURE_FIELDS = ("keyid", "sig")
_HEARTBEAT_FIELDS = ("keys", "max_age")
# "<n><unit>", unit m(inutes), h(ours) or d(ays): what an operator writes in a cron line.
_DURATION = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_DURATION_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
MAX_HEARTBEAT_AGE = timedelta(days=365)


@dataclass(frozen=True)
class Limits:
    """Size and lifetime caps the verifier enforces (``signed.limits``)."""

    max_file_size: int = 1 << 20
    max_list_lifetime_days: int = 365
    max_images_per_list: int = 1000

    def to_dict(self) -> dict[str, int]:
        return {"max_file_size": self.max_file_size,
                "max_list_lifetime_days": self.max_list_lifetime_days,
                "max_images_per_list": self.max_images_per_list}


_LIMIT_NAMES = tuple(Limits().to_dict())


@dataclass(frozen=True)
class Endorser:
    """One endorser: who may sign lists and commits with which keys."""

    name: str
    keys: tuple[str, ...]
    email: str | None = None
    expires: datetime | None = None


@dataclass(frozen=True)
class Attester(Endorser):
    """One attester (a site): who may sign statements about images, with which keys."""


@dataclass(frozen=True)
class Rule:
    """Paths (globs) that the named endorsers (lists) or attesters (attestations) may change."""

    paths: tuple[str, ...]
    endorsers: tuple[str, ...]
    attesters: tuple[str, ...] = ()

    def covers(self, path: str) -> bool:
        """Whether ``path`` (or, for ``X.sig``, the list ``X`` it signs) matches a glob."""
        candidates = [path]
        if path.endswith(SIG_SUFFIX):
            candidates.append(path[: -len(SIG_SUFFIX)])
        return any(glob_matches(glob, p) for glob in self.paths for p in candidates)


@dataclass(frozen=True)
class HeartbeatPolicy:
    """``signed.heartbeat``: who signs the freshness signal and how old it may get."""

    keys: tuple[str, ...]
    max_age: timedelta
    max_age_text: str


def parse_duration(text: str) -> timedelta:
    """``6h``, ``90m``, ``2d`` as a ``timedelta``; ``ValueError`` saying what is accepted."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{_q(text)} is not a duration: write a whole number and m, h "
                         "or d, e.g. \"6h\"")
    value = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if value > MAX_HEARTBEAT_AGE:
        raise ValueError(f"{_q(text)} is longer than {MAX_HEARTBEAT_AGE.days} days")
    return value


@dataclass(frozen=True)
class PolicySignature:
    """One root signature over the canonical bytes of ``signed``."""

    keyid: str
    sig: str

    def to_dict(self) -> dict[str, str]:
        return {"keyid": self.keyid, "sig": self.sig}


# --- validation ------------------------------------------------------------


def _member(parent: str, key: str) -> str:
    """JSON path of ``key`` below ``parent``; ids with ``:`` or ``/`` are bracket-quoted."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(key, ensure_ascii=False)}]"


def _key_path(key_id: str) -> str:
    """JSON path of a key entry: always bracket-quoted, as ids are never names."""
    return f"signed.keys[{_q(key_id)}]"


def _q(value: Any) -> str:
    """A name or id quoted for a message, the way JSON spells it."""
    return json.dumps(value, ensure_ascii=False)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(
                type(value), type(value).__name__)


class _Checker:
    """Collects every problem of one document, each with its JSON path."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message, self.source))

    def expect(self, value: Any, kind: type, path: str, what: str) -> bool:
        # bool is an int subclass in Python but not an integer in JSON.
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            self.add(path, f"must be {what}, not {_type_name(value)}")
        return ok

    def fields(self, obj: dict[str, Any], path: str, allowed: Sequence[str],
               required: Sequence[str]) -> None:
        for key in obj:
            if key not in allowed:
                self.add(_member(path, key), f"unknown key (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in obj:
                self.add(_member(path, key), "missing")

    def date(self, value: Any, path: str) -> None:
        if not self.expect(value, str, path, f"a date {DATE_FORMAT}"):
            return
        try:
            parse_date(value)
        except ValueError as exc:
            self.add(path, str(exc))

    def id_list(self, value: Any, path: str, what: str) -> list[tuple[int, str]]:
        """A non-empty array of unique strings; returns the valid ones with their index."""
        if not self.expect(value, list, path, f"an array of {what}"):
            return []
        if not value:
            self.add(path, f"must list at least one {what[:-1]}")
        seen: list[tuple[int, str]] = []
        for i, item in enumerate(value):
            at = f"{path}[{i}]"
            if not self.expect(item, str, at, "a string"):
                continue
            if any(item == s for _, s in seen):
                self.add(at, f"{_q(item)} is listed twice")
                continue
            seen.append((i, item))
        return seen


def _check_keys(c: _Checker, keys: Any, path: str) -> None:
    if not c.expect(keys, dict, path, "an object (key id -> key material)"):
        return
    for key_id, material in keys.items():
        at = f"{path}[{_q(key_id)}]"
        if not c.expect(material, dict, at, "an object (key material)"):
            continue
        scheme = material.get("scheme")
        if "scheme" not in material:
            c.add(_member(at, "scheme"), "missing")
            continue
        if scheme not in SCHEMES:
            c.add(_member(at, "scheme"), f"must be one of {', '.join(SCHEMES)}, "
                                         f"not {_q(scheme)}")
            continue
        # Key ids exactly as PublicKey.key_id spells them (signing/schemes.py).
        info = schemes.SCHEMES[scheme]
        if not info.key_id_shape.fullmatch(key_id):
            c.add(at, f"{_q(key_id)} is not a {scheme} key id ({info.key_id_hint})")


def _check_root(c: _Checker, root: Any, path: str, keys: Mapping[str, Any]) -> None:
    if not c.expect(root, dict, path, "an object"):
        return
    c.fields(root, path, _ROOT_FIELDS, _ROOT_FIELDS)
    root_keys: list[str] = []
    if "keys" in root:
        listed = c.id_list(root["keys"], f"{path}.keys", "key ids")
        for i, key_id in listed:
            if key_id not in keys:
                c.add(f"{path}.keys[{i}]", f"unknown key {_q(key_id)} (not in signed.keys)")
        root_keys = [key_id for _, key_id in listed]
    if "threshold" in root and c.expect(root["threshold"], int, f"{path}.threshold",
                                        "an integer"):
        threshold = root["threshold"]
        if not 1 <= threshold <= max(len(root_keys), 1):
            c.add(f"{path}.threshold",
                  f"must be between 1 and the number of root keys ({len(root_keys)}), "
                  f"not {threshold}")


def _check_key_holders(c: _Checker, holders: Any, path: str, keys: Mapping[str, Any], *,
                       kind: str, name_re: re.Pattern[str], name_rule: str,
                       owner: dict[str, str]) -> None:
    """Endorsers or attesters: name -> {keys, email, expires}.

    ``owner`` (key id -> "endorser NAME") is shared between the two kinds: one
    key, one holder, otherwise a signature could not say who signed.
    """
    if not c.expect(holders, dict, path, f"an object (name -> {kind})"):
        return
    for name, entry in holders.items():
        at = _member(path, name)
        if not name_re.fullmatch(name):
            c.add(at, f"invalid {kind} name {_q(name)} ({name_rule})")
        if not c.expect(entry, dict, at, "an object"):
            continue
        c.fields(entry, at, _ENDORSER_FIELDS, ("keys",))
        if "keys" in entry:
            for i, key_id in c.id_list(entry["keys"], f"{at}.keys", "key ids"):
                key_at = f"{at}.keys[{i}]"
                if key_id not in keys:
                    c.add(key_at, f"unknown key {_q(key_id)} (not in signed.keys)")
                elif key_id in owner:
                    c.add(key_at, f"key {_q(key_id)} already belongs to {owner[key_id]}")
                else:
                    owner[key_id] = f"{kind} {_q(name)}"
        if "email" in entry and c.expect(entry["email"], str, f"{at}.email", "a string") \
                and "@" not in entry["email"]:
            c.add(f"{at}.email", f"not an e-mail address: {_q(entry['email'])}")
        if "expires" in entry:
            c.date(entry["expires"], f"{at}.expires")


def _check_rules(c: _Checker, rules: Any, path: str, endorsers: Any,
                 attesters: Any = None) -> None:
    if not c.expect(rules, list, path, "an array of rules"):
        return
    known = endorsers if isinstance(endorsers, dict) else {}
    sites = attesters if isinstance(attesters, dict) else {}
    for i, rule in enumerate(rules):
        at = f"{path}[{i}]"
        if not c.expect(rule, dict, at, "an object"):
            continue
        c.fields(rule, at, _RULE_FIELDS, ("paths",))
        if "endorsers" not in rule and "attesters" not in rule:
            c.add(f"{at}.endorsers", "missing (a rule names endorsers or attesters)")
        if "paths" in rule:
            for j, glob in c.id_list(rule["paths"], f"{at}.paths", "path globs"):
                if (why := glob_problem(glob)) is not None:
                    c.add(f"{at}.paths[{j}]", why)
                elif "attesters" in rule and not glob.startswith(ATTESTATION_DIR):
                    c.add(f"{at}.paths[{j}]", f"a rule naming attesters covers only "
                                              f"{ATTESTATION_DIR} paths, not {_q(glob)}")
        if "endorsers" in rule:
            for j, name in c.id_list(rule["endorsers"], f"{at}.endorsers", "endorser names"):
                if name not in known:
                    c.add(f"{at}.endorsers[{j}]", f"unknown endorser {_q(name)}")
        if "attesters" in rule:
            for j, name in c.id_list(rule["attesters"], f"{at}.attesters", "attester names"):
                if name not in sites:
                    c.add(f"{at}.attesters[{j}]", f"unknown attester {_q(name)}")


def _check_limits(c: _Checker, limits: Any, path: str) -> None:
    if not c.expect(limits, dict, path, "an object"):
        return
    for name in _LIMIT_NAMES:
        if name in limits and c.expect(limits[name], int, f"{path}.{name}", "an integer") \
                and limits[name] < 1:
            c.add(f"{path}.{name}", f"must be at least 1, not {limits[name]}")


def _check_heartbeat(c: _Checker, heartbeat: Any, path: str, keys: Mapping[str, Any]) -> None:
    # Strict like root and rules: an older gitreg ignoring a heartbeat key it
    # does not understand would accept freshness the root holders never granted.
    if not c.expect(heartbeat, dict, path, "an object"):
        return
    c.fields(heartbeat, path, _HEARTBEAT_FIELDS, _HEARTBEAT_FIELDS)
    if "keys" in heartbeat:
        for i, key_id in c.id_list(heartbeat["keys"], f"{path}.keys", "key ids"):
            if key_id not in keys:
                c.add(f"{path}.keys[{i}]", f"unknown key {_q(key_id)} (not in signed.keys)")
    if "max_age" in heartbeat and c.expect(heartbeat["max_age"], str, f"{path}.max_age",
                                           'a duration such as "6h"'):
        try:
            parse_duration(heartbeat["max_age"])
        except ValueError as exc:
            c.add(f"{path}.max_age", str(exc))


def _check_signed(c: _Checker, signed: Any, path: str) -> None:
    if not c.expect(signed, dict, path, "an object"):
        return
    for key in _SIGNED_REQUIRED:
        if key not in signed:
            c.add(_member(path, key), "missing")
    if "version" in signed and c.expect(signed["version"], int, f"{path}.version",
                                        "an integer") and signed["version"] < 1:
        c.add(f"{path}.version", f"must be at least 1, not {signed['version']}")
    if "expires" in signed:
        c.date(signed["expires"], f"{path}.expires")
    if "registry" in signed and (why := uuid_problem(signed["registry"])):
        c.add(f"{path}.registry", why)
    keys = signed.get("keys", {})
    if "keys" in signed:
        _check_keys(c, keys, f"{path}.keys")
    if not isinstance(keys, dict):
        keys = {}
    if "root" in signed:
        _check_root(c, signed["root"], f"{path}.root", keys)
    owner: dict[str, str] = {}
    if "endorsers" in signed:
        _check_key_holders(c, signed["endorsers"], f"{path}.endorsers", keys, kind="endorser",
                           name_re=ENDORSER_NAME, owner=owner,
                           name_rule="letters, digits and ._@+-, starting with a letter or "
                                     "digit, at most 64")
    if "attesters" in signed:
        _check_key_holders(c, signed["attesters"], f"{path}.attesters", keys, kind="attester",
                           name_re=ATTESTER_NAME, owner=owner,
                           name_rule="letters, digits and ._-, starting with a letter or "
                                     "digit, at most 64")
    if "rules" in signed:
        _check_rules(c, signed["rules"], f"{path}.rules", signed.get("endorsers"),
                     signed.get("attesters"))
    if "limits" in signed:
        _check_limits(c, signed["limits"], f"{path}.limits")
    if "heartbeat" in signed:
        _check_heartbeat(c, signed["heartbeat"], f"{path}.heartbeat", keys)
    if "refs" in signed and c.expect(signed["refs"], list, f"{path}.refs", "a list"):
        for i, pattern in enumerate(signed["refs"]):
            if not isinstance(pattern, str) or not pattern.startswith("refs/") \
                    or pattern in ("refs/heads/main", "refs/heads/*", "refs/*"):
                c.add(f"{path}.refs[{i}]", "must be a ref glob under refs/ other than "
                      f"main's, not {_q(pattern)}")


def _check_signatures(c: _Checker, signatures: Any, path: str) -> None:
    if not c.expect(signatures, list, path, "an array"):
        return
    for i, entry in enumerate(signatures):
        at = f"{path}[{i}]"
        if not c.expect(entry, dict, at, "an object"):
            continue
        c.fields(entry, at, _SIGNATURE_FIELDS, _SIGNATURE_FIELDS)
        for name in _SIGNATURE_FIELDS:
            if name in entry and c.expect(entry[name], str, f"{at}.{name}", "a string") \
                    and not entry[name]:
                c.add(f"{at}.{name}", "must not be empty")


def _derive_key(key_id: str, material: Mapping[str, Any]) -> PublicKey:
    """Build the key from its material and check it is the key ``key_id`` names.

    Raises ``InvalidKeyError`` with a message that does not repeat the id.
    """
    # Imported here: the scheme modules pull in cryptography and gnupg, which
    # the pure parse path does not need.
    from gitreg.signing.keys import public_key_from_policy

    try:
        key = public_key_from_policy(dict(material))
    except InvalidKeyError:
        raise
    except GitregError as exc:
        raise InvalidKeyError(exc.message, hint=exc.hint) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidKeyError(f"unusable key material: {exc}") from None
    if key.key_id != key_id:
        raise InvalidKeyError(f"the material is key {_q(key.key_id)}, not the key id it is "
                              "listed under")
    return key


# --- the signed part -----------------------------------------------------


class Policy:
    """The ``signed`` part of ``policy.json``, validated, with typed accessors."""

    def __init__(self, signed: Mapping[str, Any], *, source: str = POLICY_FILE) -> None:
        """Validate ``signed`` (a parsed dict); raise ``InvalidDocumentError`` listing
        every problem, with paths starting at ``signed``."""
        c = _Checker(source)
        _check_signed(c, signed, "signed")
        if c.problems:
            raise InvalidDocumentError(strictjson.capped(c.problems), source=source)
        raw: dict[str, Any] = copy.deepcopy(dict(signed))
        self._raw = raw
        self.source = source
        self._endorsers = {
            name: Endorser(name=name, keys=tuple(entry["keys"]), email=entry.get("email"),
                           expires=parse_date(entry["expires"]) if "expires" in entry else None)
            for name, entry in raw["endorsers"].items()}
        self._attesters = {
            name: Attester(name=name, keys=tuple(entry["keys"]), email=entry.get("email"),
                           expires=parse_date(entry["expires"]) if "expires" in entry else None)
            for name, entry in raw.get("attesters", {}).items()}
        self._rules = tuple(Rule(paths=tuple(r["paths"]),
                                 endorsers=tuple(r.get("endorsers", ())),
                                 attesters=tuple(r.get("attesters", ())))
                            for r in raw["rules"])
        self._owner = {key_id: e.name for e in self._endorsers.values() for key_id in e.keys}
        self._attester_owner = {key_id: a.name for a in self._attesters.values()
                                for key_id in a.keys}
        given = raw.get("limits", {})
        self._limits = Limits(**{k: given[k] for k in _LIMIT_NAMES if k in given})
        self._key_cache: dict[str, PublicKey] = {}
        self._digests: dict[str, str] = {}
        # A separate copy, so a caller writing into it cannot change what is signed.
        self._keys_view: Mapping[str, Mapping[str, Any]] = MappingProxyType(
            copy.deepcopy(raw["keys"]))
        # Literal paths are looked up, not matched: a registry with a rule per
        # list (10,000 rules) must not cost 10,000 regex matches per path.
        self._exact: dict[str, set[str]] = {}
        self._wild: list[tuple[str, tuple[str, ...]]] = []
        self._attester_rules = tuple((glob, rule.attesters) for rule in self._rules
                                     if rule.attesters for glob in rule.paths)
        for rule in self._rules:
            if not rule.endorsers:
                continue
            for glob in rule.paths:
                if is_literal(glob):
                    self._exact.setdefault(glob, set()).update(rule.endorsers)
                else:
                    self._wild.append((glob, rule.endorsers))

    # plain fields

    @property
    def version(self) -> int:
        return int(self._raw["version"])

    @property
    def expires(self) -> datetime:
        return parse_date(self._raw["expires"])

    @property
    def registry(self) -> str:
        return str(self._raw["registry"])

    @property
    def root_keys(self) -> tuple[str, ...]:
        return tuple(self._raw["root"]["keys"])

    @property
    def threshold(self) -> int:
        return int(self._raw["root"]["threshold"])

    @property
    def keys(self) -> Mapping[str, Mapping[str, Any]]:
        """Key id -> key material (a copy of it: writing into it changes nothing signed)."""
        return self._keys_view

    @property
    def endorsers(self) -> Mapping[str, Endorser]:
        return MappingProxyType(self._endorsers)

    @property
    def attesters(self) -> Mapping[str, Attester]:
        """Name -> attester: the sites that may sign statements about images."""
        return MappingProxyType(self._attesters)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def refs(self) -> tuple[str, ...]:
        """Globs of refs besides main that the hook lets endorsers update, unverified."""
        return tuple(self._raw.get("refs", ()))

    @property
    def heartbeat(self) -> HeartbeatPolicy | None:
        """The freshness requirement (``signed.heartbeat``), or None: no heartbeat needed."""
        value = self._raw.get("heartbeat")
        if value is None:
            return None
        return HeartbeatPolicy(keys=tuple(value["keys"]),
                               max_age=parse_duration(value["max_age"]),
                               max_age_text=value["max_age"])

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of ``signed`` exactly as parsed (unknown keys included)."""
        return copy.deepcopy(self._raw)

    def canonical_bytes(self) -> bytes:
        """What root keys sign: the canonical form of ``signed``."""
        return strictjson.canonical_dumps(self._raw)

    # time

    def check_expiry(self, now: datetime) -> None:
        """Raise ``ExpiredError`` if the policy has expired at ``now``."""
        if now >= self.expires:
            raise ExpiredError(
                f"{self.source}: policy version {self.version} expired at "
                f"{format_date(self.expires)} (now {format_date(now)})",
                hint="the root key holders must sign a new policy with a later expiry")

    def is_endorser_active(self, name: str, now: datetime) -> bool:
        """Whether endorser ``name`` exists and has not expired at ``now``."""
        endorser = self._endorsers.get(name)
        if endorser is None:
            return False
        return endorser.expires is None or now < endorser.expires

    def expired_attesters(self, at: datetime) -> frozenset[str]:
        """The attesters whose entry has expired at ``at``: their statements count no more."""
        return frozenset(name for name in self._attesters
                         if not self.is_attester_active(name, at))

    # authorisation

    def endorsers_for_path(self, path: str) -> frozenset[str]:
        """Names of the endorsers allowed to change ``path``; empty means nobody
        (default deny). A rule for ``X.json`` also covers ``X.json.sig``."""
        candidates = [path]
        if path.endswith(SIG_SUFFIX):
            candidates.append(path[: -len(SIG_SUFFIX)])
        names: set[str] = set()
        for candidate in candidates:
            names.update(self._exact.get(candidate, ()))
            for glob, endorsers in self._wild:
                if glob_matches(glob, candidate):
                    names.update(endorsers)
        return frozenset(names)

    def endorser_of_key(self, key_id: str) -> str | None:
        """The endorser owning ``key_id``, or None (a root-only or unknown key)."""
        return self._owner.get(key_id)

    def attester_of_key(self, key_id: str) -> str | None:
        """The attester owning ``key_id``, or None."""
        return self._attester_owner.get(key_id)

    def attesters_for_path(self, path: str) -> frozenset[str]:
        """Names of the attesters a rule allows to change ``path`` (and its ``.sig``)."""
        candidates = [path]
        if path.endswith(SIG_SUFFIX):
            candidates.append(path[: -len(SIG_SUFFIX)])
        return frozenset(name for glob, names in self._attester_rules
                         for candidate in candidates if glob_matches(glob, candidate)
                         for name in names)

    def attester_keys(self, name: str) -> tuple[str, ...]:
        """The key ids of attester ``name`` (none for an unknown name)."""
        attester = self._attesters.get(name)
        return attester.keys if attester is not None else ()

    def is_attester_active(self, name: str, now: datetime) -> bool:
        """Whether attester ``name`` exists and has not expired at ``now``."""
        attester = self._attesters.get(name)
        return attester is not None and (attester.expires is None or now < attester.expires)

    def endorser_keys(self, name: str) -> tuple[str, ...]:
        """The key ids of endorser ``name``."""
        endorser = self._endorsers.get(name)
        if endorser is None:
            raise UsageError(f"{self.source}: no endorser named {_q(name)} "
                             f"(endorsers: {', '.join(sorted(self._endorsers)) or 'none'})")
        return endorser.keys

    def public_key(self, key_id: str) -> PublicKey:
        """The verification key for ``key_id``, built from this policy's material.

        Raises ``UntrustedSignerError`` for a key the policy does not list and
        ``InvalidKeyError`` when the material is broken or is another key.
        """
        cached = self._key_cache.get(key_id)
        if cached is not None:
            return cached
        material = self._raw["keys"].get(key_id)
        if material is None:
            raise UntrustedSignerError(f"{self.source}: key {_q(key_id)} is not in the policy")
        try:
            key = _derive_key(key_id, material)
        except InvalidKeyError as exc:
            raise InvalidKeyError(f"{self.source}: {_key_path(key_id)}: "
                                  f"{exc.message}", hint=exc.hint) from None
        self._key_cache[key_id] = key
        return key

    def key_digest(self, key_id: str) -> str:
        """sha256 of the canonical JSON of ``key_id``'s material, computed once per
        policy: a verifier looks it up for every signature, and X.509 material
        carries whole CA certificates."""
        digest = self._digests.get(key_id)
        if digest is None:
            digest = hashlib.sha256(strictjson.canonical_dumps(self.keys[key_id])).hexdigest()
            self._digests[key_id] = digest
        return digest

    def __repr__(self) -> str:
        return f"Policy(version={self.version}, registry={self.registry!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self._raw == other._raw

    def __hash__(self) -> int:
        return hash(self.canonical_bytes())


def check_key_ids(policy: Policy) -> None:
    """Check that every key id equals the id derived from its material.

    Separate from parsing because it loads key material with the scheme
    modules; raises ``InvalidDocumentError`` listing every mismatch.
    """
    c = _Checker(policy.source)
    for key_id, material in policy.keys.items():
        try:
            _derive_key(key_id, material)
        except InvalidKeyError as exc:
            c.add(_key_path(key_id), exc.message)
    if c.problems:
        raise InvalidDocumentError(c.problems, source=policy.source)


# --- the envelope ----------------------------------------------------------


@dataclass(frozen=True)
class PolicyEnvelope:
    """``policy.json``: the signed policy and the root signatures over it."""

    signed: Policy
    signatures: tuple[PolicySignature, ...] = ()
    source: str = field(default=POLICY_FILE, compare=False)

    @property
    def version(self) -> int:
        return self.signed.version

    def signed_bytes(self) -> bytes:
        """The bytes root keys sign (SSHSIG namespace ``gitreg-policy``)."""
        return self.signed.canonical_bytes()

    def to_dict(self) -> dict[str, Any]:
        return {"signed": self.signed.to_dict(),
                "signatures": [s.to_dict() for s in self.signatures]}

    def canonical_bytes(self) -> bytes:
        """The bytes gitreg writes to ``policy.json``."""
        return strictjson.canonical_dumps(self.to_dict())


def parse_policy(data: bytes, *, source: str = POLICY_FILE,
                 max_size: int = strictjson.DEFAULT_MAX_SIZE) -> PolicyEnvelope:
    """Parse ``policy.json`` strictly; every problem in one ``InvalidDocumentError``."""
    doc = strictjson.loads(data, source=source, max_size=max_size)
    c = _Checker(source)
    if not isinstance(doc, dict):
        c.add("", f"must be an object with signed and signatures, not {_type_name(doc)}")
        raise InvalidDocumentError(c.problems, source=source)
    # The envelope itself is not signed: anything extra in it is refused.
    c.fields(doc, "", ("signed", "signatures"), ("signed", "signatures"))
    if "signatures" in doc:
        _check_signatures(c, doc["signatures"], "signatures")
    if "signed" in doc:
        _check_signed(c, doc["signed"], "signed")
    if c.problems:
        raise InvalidDocumentError(strictjson.capped(c.problems), source=source)
    signatures = tuple(PolicySignature(keyid=s["keyid"], sig=s["sig"])
                       for s in doc["signatures"])
    return PolicyEnvelope(Policy(doc["signed"], source=source), signatures, source)


def fingerprint(data: bytes) -> str:
    """``sha256:<hex>`` of the ``policy.json`` bytes: what a site pins."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"
