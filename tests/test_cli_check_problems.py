"""`gitreg check` reports every problem, says when a signature proved nothing, and
judges a list at ``--at TIME`` (also `gitreg import`).

Lists are signed by the real `openssl smime -sign` with the session test PKI.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.env import RunCli
from tests.fixtures.x509_pki import TestPKI
from tests.test_cli_check import endorsed_list, openssl_sign, write_list

BINDING = "hv:imagelist.hv:endorser.hv:x509"
UNVOUCHED = ("the signature matches the content, but nothing in --ca-dir vouches for its "
             "signer, so the list is not verified")
CHANGED = "and the content does not match the signature: the list was changed after it was signed"


def test_invalid_uuids_and_wrong_signer_are_all_reported(run_cli: RunCli, x509_pki: TestPKI,
                                                         tmp_path: Path) -> None:
    doc = endorsed_list(x509_pki.alice, images=2)
    doc["hv:imagelist"]["dc:identifier"] = "not-a-uuid"
    doc["hv:imagelist"]["hv:images"][1]["hv:image"]["dc:identifier"] = "also-not-a-uuid"
    content = write_list(tmp_path / "list.json", doc)
    signed = openssl_sign(x509_pki.bob, content, tmp_path / "list.signed")  # not alice

    done = run_cli(["check", "--json", "--ca-dir", x509_pki.ca_dir, signed])
    assert done.returncode == 1
    report = json.loads(done.stdout)
    paths = [p["path"] for p in report["problems"]]
    assert "hv:imagelist.dc:identifier" in paths
    assert "hv:imagelist.hv:images[1].hv:image.dc:identifier" in paths
    assert BINDING in paths  # reported with the others, not instead of them
    # The signature itself verified; that its signer is not the endorser is said too.
    assert report["signature_verified"] is True
    assert report["signer_is_endorser"] is False
    binding = next(p["message"] for p in report["problems"] if p["path"] == BINDING)
    assert x509_pki.bob.dn in binding and x509_pki.alice.dn in binding
    text = run_cli(["check", "--ca-dir", x509_pki.ca_dir, signed])
    assert f"invalid ({len(paths)} problems)" in text.stderr
    assert f"  {BINDING}: untrusted signer: signed by {x509_pki.bob.dn}" in text.stderr


def test_right_signer_is_reported_as_the_endorser(run_cli: RunCli, x509_pki: TestPKI,
                                                  tmp_path: Path) -> None:
    content = write_list(tmp_path / "list.json", endorsed_list(x509_pki.alice))
    signed = openssl_sign(x509_pki.alice, content, tmp_path / "list.signed")
    report = json.loads(run_cli(["check", "--json", "--ca-dir", x509_pki.ca_dir,
                                 signed]).stdout)
    assert (report["signature_verified"], report["signer_is_endorser"]) == (True, True)
    unverified = json.loads(run_cli(["check", "--json", signed]).stdout)
    assert (unverified["signature_verified"], unverified["signer_is_endorser"]) == (False, None)


def test_unknown_ca_tells_an_edited_list_from_an_untouched_one(run_cli: RunCli,
                                                               x509_pki: TestPKI,
                                                               tmp_path: Path) -> None:
    """The rogue CA is not in --ca-dir: neither list is verified, and the one edited
    after signing is said to no longer match its signature (not just "untrusted")."""
    content = write_list(tmp_path / "list.json", endorsed_list(x509_pki.rogue))
    untouched = openssl_sign(x509_pki.rogue, content, tmp_path / "untouched.signed")
    edited = tmp_path / "edited.signed"
    raw = untouched.read_bytes()
    edited.write_bytes(raw.replace(b'"hv:size": 1024', b'"hv:size": 1025', 1))
    assert edited.read_bytes() != raw
    said = {}
    for name, signed in (("untouched", untouched), ("edited", edited)):
        done = run_cli(["check", "--json", "--ca-dir", x509_pki.ca_dir, signed])
        assert done.returncode == 1
        report = json.loads(done.stdout)
        assert report["signature_verified"] is False
        (said[name],) = [p["message"] for p in report["problems"]]
        assert said[name].startswith(f"untrusted signer: signer {x509_pki.rogue.dn}")
        text = run_cli(["check", "--ca-dir", x509_pki.ca_dir, signed])
        assert text.returncode == 1 and said[name] in text.stderr
    assert said["untouched"].endswith(UNVOUCHED) and CHANGED not in said["untouched"]
    assert said["edited"].endswith(CHANGED) and UNVOUCHED not in said["edited"]


def test_a_signature_that_cannot_be_checked_at_all_says_so() -> None:
    """Nothing to check the signature with (here: not even a CMS structure): no claim
    about the content either way."""
    from gitreg.errors import UntrustedSignerError
    from gitreg.interop.hepix import _signature_problem
    from gitreg.signing.x509.cms import content_matches

    assert content_matches(b"{}", b"not a CMS signature") is None
    said = _signature_problem(UntrustedSignerError("signer /CN=x: no CA for it"), b"{}",
                              b"not a CMS signature")
    assert said == ("untrusted signer: signer /CN=x: no CA for it; the signature could not "
                    "be checked at all, so nothing in this list is verified (not even that "
                    "it is unchanged)")


def test_at_judges_the_dates_at_another_time(run_cli: RunCli, tmp_path: Path) -> None:
    old = write_list(tmp_path / "old.json", endorsed_list(expires="2024-06-01T00:00:00Z"))
    today = run_cli(["check", old])
    assert today.returncode == 1 and "expired at 2024-06-01T00:00:00Z" in today.stderr
    then = run_cli(["check", "--json", "--at", "2024-05-01T00:00:00Z", old])
    assert then.returncode == 0, then.stderr
    report = json.loads(then.stdout)
    assert (report["expired"], report["at"]) == (False, "2024-05-01T00:00:00Z")
    after = run_cli(["check", "--at", "2024-06-01T00:00:00Z", old])
    assert after.returncode == 1 and "expired at 2024-06-01T00:00:00Z" in after.stderr


def test_at_must_be_a_utc_time(run_cli: RunCli, tmp_path: Path) -> None:
    listed = write_list(tmp_path / "list.json", endorsed_list())
    for command in (["check", listed], ["import", listed, "--no-verify"]):
        done = run_cli([*command, "--at", "yesterday"])
        assert done.returncode == 2
        assert "--at yesterday: 'yesterday' is not a date of the form " \
               "YYYY-MM-DDTHH:MM:SSZ" in done.stderr
        assert "Traceback" not in done.stderr


def test_import_at_a_later_time_finds_the_list_expired(run_cli: RunCli, x509_pki: TestPKI,
                                                       tmp_path: Path) -> None:
    content = write_list(tmp_path / "list.json",
                         endorsed_list(x509_pki.alice, expires="2499-12-31T00:00:00Z"))
    signed = openssl_sign(x509_pki.alice, content, tmp_path / "list.signed")
    out = tmp_path / "out.json"
    now = run_cli(["import", signed, "--ca-dir", x509_pki.ca_dir, "-o", out])
    assert now.returncode == 0, now.stderr
    out.unlink()
    later = run_cli(["import", signed, "--ca-dir", x509_pki.ca_dir, "-o", out, "--no-verify",
                     "--at", "2500-01-01T00:00:00Z"])
    assert later.returncode == 1
    assert "expired at 2499-12-31T00:00:00Z" in later.stderr
    assert not out.exists()
