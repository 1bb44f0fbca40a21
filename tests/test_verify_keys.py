"""The verifier and a policy key whose id does not name its material.

Parsing a policy does not load key material, so a root-signed policy can list
a key under another key's id; a signature by that id is then refused with a
verdict naming the commit and the rule, as for any signature that fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitreg.errors import PolicyViolationError
from gitreg.model.dates import utcnow
from gitreg.model.policy import PolicyEnvelope, parse_policy
from gitreg.verify import layout
from gitreg.verify.cache import MemoryCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.history import Verifier
from tests.registry_simulator import RegistrySimulator, new_id, ssh_signer

HISTORY = VerifyContext.for_history(utcnow())


def test_a_key_listed_with_another_keys_material_fails_as_a_signature(
        tmp_path: Path) -> None:
    sim = RegistrySimulator.create(tmp_path / "registry.git")
    eve = ssh_signer("eve")
    list_id = new_id()
    sim.add_endorser("eve", [eve.public_key()], [layout.list_path(list_id)])
    root_id = sim.roots[0].public_key().key_id

    def swap_material(envelope: PolicyEnvelope) -> PolicyEnvelope:
        doc = json.loads(envelope.canonical_bytes())
        doc["signed"]["version"] += 1
        doc["signatures"] = []
        doc["signed"]["keys"][eve.public_key().key_id] = doc["signed"]["keys"][root_id]
        return parse_policy(json.dumps(doc).encode())

    policy_commit, _ = sim.change_policy(swap_material)
    forged = sim.publish(eve, {list_id: [new_id()]})

    verifier = Verifier(sim.store, MemoryCache(), context=HISTORY)
    with pytest.raises(PolicyViolationError) as caught:
        verifier.verify_range(None, forged)
    assert caught.value.rule == "commit-signature"
    assert caught.value.commit == forged
    assert eve.public_key().key_id in caught.value.message
    # Everything before the forged commit still verifies.
    report = Verifier(sim.store, MemoryCache(), context=HISTORY).verify_range(None, policy_commit)
    assert report.verified[-1] == policy_commit


def test_a_second_root_is_refused_even_when_both_roots_were_verified_before(
        tmp_path: Path) -> None:
    """A cache that knows both roots (two histories seen separately) still says
    that one range holding both is an unrelated-history merge."""
    sim = RegistrySimulator.create(tmp_path / "registry.git")
    first_root = sim.head
    root_tree = sim.head_tree
    second_root = sim.commit_tree(root_tree, sim.roots[0], message="Another root",
                                  parents=[], move=False)
    cache = MemoryCache()
    Verifier(sim.store, cache, context=HISTORY).verify_range(None, first_root)
    Verifier(sim.store, cache, context=HISTORY).verify_range(None, second_root)
    merge = sim.commit_tree(root_tree, None, message="Merge unrelated histories",
                            parents=[first_root, second_root], move=False)
    with pytest.raises(PolicyViolationError) as caught:
        Verifier(sim.store, cache, context=HISTORY).verify_range(None, merge)
    assert caught.value.rule == "unrelated-history"
