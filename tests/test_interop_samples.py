"""The real imagelists of other tools behave as tests/data/interop/SOURCES.md says.

Each sample goes through the real CLI; the cloudkeeper signatures are also
checked against the real `openssl smime -verify`, so "verifies
cryptographically" is shown by both, not assumed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.env import RunCli


def test_hepixvmitrust_list_parses_and_is_reported_expired(run_cli: RunCli,
                                                           interop_dir: Path) -> None:
    result = run_cli(["check", "--json", interop_dir / "hepixvmitrust" / "imagelist.json"])
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["imagelist"] is not None  # parsed: the only problem is time
    assert report["expired"] is True
    assert [p["path"] for p in report["problems"]] == ["hv:imagelist.dc:date:expires"]
    assert "expired at 2011-04-07T17:09:12Z" in result.stderr
    assert isinstance(report["imagelist"]["images"][0]["size"], int)


@pytest.mark.parametrize("name", ["imagelist01.signed", "imagelist02.signed"])
def test_cloudkeeper_lists_verify_but_signer_is_not_the_endorser(
        run_cli: RunCli, interop_dir: Path, name: str) -> None:
    samples = interop_dir / "cloudkeeper"
    signed = samples / name
    openssl = subprocess.run(["openssl", "smime", "-verify", "-in", str(signed),
                              "-CApath", str(samples / "ca"), "-no-CAfile", "-no-CAstore",
                              "-out", os.devnull], capture_output=True, text=True, check=False)
    assert openssl.returncode == 0, openssl.stderr

    result = run_cli(["check", "--json", "--ca-dir", samples / "ca", signed])
    assert result.returncode == 1
    report = json.loads(result.stdout)
    # gitreg's own verifier agrees with openssl about the signature itself ...
    assert report["signature_verified"] is True
    signer = "/C=AU/ST=Some-State/O=Internet Widgits Pty Ltd"
    assert report["signer"] == {"dn": signer, "ca": signer}
    # ... and rejects the list only for the endorser binding, quoting both sides.
    assert [p["path"] for p in report["problems"]] == ["hv:imagelist.hv:endorser.hv:x509"]
    message = report["problems"][0]["message"]
    assert signer in message
    assert "/DC=XXX/DC=YYY/C=ZZZ/O=Hosts/O=AA.net/CN=some.unknown.source" in message
    assert "/DC=XXX/DC=YYY/CN=SOME TEST CA" in message
    assert "untrusted signer" in result.stderr


def test_cloudkeeper_signed_payload_is_the_unsigned_list(run_cli: RunCli,
                                                         interop_dir: Path) -> None:
    samples = interop_dir / "cloudkeeper"
    signed = run_cli(["check", "--json", samples / "imagelist01.signed"])
    plain = run_cli(["check", "--json", samples / "imagelist01.unsigned"])
    assert signed.returncode == 0, signed.stderr
    assert plain.returncode == 0, plain.stderr
    assert "signature not verified" in signed.stderr
    assert (json.loads(signed.stdout)["imagelist"]["content"]
            == json.loads(plain.stdout)["imagelist"]["content"])


def test_cloudkeeper_import_is_refused_for_the_binding(run_cli: RunCli, interop_dir: Path,
                                                       tmp_path: Path) -> None:
    samples = interop_dir / "cloudkeeper"
    out = tmp_path / "out.json"
    result = run_cli(["import", samples / "imagelist02.signed", "--ca-dir", samples / "ca",
                      "-o", out])
    assert result.returncode == 1
    assert "but the list names the endorser hv:dn" in result.stderr
    assert not out.exists()


def test_cloudkeeper_invalid_list_is_untrusted(run_cli: RunCli, interop_dir: Path) -> None:
    samples = interop_dir / "cloudkeeper"
    result = run_cli(["check", "--json", "--ca-dir", samples / "ca",
                      samples / "imagelist_invalid.signed"])
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["signature_verified"] is False
    assert report["signer"] is None
    assert len(report["problems"]) == 1
    assert report["problems"][0]["message"].startswith("untrusted signer:")
    assert "/C=NA/ST=Narnia/L=Aver/O=TEST/OU=TEST/CN=TEST" in report["problems"][0]["message"]


def test_appdb_list_with_string_sizes_and_ad_keys_round_trips(run_cli: RunCli,
                                                              interop_dir: Path,
                                                              tmp_path: Path) -> None:
    source = interop_dir / "cloudkeeper" / "image_list10.json"
    original = json.loads(source.read_text(encoding="utf-8"))
    first = tmp_path / "first.json"
    result = run_cli(["import", source, "--no-verify", "-o", first])
    assert result.returncode == 0, result.stderr
    assert "--no-verify" in result.stderr
    imported = json.loads(first.read_text(encoding="utf-8"))
    # Nothing lost or converted: string sizes stay strings, ad:* keys stay.
    assert imported == original
    images = [entry["hv:image"] for entry in imported["hv:imagelist"]["hv:images"]]
    assert all(isinstance(image["hv:size"], str) for image in images)
    assert all("ad:appid" in image and "ad:base_mpuri" in image for image in images)
    assert "ad:vo" in imported["hv:imagelist"]
    # The canonical form is a fixed point.
    second = tmp_path / "second.json"
    again = run_cli(["import", first, "--no-verify", "-o", second])
    assert again.returncode == 0, again.stderr
    assert second.read_bytes() == first.read_bytes()
    check = run_cli(["check", "--json", source])
    assert check.returncode == 0, check.stderr
    sizes = [image["size"] for image in json.loads(check.stdout)["imagelist"]["images"]]
    assert sizes == [int(image["hv:size"]) for image in images]
