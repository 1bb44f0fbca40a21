"""Signing keys as the endorser names them on the command line.

- a path to an SSH private key file (Ed25519 or RSA; its passphrase, if any, is
  asked for on the terminal or read from GITREG_KEY_PASSPHRASE);
- ``openpgp:FINGERPRINT``: a key in gpg's keyring (``$GNUPGHOME``);
- ``x509:CERT.pem:KEY.pem``: an IGTF certificate (optionally followed by its
  CA chain) and its unencrypted PEM private key. X.509 keys sign lists
  (S/MIME/CMS) but never commits: git signs commits with SSH or OpenPGP.
"""

from __future__ import annotations

from gitreg.errors import UsageError
from gitreg.signing.interface import Signer

X509_PREFIX = "x509:"


def load_signing_key(spec: str) -> Signer:
    """The signer ``spec`` names (see the module docstring)."""
    if spec.startswith(X509_PREFIX):
        from gitreg.signing.x509 import X509Signer

        cert, sep, key = spec[len(X509_PREFIX):].partition(":")
        if not sep or not cert or not key:
            raise UsageError(f"key spec {spec!r}: write x509:CERT.pem:KEY.pem")
        return X509Signer.from_files(cert, key)
    from gitreg.signing.keys import load_signer

    return load_signer(spec)


def endorser_dns(signer: Signer) -> tuple[str, str] | None:
    """(subject DN, issuer DN) of an X.509 signer, as ``hv:dn``/``hv:ca`` must read."""
    if signer.scheme != "x509":
        return None
    from gitreg.signing.x509 import X509Signer, certificate_dns

    if not isinstance(signer, X509Signer):
        return None
    return certificate_dns(signer.certificate)


def commit_signer(list_signer: Signer, commit_spec: str | None) -> Signer:
    """The key that signs the commit: ``commit_spec``, else the list key if git can use it."""
    if commit_spec:
        signer = load_signing_key(commit_spec)
    elif list_signer.scheme == "x509":
        raise UsageError("an X.509 key signs lists, not commits: give an SSH or OpenPGP key "
                         "of the same endorser with --commit-key")
    else:
        return list_signer
    if signer.scheme == "x509":
        raise UsageError(f"--commit-key {commit_spec}: git signs commits with SSH or OpenPGP "
                         "keys, not X.509 certificates")
    return signer
