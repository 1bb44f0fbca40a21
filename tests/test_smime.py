"""S/MIME signed imagelists: the cloudkeeper samples, lists signed by the real
``openssl smime -sign``, messages from build_smime checked by ``openssl smime
-verify``, and malformed or hostile messages."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitreg.errors import GitregError, InvalidDocumentError, SignatureError, UntrustedSignerError
from gitreg.interop.smime import (
    _crlf,
    _join_lines,
    _openssl_lines,
    _split_parts,
    _split_parts_by_line,
    build_smime,
    parse_smime,
    sign_smime,
    verify_smime,
)
from gitreg.signing.x509 import CAStore, X509Signer, check_binding
from tests.fixtures.x509_pki import Identity, TestPKI
from tests.tampering import tampered

NOW = dt.datetime.now(dt.UTC)

LIST = (b'{\n    "hv:imagelist": {\n        "dc:title": "Test list",\n'
        b'        "hv:version": "1.0"\n    }\n}\n')
# Before the cloudkeeper signer certificate expires (2028), whenever tests run.
CLOUDKEEPER_TIME = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
CLOUDKEEPER_SIGNER = "/C=AU/ST=Some-State/O=Internet Widgits Pty Ltd"
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])


def openssl(*args: str | Path, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, check=False,
                          env=env)


def smime_sign(tmp_path: Path, signer: Identity, content: bytes, *options: str) -> bytes:
    """A list signed by the real ``openssl smime -sign``."""
    src = tmp_path / "list.json"
    src.write_bytes(content)
    out = tmp_path / "list.smime"
    result = openssl("smime", "-sign", "-signer", signer.cert_path, "-inkey", signer.key_path,
                     "-in", src, "-out", out, *options)
    assert result.returncode == 0, result.stderr.decode()
    return out.read_bytes()


def smime_verify(tmp_path: Path, message: bytes, *options: str | Path,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    src = tmp_path / "message.smime"
    src.write_bytes(message)
    return openssl("smime", "-verify", "-in", src, "-out", tmp_path / "verified", *options,
                   env=env)


@pytest.fixture(scope="module")
def store(x509_pki: TestPKI) -> CAStore:
    return CAStore.from_directory(x509_pki.ca_dir)


# --- The cloudkeeper samples ------------------------------------------------------


@pytest.mark.parametrize("name", ["imagelist01.signed", "imagelist02.signed"])
def test_cloudkeeper_lists_verify_but_are_not_signed_by_their_endorser(
        interop_dir: Path, name: str) -> None:
    sample = interop_dir / "cloudkeeper"
    ca = CAStore.from_directory(sample / "ca")
    payload, signer = verify_smime((sample / name).read_bytes(), ca, at=CLOUDKEEPER_TIME)
    assert (signer.subject_dn, signer.issuer_dn) == (CLOUDKEEPER_SIGNER, CLOUDKEEPER_SIGNER)
    endorser = json.loads(payload)["hv:imagelist"]["hv:endorser"]["hv:x509"]
    assert endorser["hv:dn"] == "/DC=XXX/DC=YYY/C=ZZZ/O=Hosts/O=AA.net/CN=some.unknown.source"
    with pytest.raises(UntrustedSignerError, match="hv:dn /DC=XXX/DC=YYY") as caught:
        check_binding(signer, dn=endorser["hv:dn"], ca=endorser["hv:ca"], source=name)
    assert CLOUDKEEPER_SIGNER in caught.value.message


def test_cloudkeeper_invalid_list_is_untrusted(interop_dir: Path) -> None:
    sample = interop_dir / "cloudkeeper"
    with pytest.raises(UntrustedSignerError, match="/CN=TEST is not a trust anchor"):
        verify_smime((sample / "imagelist_invalid.signed").read_bytes(),
                     CAStore.from_directory(sample / "ca"), at=CLOUDKEEPER_TIME)


def test_cloudkeeper_payload_is_the_unsigned_list(interop_dir: Path, tmp_path: Path) -> None:
    sample = interop_dir / "cloudkeeper"
    message = (sample / "imagelist01.signed").read_bytes()
    parts = parse_smime(message)
    unsigned = (sample / "imagelist01.unsigned").read_bytes()
    assert parts.content.replace(b"\r\n", b"\n") == unsigned
    assert parts.payload == unsigned
    # The signed bytes are exactly what openssl hands out after verifying.
    result = smime_verify(tmp_path, message, "-CApath", sample / "ca", "-no-CAfile",
                          "-no-CAstore")
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "verified").read_bytes() == parts.content


# --- Lists signed by openssl smime -sign -------------------------------------------


@pytest.mark.parametrize("options", [[], ["-md", "sha512"], ["-text"], ["-nodetach"],
                                     ["-nodetach", "-text"], ["-md", "sha384", "-nocerts"]],
                         ids=["detached", "sha512", "text", "opaque", "opaque-text",
                              "no-certificates"])
def test_openssl_signed_lists_verify(x509_pki: TestPKI, store: CAStore, tmp_path: Path,
                                     options: list[str]) -> None:
    message = smime_sign(tmp_path, x509_pki.alice, LIST, *options)
    if "-nocerts" in options:
        # The signer certificate is neither in the message nor in the store.
        with pytest.raises(SignatureError, match="neither in the signature"):
            verify_smime(message, store, at=NOW)
        return
    payload, signer = verify_smime(message, store, at=NOW)
    assert payload == LIST
    assert (signer.subject_dn, signer.issuer_dn) == (x509_pki.alice.dn, x509_pki.alice.ca_dn)
    assert parse_smime(message).detached == ("-nodetach" not in options)


@pytest.mark.parametrize("content", [
    LIST.replace(b"\n", b"\r\n"),                                  # CRLF input
    LIST.rstrip(b"\n"),                                            # no final newline
    b'{"d": "' + b"x" * 3000 + b'"}\n',                            # one long line
    b'{"d": "' + b"y" * 1017 + b'"}\n',                            # exactly 1023 + LF
    b'{"d": "' + b"y" * 1018 + b'"}\r\n',                          # CR at the 1023 edge
    b"{\n\n\n}\n\n",                                               # blank lines
    b'{"a": "\xc3\xa9 trailing space "  \n}\n',                    # UTF-8, trailing blanks
], ids=["crlf", "no-final-newline", "long-line", "line-1023", "cr-at-edge", "blank-lines",
        "utf8"])
def test_awkward_lists_signed_by_openssl_verify(x509_pki: TestPKI, store: CAStore,
                                                tmp_path: Path, content: bytes) -> None:
    message = smime_sign(tmp_path, x509_pki.alice, content)
    payload, _ = verify_smime(message, store, at=NOW)
    assert payload == content.replace(b"\r\n", b"\n")
    # And our signed bytes are the ones openssl itself verified.
    result = smime_verify(tmp_path, message, "-CAfile", x509_pki.ca_file, "-no-CApath",
                          "-no-CAstore")
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "verified").read_bytes() == parse_smime(message).content


def test_rogue_signer_is_rejected_although_the_ambient_store_trusts_it(
        x509_pki: TestPKI, store: CAStore, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    message = smime_sign(tmp_path, x509_pki.mallory, LIST)
    ambient = {**os.environ, "SSL_CERT_FILE": str(x509_pki.rogue_file),
               "SSL_CERT_DIR": str(tmp_path / "empty")}
    # openssl with its default store (here: the rogue CA) accepts the list ...
    assert smime_verify(tmp_path, message, env=ambient).returncode == 0
    # ... gitreg, with the same environment, trusts only its CA directory.
    monkeypatch.setenv("SSL_CERT_FILE", ambient["SSL_CERT_FILE"])
    monkeypatch.setenv("SSL_CERT_DIR", str(x509_pki.directory))
    with pytest.raises(UntrustedSignerError, match="not signed by the key of the CA"):
        verify_smime(message, store, at=NOW)
    with pytest.raises(UntrustedSignerError):
        verify_smime(message, CAStore.from_directory(x509_pki.ca_dir), at=NOW)


def test_revoked_signer_is_rejected_like_openssl_crl_check(x509_pki: TestPKI, store: CAStore,
                                                          tmp_path: Path) -> None:
    message = smime_sign(tmp_path, x509_pki.revoked, LIST)
    with pytest.raises(UntrustedSignerError, match="revoked"):
        verify_smime(message, store, source="revoked.smime", at=NOW)
    # The fixture's CA directory is one openssl understands: it agrees.
    # (openssl reads only PEM CRLs from a -CApath directory.)
    ca_dir = x509_pki.write_ca_dir(tmp_path / "pem-ca", der_crls=False)
    # openssl's default (no CRL checks) would take the revoked signer ...
    assert smime_verify(tmp_path, message, "-CApath", ca_dir, "-no-CAfile",
                        "-no-CAstore").returncode == 0
    # ... and agrees with gitreg once told to read the CRLs.
    result = smime_verify(tmp_path, message, "-CApath", ca_dir, "-no-CAfile",
                          "-no-CAstore", "-crl_check_all")
    assert result.returncode != 0
    assert b"revoked" in result.stderr
    alice = smime_sign(tmp_path, x509_pki.alice, LIST)
    result = smime_verify(tmp_path, alice, "-CApath", ca_dir, "-no-CAfile", "-no-CAstore",
                          "-crl_check_all")
    assert result.returncode == 0, result.stderr.decode()
    with pytest.raises(UntrustedSignerError, match="revoked"):
        verify_smime(message, CAStore.from_directory(ca_dir), at=NOW)


def test_expired_signer_is_rejected(x509_pki: TestPKI, store: CAStore, tmp_path: Path) -> None:
    message = smime_sign(tmp_path, x509_pki.expired, LIST)
    with pytest.raises(UntrustedSignerError, match="expired at"):
        verify_smime(message, store, at=NOW)


def test_tampered_list_is_rejected(x509_pki: TestPKI, store: CAStore, tmp_path: Path) -> None:
    message = smime_sign(tmp_path, x509_pki.alice, LIST)
    tampered = message.replace(b"Test list", b"Evil list")
    assert tampered != message
    with pytest.raises(SignatureError, match="message digest does not match") as caught:
        verify_smime(tampered, store, source="tampered.smime", at=NOW)
    assert caught.value.message.startswith("tampered.smime: ")
    # A changed line ending is a changed list too (CRLF canonicalisation aside).
    with pytest.raises(SignatureError):
        verify_smime(message.replace(b'"1.0"\r\n', b'"1.0" \r\n'), store, at=NOW)


def test_two_signers_are_rejected(x509_pki: TestPKI, store: CAStore, tmp_path: Path) -> None:
    message = smime_sign(tmp_path, x509_pki.alice, LIST, "-signer", str(x509_pki.bob.cert_path),
                         "-inkey", str(x509_pki.bob.key_path))
    assert smime_verify(tmp_path, message, "-CAfile", x509_pki.ca_file, "-no-CApath",
                        "-no-CAstore").returncode == 0
    with pytest.raises(SignatureError, match="2 signers"):
        verify_smime(message, store, at=NOW)


# --- build_smime -------------------------------------------------------------------


@pytest.mark.parametrize("loaded_signer", [False, True], ids=["pem", "x509-signer"])
@pytest.mark.parametrize("text_part", [False, True], ids=["vmcaster-form", "text-plain"])
def test_built_messages_verify_with_openssl(x509_pki: TestPKI, store: CAStore, tmp_path: Path,
                                            text_part: bool, loaded_signer: bool) -> None:
    if loaded_signer:
        message = sign_smime(LIST, X509Signer(x509_pki.alice.cert_pem, x509_pki.alice.key_pem),
                             text_part=text_part)
    else:
        message = build_smime(LIST, x509_pki.alice.cert_pem, x509_pki.alice.key_pem,
                              text_part=text_part)
    result = smime_verify(tmp_path, message, "-CAfile", x509_pki.ca_file, "-no-CApath",
                          "-no-CAstore", *(["-text"] if text_part else []))
    assert result.returncode == 0, result.stderr.decode()
    # What vmcatcher would json-parse: the list itself, with CRLF.
    assert (tmp_path / "verified").read_bytes() == LIST.replace(b"\n", b"\r\n")
    payload, signer = verify_smime(message, store, at=NOW)
    assert payload == LIST
    assert signer.subject_dn == x509_pki.alice.dn
    head = message.split(b"\n\n", 1)[0]
    assert b'protocol="application/x-pkcs7-signature"; micalg="sha-256"' in head


def test_crlf_messages_and_folded_headers_verify(x509_pki: TestPKI, store: CAStore,
                                                tmp_path: Path) -> None:
    message = build_smime(LIST, x509_pki.alice.cert_pem, x509_pki.alice.key_pem)
    # As a mail system or an HTTP server may pass it on: CRLF everywhere.
    crlf = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert smime_verify(tmp_path, crlf, "-CAfile", x509_pki.ca_file, "-no-CApath",
                        "-no-CAstore").returncode == 0
    assert verify_smime(crlf, store, at=NOW)[0] == LIST
    folded = message.replace(b"; protocol=", b";\n\tprotocol=").replace(b"; boundary=",
                                                                        b";\n boundary=")
    assert folded != message
    assert smime_verify(tmp_path, folded, "-CAfile", x509_pki.ca_file, "-no-CApath",
                        "-no-CAstore").returncode == 0
    assert verify_smime(folded, store, at=NOW)[0] == LIST


def test_build_refuses_content_it_cannot_carry(x509_pki: TestPKI) -> None:
    with pytest.raises(InvalidDocumentError):
        build_smime(b"{\r\n}\r\n", x509_pki.alice.cert_pem, x509_pki.alice.key_pem)
    with pytest.raises(InvalidDocumentError):
        sign_smime(b"{\r\n}\r\n", X509Signer(x509_pki.alice.cert_pem, x509_pki.alice.key_pem))
    looks_like_headers = b"Subject: not json\n\n{}\n"
    with pytest.raises(InvalidDocumentError):
        build_smime(looks_like_headers, x509_pki.alice.cert_pem, x509_pki.alice.key_pem)
    # Behind a real part header it is carried as it is.
    message = build_smime(looks_like_headers, x509_pki.alice.cert_pem,
                          x509_pki.alice.key_pem, text_part=True)
    assert parse_smime(message).payload == looks_like_headers
    # A header-like first line without a blank line after it is just content.
    message = build_smime(b"Subject: 1\n{}\n", x509_pki.alice.cert_pem,
                          x509_pki.alice.key_pem)
    assert parse_smime(message).payload == b"Subject: 1\n{}\n"


text_lines = st.lists(st.text(st.characters(blacklist_characters="\r\n",
                                            blacklist_categories=["Cs"]), max_size=40),
                      max_size=6)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(lines=text_lines, final_newline=st.booleans(), text_part=st.booleans())
def test_build_and_parse_round_trip(x509_pki: TestPKI, store: CAStore, lines: list[str],
                                    final_newline: bool, text_part: bool) -> None:
    content = ("{" + "\n".join(lines) + ("\n" if final_newline else "")).encode()
    message = build_smime(content, x509_pki.alice.cert_pem, x509_pki.alice.key_pem,
                          text_part=text_part)
    payload, _ = verify_smime(message, store, at=NOW)
    assert payload == content


# --- Malformed messages ---------------------------------------------------------------


def _valid(x509_pki: TestPKI) -> bytes:
    return build_smime(LIST, x509_pki.alice.cert_pem, x509_pki.alice.key_pem)


def _boundary(message: bytes) -> bytes:
    return message.split(b'boundary="', 1)[1].split(b'"', 1)[0]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda m: LIST, "not an S/MIME signed message"),
    (lambda m: m.replace(b"; boundary=", b"; nob="), "no boundary parameter"),
    (lambda m: m.replace(_boundary(m) + b"--", _boundary(m) + b"xx"), "no closing boundary"),
    (lambda m: m.replace(b"application/x-pkcs7-signature;", b"text/plain;"),
     "not application/pkcs7-signature"),
    (lambda m: m.replace(b"\n\n--" + _boundary(m) + b"--",
                         b"\n--" + _boundary(m) + b"\nthird part\n--" + _boundary(m) + b"--"),
     "3 non-empty parts"),
    (lambda m: m.replace(b"Content-Disposition: attachment; filename=\"smime.p7s\"\n\n",
                         b"Content-Disposition: attachment\n\n!!!"), "not valid base64"),
    (lambda m: m.replace(b"multipart/signed", b"application/pkcs7-mime; "
                                             b"smime-type=enveloped-data"), "enveloped-data"),
], ids=["plain-json", "no-boundary", "unclosed", "wrong-signature-type", "three-parts",
        "bad-base64", "enveloped"])
def test_malformed_messages_are_signature_errors(x509_pki: TestPKI, store: CAStore,
                                                 mutate: object, message: str) -> None:
    broken = mutate(_valid(x509_pki))  # type: ignore[operator]
    with pytest.raises(SignatureError, match=message):
        verify_smime(broken, store, at=NOW)


def test_signed_part_headers_are_decoded(x509_pki: TestPKI, store: CAStore,
                                        tmp_path: Path) -> None:
    encoded = b"Content-Type: application/json\nContent-Transfer-Encoding: base64\n\n"
    message = smime_sign(tmp_path, x509_pki.alice, encoded + b"e30K\n")
    assert verify_smime(message, store, at=NOW)[0] == b"{}\n"
    message = smime_sign(tmp_path, x509_pki.alice, b"Content-Transfer-Encoding: x-uu\n\n{}\n")
    with pytest.raises(SignatureError, match="Content-Transfer-Encoding 'x-uu'"):
        parse_smime(message)


@FUZZ
@given(st.data())
def test_fuzzed_messages_raise_only_gitreg_errors(x509_pki: TestPKI, store: CAStore,
                                                  data: st.DataObject) -> None:
    message = tampered(data, _cached_valid(x509_pki), rounds=4, cut=200, insert=16, empty=b"\n",
                       insertions=st.sampled_from([b"\n", b"\r\n", b"\r"]))
    with contextlib.suppress(SignatureError, InvalidDocumentError):
        verify_smime(message, store, at=NOW)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_gitreg_errors(store: CAStore, blob: bytes) -> None:
    with pytest.raises(GitregError):
        verify_smime(b"Content-Type: multipart/signed; boundary=b\n\n" + blob, store, at=NOW)
    with pytest.raises(GitregError):
        verify_smime(blob, store, at=NOW)


_VALID: dict[str, bytes] = {}


def _cached_valid(x509_pki: TestPKI) -> bytes:
    if "valid" not in _VALID:
        _VALID["valid"] = _valid(x509_pki)
    return _VALID["valid"]


# The fast whole-line splitter must agree with the line-by-line model of OpenSSL.
body_lines = st.lists(
    st.one_of(st.sampled_from([b"--B", b"--B--", b"--Bx", b"---B", b"", b"\r", b"\r\r"]),
              st.binary(max_size=30).map(lambda b: b.replace(b"\n", b""))),
    max_size=12)


@settings(max_examples=300, deadline=None)
@given(body_lines, st.sampled_from([b"\n", b"\r\n"]), st.booleans())
def test_fast_split_agrees_with_openssl_line_model(lines: list[bytes], eol: bytes,
                                                   final_eol: bool) -> None:
    body = eol.join(lines) + (eol if final_eol else b"")
    assert _split_parts(body, b"--B") == _split_parts_by_line(body, b"--B")


# Boundaries are found with bytes.find now; any bytes of one are literal.
delimiters = st.sampled_from([b"--B", b"--(a+b).*?", b"--=_Part_1.2", b"--\\d$^|[x]"])


@settings(max_examples=300, deadline=None)
@given(st.data(), delimiters, st.sampled_from([b"\n", b"\r\n"]), st.booleans())
def test_fast_split_agrees_for_any_boundary_and_long_lines(
        data: st.DataObject, delimiter: bytes, eol: bytes, final_eol: bool) -> None:
    line = st.one_of(
        st.sampled_from([delimiter, delimiter + b"--", delimiter + b"x", b"-" + delimiter,
                         b"", b"\r", b"x" + delimiter]),
        st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
        # Around OpenSSL's 1023-byte reads, where the fast path gives way.
        st.integers(1019, 1025).map(lambda n: b"y" * n))
    lines = data.draw(st.lists(line, max_size=10))
    body = eol.join(lines) + (eol if final_eol else b"")
    assert _split_parts(body, delimiter) == _split_parts_by_line(body, delimiter)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), min_size=1,
                max_size=8),
       st.lists(st.sampled_from([b"\n", b"\r\n", b"\r\r\n"]), min_size=8, max_size=8))
def test_crlf_joins_lines_as_openssl_does(lines: list[bytes], ends: list[bytes]) -> None:
    whole = b"".join(line + end for line, end in zip(lines, ends, strict=False))
    assert _crlf(whole) == _join_lines(list(_openssl_lines(whole)))


def test_boundary_with_pattern_characters_verifies(x509_pki: TestPKI, store: CAStore,
                                                   tmp_path: Path) -> None:
    message = _valid(x509_pki)
    odd = message.replace(_boundary(message), b"=_(a+b).?:/,'x")
    assert odd != message
    payload, signer = verify_smime(odd, store, at=NOW)
    assert (payload, signer.subject_dn) == (LIST, x509_pki.alice.dn)
    result = smime_verify(tmp_path, odd, "-CAfile", x509_pki.ca_file, "-no-CApath",
                          "-no-CAstore")
    assert result.returncode == 0, result.stderr.decode()
    # A boundary that only looks alike as a pattern is not one.
    lookalike = odd.replace(b"--=_(a+b).?:/,'x--", b"--=_(aab).?:/,'x--")
    with pytest.raises(SignatureError, match="no closing boundary"):
        verify_smime(lookalike, store, at=NOW)
