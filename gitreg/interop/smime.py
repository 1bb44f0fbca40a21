"""S/MIME signed messages as vmcaster and AppDB publish imagelists.

A published list is a detached ``multipart/signed`` message (RFC 5751): the
first body part is the list, the second a base64 CMS signature of it. What the
signature covers is the first part as OpenSSL's ``SMIME_read_PKCS7`` hands it
to the verifier, so this module reproduces OpenSSL 3's reader exactly:

* input is read in "lines" of at most 1023 bytes (``BIO_get_line`` with its
  1024-byte buffer), each ending at a LF or at that limit;
* a line starting with ``--<boundary>`` is a delimiter (``--`` after it: the
  last one), wherever it starts;
* each line of a part loses its trailing CR/LF run, and lines that ended in a
  LF are joined with CRLF; the line break before a delimiter belongs to it.

The signed bytes therefore include any headers of the part (``openssl smime
-sign -text`` writes ``Content-Type: text/plain``; vmcaster writes none) and
use CRLF line ends. ``SMimeParts.payload`` is the list itself: part headers
removed, transfer encoding undone, CRLF turned back into LF for text.
Opaque ``application/pkcs7-mime`` signed-data is read as well.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from gitreg.errors import InvalidDocumentError, Problem, SignatureError
from gitreg.signing.x509 import (
    CAStore,
    X509Signer,
    X509SignerInfo,
    encapsulated_content,
    sign_cms,
    verify_cms,
)

# BIO_get_line(bio, linebuf, MAX_SMLEN) with MAX_SMLEN = 1024 keeps room for NUL.
_OPENSSL_LINE = 1023
_SIGNATURE_TYPES = ("application/x-pkcs7-signature", "application/pkcs7-signature")
_OPAQUE_TYPES = ("application/x-pkcs7-mime", "application/pkcs7-mime")
# A MIME header field as signing tools write them: a token name, then ':'. (JSON
# never starts like this: it opens with '{', '[' or blanks.)
_HEADER_LINE = re.compile(rb"[A-Za-z0-9][A-Za-z0-9-]*:")
_PARAMETER = re.compile(
    r';\s*([!#-\'*+.0-9A-Z^-~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')
_MAX_MESSAGE = 64 * 1024 * 1024
# What bytes.split() splits on; deleted in one pass before base64 decoding.
_WHITESPACE = b" \t\n\r\x0b\x0c"
# A line after the first one too long for one OpenSSL read (see _has_long_line).
_LONG_LINE = re.compile(rb"\n[^\n]{%d}" % _OPENSSL_LINE)
_BASE64_WIDTH = 64


@dataclass(frozen=True)
class SMimeParts:
    """An S/MIME signed message taken apart."""

    # Exactly the bytes the signature covers (canonical CRLF, part headers included).
    content: bytes
    # The CMS SignedData, DER.
    signature_der: bytes
    # The document itself: no part headers, transfer encoding undone, LF line ends
    # for text parts (the MIME default when a part declares nothing).
    payload: bytes
    # False for opaque application/pkcs7-mime (content inside the CMS).
    detached: bool = True


def _openssl_lines(data: bytes) -> Iterator[bytes]:
    """The successive reads of OpenSSL's BIO_get_line over ``data``."""
    pos, size = 0, len(data)
    while pos < size:
        newline = data.find(b"\n", pos, pos + _OPENSSL_LINE)
        end = newline + 1 if newline != -1 else min(pos + _OPENSSL_LINE, size)
        yield data[pos:end]
        pos = end


def _join_lines(lines: list[bytes]) -> bytes:
    """A part as multi_split builds it: trailing CR/LF stripped, CRLF between lines."""
    out: list[bytes] = []
    eol = False
    for index, line in enumerate(lines):
        if index and eol:
            out.append(b"\r\n")
        eol = line.endswith(b"\n")
        out.append(line.rstrip(b"\r\n"))
    return b"".join(out)


def _read_headers(data: bytes) -> tuple[dict[str, str], int]:
    """Header fields up to the first blank line (names lower-cased, folding undone),
    and the offset of what follows that line."""
    fields: list[list[str]] = []
    offset = len(data)
    for raw_line, end in _lines_with_end(data):
        if raw_line[:1] in (b"\r", b"\n"):
            offset = end
            break
        line = raw_line.rstrip(b"\r\n").decode("latin-1")
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if colon:
            fields.append([name.strip().lower(), value.strip()])
    headers: dict[str, str] = {}
    for name, value in fields:
        headers.setdefault(name, value)
    return headers, offset


def _lines_with_end(data: bytes) -> Iterator[tuple[bytes, int]]:
    pos = 0
    for line in _openssl_lines(data):
        pos += len(line)
        yield line, pos


def _content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """(type/subtype lower-cased, parameters) of a Content-Type value."""
    if not value:
        return "", {}
    kind = value.split(";", 1)[0].strip().lower()
    params: dict[str, str] = {}
    for match in _PARAMETER.finditer(value):
        raw = match.group(2)
        if raw.startswith('"'):
            raw = raw[1:-1]
            if "\\" in raw:
                raw = re.sub(r"\\(.)", r"\1", raw)
        params.setdefault(match.group(1).lower(), raw)
    return kind, params


def _where(source: str) -> str:
    return f"{source}: " if source else ""


def _base64(text: bytes, what: str, source: str) -> bytes:
    try:
        return base64.b64decode(text.translate(None, _WHITESPACE), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{_where(source)}{what} is not valid base64: {exc}") from exc


def _part_headers(content: bytes) -> tuple[dict[str, str], int]:
    """Headers at the start of a signed part, and where its body begins.

    Only a block of header fields closed by a blank line counts; anything else
    is a part without headers (as vmcaster and AppDB write them).
    """
    if not _HEADER_LINE.match(content):
        return {}, 0
    blank = re.search(rb"\r?\n\r?\n", content)
    if blank is None:
        return {}, 0
    block_lines = re.split(rb"\r?\n", content[:blank.start()])
    if not all(_HEADER_LINE.match(ln) or ln[:1] in (b" ", b"\t") for ln in block_lines):
        return {}, 0
    headers, _ = _read_headers(b"".join(ln + b"\n" for ln in block_lines) + b"\n")
    return headers, blank.end()


def _payload(content: bytes, source: str) -> bytes:
    """The document inside the signed content (see SMimeParts.payload)."""
    headers, offset = _part_headers(content)
    body = content[offset:]
    kind, _ = _content_type(headers.get("content-type"))
    encoding = headers.get("content-transfer-encoding", "7bit").strip().lower()
    if encoding == "base64":
        try:
            body = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SignatureError(f"{_where(source)}signed part is not valid base64: {exc}"
                                 ) from exc
    elif encoding == "quoted-printable":
        body = quopri.decodestring(body)
    elif encoding not in ("7bit", "8bit", "binary"):
        raise SignatureError(f"{_where(source)}signed part has unknown "
                             f"Content-Transfer-Encoding {encoding!r}")
    # A part with no Content-Type is text/plain (RFC 2045), sent with CRLF.
    if not kind or kind.startswith("text/"):
        body = body.replace(b"\r\n", b"\n")
    return body


def _boundary_state(line: bytes, delimiter: bytes) -> int:
    """OpenSSL's mime_bound_check: 0 no delimiter, 1 delimiter, 2 closing one."""
    if not line.startswith(delimiter):
        return 0
    return 2 if line[len(delimiter):len(delimiter) + 2] == b"--" else 1


def _split_parts_by_line(body: bytes, delimiter: bytes) -> tuple[list[bytes], bool]:
    """multi_split over OpenSSL's 1023-byte line reads: (parts, closed)."""
    parts: list[list[bytes]] = []
    current: list[bytes] | None = None
    inside = False
    for line in _openssl_lines(body):
        state = _boundary_state(line, delimiter)
        if state == 1:
            inside, current = True, None
        elif state == 2:
            return [_join_lines(p) for p in parts], True
        elif inside:
            if current is None:
                current = []
                parts.append(current)
            current.append(line)
    return [_join_lines(p) for p in parts], False


def _crlf(lines: bytes) -> bytes:
    """Whole lines (ending in LF) joined as multi_split joins them."""
    # The usual cases in single passes: LF lines, or CRs only as single CRLFs
    # (deleting every CR then strips just the one before each LF).
    if b"\r" not in lines:
        return lines.replace(b"\n", b"\r\n")[:-2]
    if lines.count(b"\r") == lines.count(b"\r\n"):
        return lines.translate(None, b"\r").replace(b"\n", b"\r\n")[:-2]
    while b"\r\n" in lines:
        lines = lines.replace(b"\r\n", b"\n")
    return lines.replace(b"\n", b"\r\n")[:-2]


def _delimiter_lines(body: bytes, delimiter: bytes) -> Iterator[tuple[int, int, bool]]:
    """(start, end, closing) of each line that starts with ``delimiter``.

    bytes.find, not a regex: every message has its own boundary, so a pattern
    built from it would be compiled anew for each list (Python's cache never hits).
    """
    # A delimiter holds no LF, so the LF before the next one lies past this one.
    text = b"\n" + body
    marker = b"\n" + delimiter
    found = text.find(marker)
    while found != -1:
        # text[found] is that LF, so the delimiter line starts at body[found].
        end = found + len(delimiter)
        yield found, end, body[end:end + 2] == b"--"
        found = text.find(marker, end + 1)


def _has_long_line(body: bytes) -> bool:
    """Whether a line (LF not counted) is at least _OPENSSL_LINE bytes long."""
    first = body.find(b"\n")
    return ((first if first != -1 else len(body)) >= _OPENSSL_LINE
            or _LONG_LINE.search(body) is not None)


def _split_parts(body: bytes, delimiter: bytes) -> tuple[list[bytes], bool]:
    """multi_split: the canonical parts between delimiter lines, and whether the
    closing delimiter was seen."""
    if _has_long_line(body):
        return _split_parts_by_line(body, delimiter)
    # No line is split by the 1023-byte reads, so whole lines can be cut at once.
    parts: list[bytes] = []
    start: int | None = None
    for line_start, line_end, closing in _delimiter_lines(body, delimiter):
        if start is not None and line_start > start:
            parts.append(_crlf(body[start:line_start]))
        if closing:
            return parts, True
        newline = body.find(b"\n", line_end)
        start = len(body) if newline == -1 else newline + 1
    if start is not None and start < len(body):
        tail = body[start:]
        parts.append(_crlf(tail if tail.endswith(b"\n") else tail + b"\n"))
    return parts, False


def _parse_multipart(body: bytes, params: dict[str, str], source: str) -> SMimeParts:
    where = _where(source)
    boundary = params.get("boundary", "")
    if not boundary:
        raise SignatureError(f"{where}multipart/signed message has no boundary parameter")
    parts, closed = _split_parts(body, b"--" + boundary.encode("latin-1"))
    if not closed:
        raise SignatureError(f"{where}multipart/signed message has no closing boundary "
                             f"--{boundary}--")
    if len(parts) != 2:
        raise SignatureError(f"{where}multipart/signed message has {len(parts)} non-empty "
                             "parts; expected the content and the signature")
    content, signature_part = parts
    headers, offset = _read_headers(signature_part)
    kind, _ = _content_type(headers.get("content-type"))
    if kind not in _SIGNATURE_TYPES:
        raise SignatureError(f"{where}second part is {kind or 'untyped'}, not "
                             "application/pkcs7-signature")
    der = _base64(signature_part[offset:], "signature part", source)
    return SMimeParts(content, der, _payload(content, source))


def _parse_opaque(body: bytes, params: dict[str, str], source: str) -> SMimeParts:
    where = _where(source)
    smime_type = params.get("smime-type", "signed-data").lower()
    if smime_type != "signed-data":
        raise SignatureError(f"{where}S/MIME {smime_type} is not a signed list")
    der = _base64(body, "pkcs7-mime body", source)
    content = encapsulated_content(der)
    if content is None:
        raise SignatureError(f"{where}pkcs7-mime signed-data carries no content")
    return SMimeParts(content, der, _payload(content, source), detached=False)


def parse_smime(message: bytes, *, source: str = "") -> SMimeParts:
    """Take a signed message apart without verifying it.

    Raises SignatureError, naming what is wrong, when the message is not a
    well-formed S/MIME signed message or its signed part cannot be decoded.
    """
    where = _where(source)
    if len(message) > _MAX_MESSAGE:
        raise SignatureError(f"{where}message is {len(message)} bytes; at most "
                             f"{_MAX_MESSAGE} are accepted")
    headers, offset = _read_headers(message)
    kind, params = _content_type(headers.get("content-type"))
    if kind == "multipart/signed":
        return _parse_multipart(message[offset:], params, source)
    if kind in _OPAQUE_TYPES:
        return _parse_opaque(message[offset:], params, source)
    raise SignatureError(f"{where}not an S/MIME signed message (Content-Type: "
                         f"{kind or 'missing'})")


def verify_smime(message: bytes, store: CAStore, *, at: datetime,
                 source: str = "", allow_sha1: bool = False) -> tuple[bytes, X509SignerInfo]:
    """Verify a signed message against ``store`` only; return (payload, signer).

    SHA-1 signatures are refused (``WeakDigestError``) unless ``allow_sha1``.

    The signer binding (``hv:dn``/``hv:ca``) is the caller's to check with
    ``gitreg.signing.x509.check_binding`` once the payload is parsed.
    """
    parts = parse_smime(message, source=source)
    try:
        info = verify_cms(parts.content, parts.signature_der, store, at=at,
                          allow_sha1=allow_sha1)
    except SignatureError as exc:
        if not source:
            raise
        raise type(exc)(f"{source}: {exc.message}", hint=exc.hint) from exc
    return parts.payload, info


def build_smime(content: bytes, signer_cert_pem: bytes, signer_key_pem: bytes, *,
                text_part: bool = False, source: str = "") -> bytes:
    """A detached multipart/signed message of ``content``, laid out as ``openssl
    smime -sign`` writes it (LF outside the signed part, CRLF inside).

    By default the part has no headers, like vmcaster and AppDB lists, because
    vmcatcher parses the signed part, headers and all, as JSON. ``text_part``
    adds ``Content-Type: text/plain`` as ``openssl smime -sign -text`` does.
    ``parse_smime(...).payload`` gives ``content`` back exactly.
    """
    return _signed_message(content, lambda data: sign_cms(data, signer_cert_pem, signer_key_pem),
                           text_part=text_part, source=source)


def sign_smime(content: bytes, signer: X509Signer, *, text_part: bool = False,
               source: str = "") -> bytes:
    """``build_smime`` by a signer whose key is loaded once: loading checks an RSA
    key (about 70 ms for 2048 bits), which would dominate signing many lists."""
    return _signed_message(content, signer.sign_cms, text_part=text_part, source=source)


def _signed_message(content: bytes, sign: Callable[[bytes], bytes], *, text_part: bool,
                    source: str) -> bytes:
    def refuse(reason: str) -> InvalidDocumentError:
        return InvalidDocumentError([Problem("", reason, source)], source=source)

    if b"\r" in content:
        raise refuse("cannot be sent as S/MIME text: it contains carriage returns, which "
                     "canonical CRLF line ends would not preserve")
    if not text_part and _part_headers(content)[0]:
        raise refuse("it starts like MIME headers and would lose them; use text_part=True")
    body = content.replace(b"\n", b"\r\n")
    part = b"Content-Type: text/plain\r\n\r\n" + body if text_part else body
    token = secrets.token_hex(16).upper()
    while f"--{token}".encode() in part:
        token = secrets.token_hex(16).upper()
    boundary = f"----{token}".encode()
    signed = _join_lines(list(_openssl_lines(part + b"\n")))
    der = sign(signed)
    encoded = base64.b64encode(der)
    armour = b"".join(encoded[i:i + _BASE64_WIDTH] + b"\n"
                      for i in range(0, len(encoded), _BASE64_WIDTH))
    message = b"".join([
        b"MIME-Version: 1.0\n",
        b'Content-Type: multipart/signed; protocol="application/x-pkcs7-signature"; '
        b'micalg="sha-256"; boundary="' + boundary + b'"\n\n',
        b"This is an S/MIME signed message\n\n",
        b"--" + boundary + b"\n", part, b"\n",
        b"--" + boundary + b"\n",
        b'Content-Type: application/x-pkcs7-signature; name="smime.p7s"\n'
        b"Content-Transfer-Encoding: base64\n"
        b'Content-Disposition: attachment; filename="smime.p7s"\n\n',
        armour, b"\n",
        b"--" + boundary + b"--\n\n",
    ])
    parsed = parse_smime(message, source=source)
    if parsed.content != signed or parsed.payload != content:
        raise refuse("content does not survive S/MIME text canonicalisation unchanged")
    return message
