"""The HEPiX imagelist model: real samples, every bad-input class, time checks, mutation."""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gitreg.errors import EXIT_REJECTED, ExpiredError, InvalidDocumentError, UsageError
from gitreg.model.dates import format_date, parse_date, utcnow
from gitreg.model.imagelist import (
    ENDORSER_KEYS,
    IMAGE_KEYS,
    LIST_KEYS,
    Image,
    Imagelist,
    parse_imagelist,
)

CORPUS = Path(__file__).parent / "data" / "bad-json"
EXPECTED: dict[str, list[list[str]]] = json.loads(
    (CORPUS / "expected.json").read_text(encoding="utf-8"))["files"]

LIST_ID = "0d3c9a3e-6f2b-4c1e-9a55-2f8e7f0b1c01"
IMAGE_ID = "5b2a9e60-0a8e-4f43-8a3b-3b2f6f4c2d10"
OTHER_ID = "9e1f2c3d-4b5a-4697-8877-665544332211"
SHA = "ab" * 64
NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)


def base() -> dict[str, Any]:
    """A fresh copy of the corpus control list."""
    data: dict[str, Any] = json.loads((CORPUS / "base-valid.json").read_bytes())
    return data


def image_dict(uuid: str = OTHER_ID, **extra: Any) -> dict[str, Any]:
    return {
        "dc:identifier": uuid, "dc:title": "another", "dc:description": "", "hv:uri":
        "https://example.org/b.img", "hv:size": "2048", "sl:checksum:sha512": "cd" * 64,
        "sl:arch": "x86_64", "sl:os": "Linux", "sl:osversion": "9", "sl:comments": "",
        "hv:hypervisor": "KVM", "hv:version": "2", **extra,
    }


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def problems(data: bytes, source: str = "test.json") -> list[tuple[str, str]]:
    with pytest.raises(InvalidDocumentError) as info:
        parse_imagelist(data, source=source)
    assert info.value.exit_code == EXIT_REJECTED
    assert info.value.source == source
    assert all(p.source == source for p in info.value.problems)
    return [(p.path, p.message) for p in info.value.problems]


def image_path(key: str, index: int = 0) -> str:
    return f"hv:imagelist.hv:images[{index}].hv:image.{key}"


# --- real samples -----------------------------------------------------------


def test_hepixvmitrust_sample_parses_and_is_expired_today(interop_dir: Path) -> None:
    path = interop_dir / "hepixvmitrust" / "imagelist.json"
    lst = parse_imagelist(path.read_bytes(), source=str(path))
    assert lst.identifier == "4e186b44-2c64-40ea-97d5-e9e5c0bce059"
    assert lst.endorser_dn == "/C=DE/O=GermanGrid/OU=DESY/CN=Owen Synge"
    assert lst.endorser_ca == "/C=DE/O=GermanGrid/CN=GridKa-CA"
    assert lst.endorser_email == "owen.synge@desy.de"
    assert lst.endorser_creator == "Owen Synge"
    assert lst.warnings == []
    [image] = lst.images
    assert image.size == 2147483648
    assert image.hypervisor == "kvm"
    assert image.expires is None
    with pytest.raises(ExpiredError) as info:
        lst.check_times(utcnow())
    assert info.value.exit_code == EXIT_REJECTED
    assert "4e186b44-2c64-40ea-97d5-e9e5c0bce059" in info.value.message
    assert "expired at 2011-04-07T17:09:12Z" in info.value.message
    assert str(path) in info.value.message
    # Before its expiry it is a valid list.
    lst.check_times(parse_date("2011-03-20T00:00:00Z"))


def test_appdb_sample_keeps_string_sizes_and_ad_keys_and_round_trips(interop_dir: Path) -> None:
    raw = (interop_dir / "cloudkeeper" / "image_list10.json").read_bytes()
    lst = parse_imagelist(raw, source="image_list10.json")
    assert lst.version == "20150618211400"
    assert lst.get("ad:vo") == "some1.vo.net"
    first, second = lst.images
    assert (first.size, second.size) == (121243136, 581816320)
    assert first.get("hv:size") == "121243136"  # kept as the string it was
    assert first.get("ad:appid") == "993"
    assert first.get("ad:base_mpuri", "").startswith("https://appdb.somewhere.net/")
    assert (first.ram_minimum, first.core_minimum) == (512, 1)
    assert second.ram_minimum is None
    assert first.osname == "Scientific Linux"
    assert first.format == "OVA"
    assert first.expires == datetime(2499, 12, 31, 22, 0, 0, tzinfo=UTC)
    canonical = lst.canonical_bytes()
    again = parse_imagelist(canonical).canonical_bytes()
    assert again == canonical
    # Nothing was lost or altered: the canonical form is the input, re-serialized.
    assert json.loads(canonical) == json.loads(raw)
    lst.check_times(NOW)


def test_cloudkeeper_unsigned_sample_parses(interop_dir: Path) -> None:
    lst = parse_imagelist((interop_dir / "cloudkeeper" / "imagelist01.unsigned").read_bytes())
    assert [i.identifier for i in lst.images] == [
        "c0482bc2-bf41-5d49-aaaa-a750174a186b", "662b0e71-3e21-bbbb-b6a1-cc2f51319fa7"]
    assert lst.images[0].version == "3.3.0-1"


# --- the bad-input corpus -------------------------------------------------------


def test_corpus_control_parses() -> None:
    lst = parse_imagelist((CORPUS / "base-valid.json").read_bytes())
    assert lst.identifier == LIST_ID
    assert lst.image(IMAGE_ID).sha512 == SHA


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_reports_every_problem_with_its_path(name: str) -> None:
    found = problems((CORPUS / name).read_bytes(), source=name)
    assert len(found) == len(EXPECTED[name])
    for (path, message), (want_path, want_text) in zip(found, EXPECTED[name], strict=True):
        assert path == want_path
        assert want_text in message


def test_a_10_mb_imagelist_is_rejected_by_size_quickly() -> None:
    doc = base()
    doc["hv:imagelist"]["dc:description"] = "x" * (10 * 1024 * 1024)
    data = dumps(doc)
    start = time.perf_counter()
    found = problems(data)
    assert time.perf_counter() - start < 0.5
    assert found == [("", f"document is {len(data)} bytes, over the limit of {1 << 20}")]
    assert parse_imagelist(data, max_size=len(data)).identifier == LIST_ID


# --- structural validation ----------------------------------------------------


def test_every_required_key_is_reported_when_missing() -> None:
    doc = base()
    for key in ("hv:version", "dc:source"):
        del doc["hv:imagelist"][key]
    for key in ("hv:dn", "hv:email"):
        del doc["hv:imagelist"]["hv:endorser"]["hv:x509"][key]
    for key in ("sl:os", "hv:size"):
        del doc["hv:imagelist"]["hv:images"][0]["hv:image"][key]
    assert sorted(problems(dumps(doc))) == sorted([
        ("hv:imagelist.hv:version", "missing required key"),
        ("hv:imagelist.dc:source", "missing required key"),
        ("hv:imagelist.hv:endorser.hv:x509.hv:dn", "missing required key"),
        ("hv:imagelist.hv:endorser.hv:x509.hv:email", "missing required key"),
        (image_path("sl:os"), "missing required key"),
        (image_path("hv:size"), "missing required key"),
    ])


def test_key_constants_match_the_architecture() -> None:
    assert len(LIST_KEYS) == 10
    assert ENDORSER_KEYS == ("hv:dn", "hv:ca", "hv:email", "dc:creator")
    assert len(IMAGE_KEYS) == 12
    # Removing any one required image key from a valid list is caught.
    for key in IMAGE_KEYS:
        doc = base()
        del doc["hv:imagelist"]["hv:images"][0]["hv:image"][key]
        assert problems(dumps(doc)) == [(image_path(key), "missing required key")]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("hv:size", True, "true is not a non-negative integer"),
    ("hv:size", -1, "-1 is not a non-negative integer"),
    ("hv:size", "-1", '"-1" is not a non-negative integer'),
    ("hv:size", "12.5", "is not a non-negative integer"),
    ("hv:size", 1.0, "is not a non-negative integer"),
    ("hv:size", 1 << 63, "is not a non-negative integer"),
    ("hv:size", "1" * 4400, "is not a non-negative integer"),
    ("hv:ram_minimum", "lots", "is not a non-negative integer"),
    ("sl:checksum:sha512", SHA.upper(), "not 128 lowercase hex digits"),
    ("sl:checksum:sha512", SHA[:-1], "not 128 lowercase hex digits"),
    ("sl:checksum:sha512", 5, "expected a string, got number"),
    ("dc:identifier", "../../etc/passwd", "is not a UUID"),
    ("dc:title", None, "expected a string, got null"),
    ("sl:osname", ["x"], "expected a string, got array"),
    ("gitreg:series", {"a": 1}, "expected a string, got object"),
    ("dc:date:expires", "2499-12-31", "is not a date of the form YYYY-MM-DDTHH:MM:SSZ"),
])
def test_bad_image_values(key: str, value: Any, message: str) -> None:
    doc = base()
    doc["hv:imagelist"]["hv:images"][0]["hv:image"][key] = value
    [(path, text)] = problems(dumps(doc))
    assert path == image_path(key)
    assert message in text


@pytest.mark.parametrize("value", [
    "2024-01-01T00:00:00+00:00", "2024-01-01 00:00:00Z", "2024-01-01T00:00:00z",
    "2024-01-01T00:00:00.5Z", "2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z",
    "0000-01-01T00:00:00Z", "２０24-01-01T00:00:00Z", "2024-01-01T00:00:00Z\n",
])
def test_dates_are_strict(value: str) -> None:
    doc = base()
    doc["hv:imagelist"]["dc:date:created"] = value
    [(path, _)] = problems(dumps(doc))
    assert path == "hv:imagelist.dc:date:created"
    with pytest.raises(ValueError, match="date"):
        parse_date(value)


def test_dates_round_trip() -> None:
    when = parse_date("2024-02-29T23:59:59Z")
    assert when == datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)
    assert format_date(when) == "2024-02-29T23:59:59Z"
    assert format_date(when.astimezone(ZoneInfo("Europe/Berlin"))) == "2024-02-29T23:59:59Z"
    with pytest.raises(ValueError, match="timezone"):
        format_date(datetime(2024, 1, 1))
    now = utcnow()
    assert now.tzinfo is UTC
    assert now.microsecond == 0


def test_duplicate_image_uuids_are_reported_with_both_places() -> None:
    doc = base()
    doc["hv:imagelist"]["hv:images"].append({"hv:image": image_dict(IMAGE_ID.upper())})
    assert problems(dumps(doc)) == [(
        image_path("dc:identifier", 1),
        f"duplicate image UUID {IMAGE_ID.upper()} (also at hv:imagelist.hv:images[0])")]


def test_images_must_be_a_list_of_wrapped_objects() -> None:
    doc = base()
    doc["hv:imagelist"]["hv:images"] = {"hv:image": image_dict()}
    assert problems(dumps(doc)) == [("hv:imagelist.hv:images", "expected an array, got object")]
    doc["hv:imagelist"]["hv:images"] = [image_dict(), {"hv:image": "x"}, 3]
    found = problems(dumps(doc))
    assert [p for p, _ in found] == [f"hv:imagelist.hv:images[{i}]" for i in range(3)]
    assert all('expected an object {"hv:image": {...}}' in m for _, m in found)


def test_endorser_must_be_x509_with_slash_form_dns() -> None:
    doc = base()
    doc["hv:imagelist"]["hv:endorser"] = {"hv:dn": "/C=XX/CN=x"}
    assert problems(dumps(doc)) == [("hv:imagelist.hv:endorser.hv:x509", "missing required key")]
    doc = base()
    x509 = doc["hv:imagelist"]["hv:endorser"]["hv:x509"]
    x509["hv:dn"] = "CN=Corpus Endorser,O=Example,C=XX"
    x509["hv:ca"] = 7
    assert problems(dumps(doc)) == [
        ("hv:imagelist.hv:endorser.hv:x509.hv:ca", "expected a string, got number"),
        ("hv:imagelist.hv:endorser.hv:x509.hv:dn",
         "'CN=Corpus Endorser,O=Example,C=XX' is not a DN in OpenSSL slash form "
         "(/C=../O=../CN=..)"),
    ]


@pytest.mark.parametrize(("data", "expected"), [
    (b"[]", [("", "an imagelist must be a JSON object, got array")]),
    (b'"hv:imagelist"', [("", "an imagelist must be a JSON object, got string")]),
    (b"{}", [("hv:imagelist", "missing required key")]),
    (b'{"hv:imagelist": []}', [("hv:imagelist", "expected an object, got array")]),
])
def test_wrong_top_level_shapes(data: bytes, expected: list[tuple[str, str]]) -> None:
    assert problems(data) == expected


def test_legacy_form_without_wrapper_is_read_with_a_warning() -> None:
    body = base()["hv:imagelist"]
    lst = parse_imagelist(dumps(body), source="old.json")
    assert lst.legacy
    assert lst.warnings == [
        'old.json: legacy form without the "hv:imagelist" wrapper; gitreg writes it wrapped']
    assert lst.canonical_bytes() == parse_imagelist(dumps(base())).canonical_bytes()
    # Problems name the paths as they are in the legacy file.
    del body["dc:title"]
    assert problems(dumps(body)) == [("dc:title", "missing required key")]


def test_unknown_ad_and_gitreg_keys_are_kept_verbatim() -> None:
    doc = base()
    doc["x-top"] = {"kept": [1, 2.5, None]}
    doc["hv:imagelist"]["ad:vo"] = "vo.example"
    doc["hv:imagelist"]["some:future"] = {"nested": "ü"}
    img = doc["hv:imagelist"]["hv:images"][0]["hv:image"]
    img.update({"ad:appid": "993", "gitreg:series": "debian-12",
                "gitreg:description_md": "# Debian\n*minimal*", "dc:date:expires":
                "2031-01-01T00:00:00Z", "unknown": [True]})
    lst = parse_imagelist(dumps(doc))
    assert lst.to_dict() == doc
    image = lst.images[0]
    assert image.series == "debian-12"
    assert image.description_md == "# Debian\n*minimal*"
    assert image.expired(NOW) is False
    assert image.expired(datetime(2031, 1, 1, tzinfo=UTC)) is True
    canonical = lst.canonical_bytes()
    assert parse_imagelist(canonical).canonical_bytes() == canonical
    assert "ü".encode() in canonical


def test_to_dict_is_a_deep_copy() -> None:
    lst = parse_imagelist(dumps(base()))
    before = lst.canonical_bytes()
    copy_ = lst.to_dict()
    copy_["hv:imagelist"]["hv:images"][0]["hv:image"]["hv:size"] = "evil"
    lst.images[0].to_dict()["hv:uri"] = "evil"
    lst.endorser["hv:x509"] = "evil"
    assert lst.canonical_bytes() == before


def test_typed_properties() -> None:
    lst = parse_imagelist(dumps(base()))
    assert lst.title == "corpus"
    assert lst.description == "bad-input corpus base list"
    assert lst.dc_source == "https://example.org/"
    assert lst.uri == "https://example.org/list.json"
    assert lst.version == "1"
    assert lst.created == datetime(2024, 1, 1, tzinfo=UTC)
    assert lst.expires == datetime(2499, 12, 31, tzinfo=UTC)
    assert lst.image_ids == [IMAGE_ID]
    image = lst.image(IMAGE_ID.upper())
    assert isinstance(image, Image)
    assert (image.identifier, image.title, image.description) == (IMAGE_ID, "image", "an image")
    assert (image.uri, image.size, image.sha512) == ("https://example.org/image.img", 1024, SHA)
    assert (image.arch, image.os, image.osversion) == ("x86_64", "Linux", "12")
    assert (image.hypervisor, image.version, image.comments) == ("KVM", "1", "")
    assert (image.osname, image.format, image.series, image.description_md) == (
        None, None, None, None)


# --- time checks ---------------------------------------------------------------


def dated(created: str, expires: str) -> Imagelist:
    doc = base()
    doc["hv:imagelist"]["dc:date:created"] = created
    doc["hv:imagelist"]["dc:date:expires"] = expires
    return parse_imagelist(dumps(doc), source="dated.json")


def test_time_checks_pass_within_validity() -> None:
    lst = dated("2030-05-01T00:00:00Z", "2030-07-01T00:00:00Z")
    assert lst.time_problems(NOW) == []
    lst.check_times(NOW)


def test_expired_list_raises_expired_error_naming_list_expiry_and_reference() -> None:
    lst = dated("2030-05-01T00:00:00Z", "2030-06-01T12:00:00Z")  # expires exactly at NOW
    assert [p.path for p in lst.time_problems(NOW)] == ["hv:imagelist.dc:date:expires"]
    with pytest.raises(ExpiredError) as info:
        lst.check_times(NOW)
    assert info.value.message == (
        f"dated.json: imagelist {LIST_ID} expired at 2030-06-01T12:00:00Z "
        "(reference time 2030-06-01T12:00:00Z)")
    lst.check_times(NOW - timedelta(seconds=1))


def test_created_in_the_future_is_invalid_not_expired() -> None:
    lst = dated("2030-06-01T12:00:01Z", "2030-07-01T00:00:00Z")
    [problem] = lst.time_problems(NOW)
    assert problem.path == "hv:imagelist.dc:date:created"
    assert problem.message == ("created in the future: 2030-06-01T12:00:01Z is after the "
                               "reference time 2030-06-01T12:00:00Z")
    with pytest.raises(InvalidDocumentError) as info:
        lst.check_times(NOW)
    assert not isinstance(info.value, ExpiredError)


def test_expiry_before_creation_is_invalid_and_all_date_problems_are_listed() -> None:
    lst = dated("2030-05-01T00:00:00Z", "2030-04-01T00:00:00Z")
    messages = [p.message for p in lst.time_problems(NOW)]
    assert messages == [
        "expires (2030-04-01T00:00:00Z) before it was created (2030-05-01T00:00:00Z)",
        "expired at 2030-04-01T00:00:00Z (reference time 2030-06-01T12:00:00Z)",
    ]
    with pytest.raises(InvalidDocumentError) as info:
        lst.check_times(NOW)
    assert len(info.value.problems) == 2


# --- mutation -------------------------------------------------------------------

ENDORSER = {"hv:dn": "/C=XX/O=Example/CN=Alice", "hv:ca": "/C=XX/O=Example/CN=CA",
            "hv:email": "alice@example.org", "dc:creator": "Alice"}


def skeleton() -> Imagelist:
    return Imagelist.new(LIST_ID, "Alice's images", "test list", ENDORSER,
                         uri="https://example.org/alice.json", source="https://example.org/")


def test_new_makes_a_valid_empty_skeleton() -> None:
    lst = skeleton()
    assert (lst.version, lst.images, lst.endorser_dn) == ("0", [], "/C=XX/O=Example/CN=Alice")
    assert lst.dc_source == "https://example.org/"
    assert parse_imagelist(lst.canonical_bytes()).canonical_bytes() == lst.canonical_bytes()
    wrapped = Imagelist.new(LIST_ID, "t", "d", {"hv:x509": ENDORSER},
                            created=NOW, expires=NOW + timedelta(days=30))
    assert wrapped.endorser == ENDORSER
    wrapped.check_times(NOW + timedelta(days=1))


def test_new_rejects_a_bad_endorser_or_identifier() -> None:
    with pytest.raises(InvalidDocumentError) as info:
        Imagelist.new("not-a-uuid", "t", "d", {"hv:dn": "nope"})
    paths = {p.path for p in info.value.problems}
    assert paths == {"hv:imagelist.dc:identifier", "hv:imagelist.hv:endorser.hv:x509.hv:dn",
                     "hv:imagelist.hv:endorser.hv:x509.hv:ca",
                     "hv:imagelist.hv:endorser.hv:x509.hv:email",
                     "hv:imagelist.hv:endorser.hv:x509.dc:creator"}


def test_add_set_and_remove_images() -> None:
    lst = skeleton()
    lst.add_image(image_dict(IMAGE_ID))
    lst.add_image({"hv:image": image_dict(OTHER_ID, **{"ad:extra": "kept"})})
    assert lst.image_ids == [IMAGE_ID, OTHER_ID]
    lst.set_image_key(OTHER_ID, "hv:size", 4096)
    lst.set_image_key(OTHER_ID, "gitreg:series", "alma-9")
    assert lst.image(OTHER_ID).size == 4096
    assert lst.image(OTHER_ID).series == "alma-9"
    assert lst.image(OTHER_ID).get("ad:extra") == "kept"
    lst.remove_image_key(OTHER_ID, "gitreg:series")
    assert lst.image(OTHER_ID).series is None
    lst.remove_image(IMAGE_ID)
    assert lst.image_ids == [OTHER_ID]
    lst.set_key("hv:version", "1")
    lst.set_key("gitreg:description_md", "**hello**")
    assert (lst.version, lst.description_md) == ("1", "**hello**")
    lst.remove_key("gitreg:description_md")
    assert lst.description_md is None


def test_rejected_mutations_leave_the_list_unchanged() -> None:
    lst = skeleton()
    lst.add_image(image_dict(IMAGE_ID))
    before = lst.canonical_bytes()
    attempts = [
        (lambda: lst.add_image(image_dict(IMAGE_ID.upper())), InvalidDocumentError,
         f"duplicate image UUID {IMAGE_ID.upper()}"),
        (lambda: lst.add_image(image_dict(OTHER_ID, **{"sl:checksum:sha512": "00"})),
         InvalidDocumentError, "not 128 lowercase hex digits"),
        (lambda: lst.set_image_key(IMAGE_ID, "hv:size", -1), InvalidDocumentError,
         "not a non-negative integer"),
        (lambda: lst.set_image_key(IMAGE_ID, "x", float("nan")), InvalidDocumentError,
         "not representable as JSON"),
        (lambda: lst.set_key("dc:date:expires", "tomorrow"), InvalidDocumentError,
         "is not a date"),
        (lambda: lst.set_key("x", "\ud800"), InvalidDocumentError, "not representable as JSON"),
        (lambda: lst.remove_key("hv:uri"), InvalidDocumentError, "missing required key"),
        (lambda: lst.remove_key("nope"), UsageError, f"imagelist {LIST_ID} has no key 'nope'"),
        (lambda: lst.remove_image(OTHER_ID), UsageError,
         f"imagelist {LIST_ID} has no image {OTHER_ID}"),
        (lambda: lst.set_image_key(OTHER_ID, "hv:size", 1), UsageError, "has no image"),
        (lambda: lst.image(OTHER_ID), UsageError, "has no image"),
    ]
    for attempt, error, text in attempts:
        with pytest.raises(error) as info:
            attempt()
        assert text in info.value.diagnostics()
        assert lst.canonical_bytes() == before


def test_mutation_does_not_alias_caller_values() -> None:
    lst = skeleton()
    image = image_dict(IMAGE_ID, extra={"a": [1]})
    lst.add_image(image)
    image["extra"]["a"].append(2)
    image["hv:size"] = "evil"
    assert lst.image(IMAGE_ID).get("extra") == {"a": [1]}
    assert lst.image(IMAGE_ID).size == 2048
    value = {"deep": ["x"]}
    lst.set_key("x-custom", value)
    value["deep"].append("y")
    assert lst.get("x-custom") == {"deep": ["x"]}
    assert copy.deepcopy(lst.to_dict())["hv:imagelist"]["x-custom"] == {"deep": ["x"]}
