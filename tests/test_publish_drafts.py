"""Draft editing (pure): finding lists and images, typed values, refusals, versions."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitreg.errors import InvalidDocumentError, UsageError
from gitreg.model.versions import compare_versions
from gitreg.publish import policy_edit
from gitreg.publish.drafts import (
    EndorserFields,
    ImageFields,
    add_image,
    edit_policy,
    new_list,
    parse_value,
    resolve_image,
    resolve_list,
    set_image_key,
    set_list_key,
)
from gitreg.publish.policy_edit import new_policy
from gitreg.publish.publication import effective_lifetime, next_version
from gitreg.signing.ssh import SSHPublicKey

ENDORSER = EndorserFields(dn="/DC=org/DC=example/CN=Alice", ca="/DC=org/DC=example/CN=CA",
                          email="alice@example.org", creator="Alice")
REGISTRY = "6f1c3c52-4d0e-4f55-9f43-2d3a3c0b8e11"


def fields(title: str, **extra) -> ImageFields:
    return ImageFields(uri=f"https://example.org/{title}", size=3,
                       sha512=hashlib.sha512(b"abc").hexdigest(), title=title, os="Linux",
                       osversion="9", arch="x86_64", **extra)


def test_new_list_is_an_empty_version_0_draft_with_the_endorser():
    imagelist = new_list("Base images", endorser=ENDORSER, source="Test registry",
                         uri_template="https://reg.example.org/{uuid}.json")
    assert imagelist.version == "0"
    assert imagelist.images == []
    assert imagelist.endorser_dn == ENDORSER.dn
    assert imagelist.uri == f"https://reg.example.org/{imagelist.identifier}.json"
    assert imagelist.description == "Base images"


def test_missing_endorser_fields_name_their_config_keys():
    partial = EndorserFields(dn="/CN=A", ca=None, email=None, creator="A")
    with pytest.raises(UsageError) as caught:
        new_list("T", endorser=partial)
    assert "hv:ca (gitreg.endorser.ca)" in caught.value.message
    assert "hv:email (gitreg.endorser.email)" in caught.value.message


def test_list_uuid_must_be_canonical():
    with pytest.raises(UsageError, match="lower-case"):
        new_list("T", endorser=ENDORSER, identifier="6F1C3C52-4D0E-4F55-9F43-2D3A3C0B8E11")


def test_resolve_list_by_uuid_title_and_refuses_ambiguity():
    a = new_list("Base", endorser=ENDORSER)
    b = new_list("Base", endorser=ENDORSER)
    c = new_list("GPU images", endorser=ENDORSER)
    lists = {il.identifier: il for il in (a, b, c)}
    assert resolve_list(lists, c.identifier) is c
    assert resolve_list(lists, c.identifier.upper()) is c
    assert resolve_list(lists, "GPU images") is c
    assert resolve_list(lists, "gpu IMAGES") is c
    with pytest.raises(UsageError) as caught:
        resolve_list(lists, "Base")
    assert a.identifier in caught.value.message and b.identifier in caught.value.message
    with pytest.raises(UsageError, match="no imagelist 'Nope'"):
        resolve_list(lists, "Nope")


def test_resolve_image_by_uuid_or_unique_title():
    imagelist = new_list("L", endorser=ENDORSER)
    first = add_image(imagelist, fields("Alma"))
    add_image(imagelist, fields("Ubuntu"))
    add_image(imagelist, fields("Ubuntu"))
    assert resolve_image(imagelist, first).identifier == first
    assert resolve_image(imagelist, "Alma").identifier == first
    with pytest.raises(UsageError, match="names 2 images"):
        resolve_image(imagelist, "Ubuntu")
    with pytest.raises(UsageError, match="has no image 'Debian'"):
        resolve_image(imagelist, "Debian")


def test_parse_value_types_counts_and_strict_json():
    assert parse_value("hv:size", "1024") == 1024
    assert parse_value("hv:uri", "1024") == "1024"
    assert parse_value("ad:vo", '{"name": "atlas"}', as_json=True) == {"name": "atlas"}
    with pytest.raises(UsageError, match="hv:size"):
        parse_value("hv:size", "-5")
    with pytest.raises(UsageError):
        parse_value("hv:ram_minimum", "１２")  # non-ASCII digits
    with pytest.raises(InvalidDocumentError) as caught:
        parse_value("ad:x", '{"a": 1, "a": 2}', as_json=True)
    assert caught.value.source == "value of ad:x"
    assert 'duplicate key "a"' in caught.value.diagnostics()


def test_set_list_key_puts_endorser_keys_inside_hv_x509():
    imagelist = new_list("L", endorser=ENDORSER)
    set_list_key(imagelist, "hv:email", "grid@example.org")
    assert imagelist.endorser_email == "grid@example.org"
    assert imagelist.get("hv:email") is None


@pytest.mark.parametrize(("key", "reason"), [
    ("dc:identifier", "never changes"),
    ("hv:images", "gitreg image"),
    ("dc:date:expires", "set by `gitreg publish`"),
])
def test_set_list_key_refuses_keys_it_does_not_own(key, reason):
    imagelist = new_list("L", endorser=ENDORSER)
    before = imagelist.canonical_bytes()
    with pytest.raises(UsageError, match=reason):
        set_list_key(imagelist, key, "x")
    assert imagelist.canonical_bytes() == before


def test_invalid_value_leaves_the_list_unchanged():
    imagelist = new_list("L", endorser=ENDORSER)
    image = add_image(imagelist, fields("Alma"))
    before = imagelist.canonical_bytes()
    with pytest.raises(InvalidDocumentError) as caught:
        set_image_key(imagelist, image, "sl:checksum:sha512", "beef")
    assert "sl:checksum:sha512: not 128 lowercase hex digits" in caught.value.diagnostics()
    with pytest.raises(UsageError, match="never changes"):
        set_image_key(imagelist, image, "dc:identifier", "x")
    assert imagelist.canonical_bytes() == before


def test_image_uuid_is_unique_across_the_registry():
    first = new_list("A", endorser=ENDORSER)
    second = new_list("B", endorser=ENDORSER)
    image = add_image(first, fields("Alma"))
    before = second.canonical_bytes()
    with pytest.raises(UsageError, match=f"already published in imagelist {first.identifier}"):
        add_image(second, fields("Alma again", identifier=image), [first, second])
    assert second.canonical_bytes() == before


def test_image_fields_optional_gitreg_keys():
    imagelist = new_list("A", endorser=ENDORSER)
    image = add_image(imagelist, fields("Alma", series="alma-9", description_md="# Alma",
                                        format="qcow2"))
    added = imagelist.image(image)
    assert (added.series, added.description_md, added.format) == ("alma-9", "# Alma", "qcow2")
    assert added.hypervisor == "QEMU-KVM"


def _policy():
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as directory:
        keys = []
        for name in ("r1", "r2"):
            path = Path(directory) / name
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                           check=True, capture_output=True)
            keys.append(SSHPublicKey.from_file(path.with_suffix(".pub")))
    return new_policy(REGISTRY, keys, 1, datetime(2030, 1, 1, tzinfo=UTC)), keys


def test_repeated_policy_edits_stay_one_version_bump():
    published, keys = _policy()
    later = datetime(2031, 1, 1, tzinfo=UTC)
    draft = edit_policy(published, published, lambda p: policy_edit.remove_root(p, keys[1].key_id))
    draft = edit_policy(published, draft, lambda p: policy_edit.with_expires(p, later))
    assert draft.version == published.version + 1
    assert draft.signatures == ()
    assert draft.signed.root_keys == (keys[0].key_id,)
    assert draft.signed.expires == later


def test_an_edit_undoing_the_draft_returns_the_published_policy():
    published, _ = _policy()
    draft = edit_policy(published, published, lambda p: policy_edit.set_threshold(p, 2))
    undone = edit_policy(published, draft, lambda p: policy_edit.set_threshold(p, 1))
    assert undone is published


def test_lifetime_defaults_and_caps():
    assert effective_lifetime(None, None, 365) == (28, None)
    assert effective_lifetime(None, 10, 365) == (10, None)
    assert effective_lifetime(30, 10, 365) == (30, None)
    days, note = effective_lifetime(400, None, 90)
    assert days == 90 and note is not None and "capped" in note
    with pytest.raises(UsageError):
        effective_lifetime(0, None, 90)


def test_next_version_examples():
    assert next_version("0", None) == "1"
    assert next_version("2.0", None) == "2.0"
    assert next_version("1", "1") == "2"
    assert next_version("3.3.0-1", "3.3.0-1") == "3.3.0-2"
    assert next_version("3.10.0", "3.3.0-1") == "3.10.0"
    assert next_version("1.0", "20141029") == "20141030"


versions = st.text(alphabet="0123456789.-abc", max_size=12)


@given(draft=versions, published=st.one_of(st.none(), versions))
def test_next_version_is_always_higher_than_the_published_one(draft, published):
    result = next_version(draft, published)
    assert compare_versions(result, published if published is not None else "0") > 0
