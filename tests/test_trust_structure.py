"""The trust core's shape: pure (no clock, fs, git, subprocess) and versioned.

- ``gitreg/verify/`` imports nothing from the I/O layers (gitstore, site,
  server, publish, cli) nor ``os``/``subprocess``/``socket``, and reads no
  clock: the reference time comes in a ``VerifyContext``;
- every rule module is hashed (its syntax tree without docstrings, so a
  comment or a docstring may change freely): a rule that changes without a
  new ``RULES_VERSION`` fails here, because verdicts cached under the old
  rules would otherwise be reused.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from gitreg.verify.context import RULES_VERSION

CORE = Path(__file__).resolve().parent.parent / "gitreg" / "verify"
FORBIDDEN = ("gitreg.gitstore", "gitreg.site", "gitreg.server", "gitreg.publish",
             "gitreg.cli", "gitreg.transport", "gitreg.adapters", "os", "subprocess",
             "socket", "time", "pathlib", "shutil", "tempfile", "sqlite3", "pygit2")
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}
# Not rules: the context holds the version itself; the cache and source are protocols.
# batch.py only pre-fills the cache; the walk still judges every rule.
NOT_RULES = {"context.py", "__init__.py", "batch.py"}

# RULES_VERSION -> digest of the rule modules. Never edit an entry: when a rule
# changes, bump RULES_VERSION in gitreg/verify/context.py and add a line.
RULES_DIGESTS = {
    2: "9c93f1c7964a9968fbd0a439b7f2587a7a0dbde641bdbda823210e0f698e9833",
    3: "4d4cf079944c093cd2dea4190bd9e1774e1e330562673fb1758d813da9ada5db",
    4: "dfc32ff0a94185a85dcf6381498f5399675fd30014758f677b0f4cd13a29faa2",
    # The merge rule: an equivocation takes the smaller blob, never the merge base.
    5: "624d6fd93bb92f57eca90657c2ed5737eccaf5a54efc2321c3d71d9d7dfcfe6d",
    # Signatures: a cached verdict is looked up before parsing; preverify hook.
    6: "064d264664b9af55d3be10b4ccef410059bee20325f552c6bd4823fffc14ebf4",
    # Signatures: any key with a validity period (expiring OpenPGP keys too) is not cached.
    7: "398e2257d11426db5725995f01e2d55c952dcb90628a817d7df3c704005e09c7",
    # A commit verdict resting on a key with a validity period is not cached.
    8: "b285a1addf546805ba80712e3773fe8f40c7f7b5c393f63ff80df252411b441d",
    # The state verdict: entries read only when an endorser is expired; carried forward.
    9: "b705a208a29bad39d4f5886efee75b55aa536b551f942bce515b642744a9102e",
    # Heartbeats: signed freshness statements and the freshness of a state.
    10: "eb1567bcd1f7eb2984cb06b6e8cebce918bc57e3bcc0335478c40586efcc8279",
    # Attestations: attestations.py, their layout, authorisation and merge.
    11: "2fdb29560f22ea1405bfe7e48dac416e4f8bb3a838f2ca0a9b06f2be652beb7a",
    # The key digest of a cached verdict is computed once per policy (same value).
    12: "25be167adb67ac61b6dc1f7739046ad647d4439e5f5304ef9a80a947dd3e4075",
    # List facts keep image UUIDs in lower case: attested and unique whatever their case.
    13: "8b99c379a2601961c3c7981711c533e12b2fa2e89a5cb59d454c36f53960c041",
    # A list's signature blob is read only when no cached verdict answers (same verdicts).
    14: "95ee51fdeb8647a34f52018f6146f4bf5d3f3d7876c8635fbb2669b2503d6620",
    # An image conflict keeps both lists' highest versions; image-unique refuses new claims.
    15: "ed531462e87767c1dc85ae7dd44c23c3db282744a4badfc35e29c76bc2c38f9e",
    # An image conflict's image UUID is read from its version (same verdicts).
    16: "9631447ebe07e072b801af426851e3ff09e5a79423c4b2ea2a365829fe73f1b5",
}


def _modules() -> list[Path]:
    return sorted(CORE.glob("*.py"))


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "the trust core uses absolute imports"
            names.append(node.module or "")
    return names


def test_the_trust_core_imports_no_io_layer() -> None:
    found = []
    for path in _modules():
        for name in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                found.append(f"{path.name}: {name}")
    assert found == []


def test_the_trust_core_reads_no_clock_and_opens_no_file() -> None:
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in CLOCK_CALLS or name == "open":
                found.append(f"{path.name}:{node.lineno}: {name}()")
    assert found == []


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                              ast.AsyncFunctionDef))
                and isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def rules_digest() -> str:
    digest = hashlib.sha256()
    for path in _modules():
        if path.name in NOT_RULES:
            continue
        tree = _without_docstrings(ast.parse(path.read_text(encoding="utf-8")))
        digest.update(path.name.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return digest.hexdigest()


def test_a_rule_change_bumps_the_rules_version() -> None:
    digest = rules_digest()
    assert RULES_DIGESTS.get(RULES_VERSION) == digest, (
        f"the rule modules of gitreg/verify changed (digest {digest}) but "
        f"RULES_VERSION is still {RULES_VERSION}: bump it in gitreg/verify/context.py "
        "and add the new digest to RULES_DIGESTS here (never edit an old entry)")


def test_each_rule_lives_in_one_module() -> None:
    """A reader finds a rule id in one rule module; the verifier only applies them.
    (``state`` restates the expiry rules as properties of a state, by design.)"""
    homes: dict[str, set[str]] = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.keyword) and node.arg == "rule"
                    and isinstance(node.value, ast.Constant)):
                homes.setdefault(str(node.value.value), set()).add(path.name)
    assert not any("history.py" in files for files in homes.values()), homes
    shared = {rule: files for rule, files in homes.items()
              if len(files - {"state.py"}) > 1}
    assert shared == {}
    assert {"layout.py", "commits.py", "lists.py", "policy_rules.py", "merge.py",
            "attestations.py"} <= {
        name for files in homes.values() for name in files}


def test_the_policy_model_parses_and_reads_but_never_edits() -> None:
    """Drafting a new policy is the endorser's job (gitreg/publish/policy_edit.py):
    the model a verifier loads offers no way to derive another policy."""
    from gitreg.model.policy import Policy, PolicyEnvelope
    from gitreg.publish import policy_edit

    editing = {"with_version", "with_expires", "add_endorser", "remove_endorser", "allow",
               "add_root", "remove_root", "set_threshold", "add_key", "remove_key",
               "new_policy", "add_signature", "edited"}
    for cls in (Policy, PolicyEnvelope):
        assert editing.isdisjoint(dir(cls)), sorted(editing & set(dir(cls)))
    model = ast.parse((CORE.parent / "model" / "policy.py").read_text(encoding="utf-8"))
    defined = {node.name for node in ast.walk(model)
               if isinstance(node, ast.FunctionDef)}
    assert editing.isdisjoint(defined), sorted(editing & defined)
    assert editing <= set(dir(policy_edit))
