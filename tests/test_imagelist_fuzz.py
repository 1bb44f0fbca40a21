"""Property tests: generated imagelists round-trip byte-stably, and no input of any kind
makes parse_imagelist raise anything but InvalidDocumentError."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitreg.errors import InvalidDocumentError
from gitreg.model.dates import format_date
from gitreg.model.imagelist import Imagelist, parse_imagelist

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BASE_BYTES = (Path(__file__).parent / "data" / "bad-json" / "base-valid.json").read_bytes()
BASE: dict[str, Any] = json.loads(BASE_BYTES)
# JSON syntax, escapes, NUL, a UTF-8 lead byte, bytes that are never UTF-8.
INTERESTING_BYTES = [*b'{}[]",:0\\e-\x00\xc3 nulltrue', 0x80, 0xFF]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
# Keys gitreg does not know: AppDB's, and anything a future tool may add.
unknown_keys = st.one_of(st.text(max_size=12).map(lambda s: "ad:" + s),
                         st.text(max_size=12).map(lambda s: "x-" + s))
extras = st.dictionaries(unknown_keys, json_values, max_size=3)
dates = st.datetimes().map(lambda d: format_date(d.replace(tzinfo=UTC)))
sizes = st.integers(0, (1 << 63) - 1).flatmap(lambda n: st.sampled_from([n, str(n)]))


@st.composite
def images(draw: st.DrawFn, uuid: str) -> dict[str, Any]:
    text = st.text(max_size=30)
    image = {
        "dc:identifier": uuid, "dc:title": draw(text), "dc:description": draw(text),
        "hv:uri": draw(text), "hv:size": draw(sizes),
        "sl:checksum:sha512": draw(st.binary(min_size=64, max_size=64)).hex(),
        "sl:arch": draw(text), "sl:os": draw(text), "sl:osversion": draw(text),
        "sl:comments": draw(text), "hv:hypervisor": draw(text), "hv:version": draw(text),
    }
    optional = {"hv:format": text, "sl:osname": text, "gitreg:series": text,
                "gitreg:description_md": text, "dc:date:expires": dates,
                "hv:ram_minimum": sizes, "hv:core_minimum": sizes}
    for key in draw(st.sets(st.sampled_from(sorted(optional)))):
        image[key] = draw(optional[key])
    image.update(draw(extras))
    return image


@st.composite
def imagelists(draw: st.DrawFn) -> dict[str, Any]:
    text = st.text(max_size=30)
    uuids = draw(st.lists(st.uuids(), max_size=4, unique=True))
    dn = st.text(max_size=20).map(lambda s: "/CN=" + s)
    body = {
        "dc:date:created": draw(dates), "dc:date:expires": draw(dates),
        "dc:identifier": str(draw(st.uuids())), "dc:description": draw(text),
        "dc:title": draw(text), "dc:source": draw(text), "hv:version": draw(text),
        "hv:uri": draw(text),
        "hv:endorser": {"hv:x509": {"hv:dn": draw(dn), "hv:ca": draw(dn),
                                    "hv:email": draw(text), "dc:creator": draw(text)}},
        "hv:images": [{"hv:image": draw(images(str(u)))} for u in uuids],
    }
    body.update(draw(extras))
    return {"hv:imagelist": body}


def read_everything(lst: Imagelist) -> None:
    """Every typed read of a list that parsed must work."""
    _ = (lst.identifier, lst.title, lst.description, lst.dc_source, lst.version, lst.uri,
         lst.created, lst.expires, lst.endorser_dn, lst.endorser_ca, lst.endorser_email,
         lst.endorser_creator, lst.description_md, lst.time_problems(lst.created))
    for image in lst.images:
        _ = (image.identifier, image.title, image.description, image.uri, image.size,
             image.sha512, image.arch, image.os, image.osversion, image.osname, image.format,
             image.hypervisor, image.version, image.comments, image.ram_minimum,
             image.core_minimum, image.expires, image.series, image.description_md)
        assert lst.image(image.identifier).to_dict() == image.to_dict()


def parse_or_reject(data: bytes) -> None:
    try:
        lst = parse_imagelist(data, source="fuzz.json")
    except InvalidDocumentError as exc:
        assert exc.problems
        assert all(p.message for p in exc.problems)
        assert exc.diagnostics().startswith("fuzz.json: ")
        return
    read_everything(lst)
    canonical = lst.canonical_bytes()
    assert parse_imagelist(canonical).canonical_bytes() == canonical


@FUZZ
@given(imagelists())
def test_generated_imagelists_round_trip_byte_stably(doc: dict[str, Any]) -> None:
    lst = Imagelist.from_dict(doc)
    assert lst.to_dict() == doc
    canonical = lst.canonical_bytes()
    again = parse_imagelist(canonical)
    assert again.canonical_bytes() == canonical
    assert again.to_dict() == doc
    read_everything(again)
    # Any serialization of the same document gives the same canonical bytes.
    assert parse_imagelist(json.dumps(doc).encode()).canonical_bytes() == canonical


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_only_ever_raise_invalid_document(data: bytes) -> None:
    parse_or_reject(data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(BASE_BYTES)), st.sampled_from(["flip", "del", "ins"]),
                          st.sampled_from(INTERESTING_BYTES)),
                min_size=1, max_size=6))
def test_byte_mutations_of_a_valid_list_only_raise_invalid_document(
        edits: list[tuple[int, str, int]]) -> None:
    data = bytearray(BASE_BYTES)
    for position, op, byte in edits:
        at = min(position, len(data) - 1)
        if op == "flip":
            data[at] = byte
        elif op == "del":
            del data[at]
        else:
            data.insert(at, byte)
    parse_or_reject(bytes(data))


def all_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, child in node.items():
            found.extend(all_paths(child, (*path, key)))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found.extend(all_paths(child, (*path, index)))
    return found


BASE_PATHS = all_paths(BASE)[1:]


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(BASE_PATHS), st.none() | json_values | st.just(...)),
                min_size=1, max_size=4))
def test_structural_mutations_only_raise_invalid_document(
        edits: list[tuple[tuple[Any, ...], Any]]) -> None:
    doc: Any = json.loads(BASE_BYTES)
    for path, value in edits:
        parent = doc
        try:
            for step in path[:-1]:
                parent = parent[step]
            if value is ...:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or retyped this path
    parse_or_reject(json.dumps(doc).encode())
    parse_or_reject(json.dumps(doc.get("hv:imagelist") if isinstance(doc, dict) else doc)
                    .encode())
