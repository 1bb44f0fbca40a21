"""X.509 signatures: detached CMS (the signature inside S/MIME), in-process.

This is how the HEPiX tools sign lists: vmcaster and AppDB sign with an IGTF
grid certificate, vmcatcher trusts a list when the signature chains to its
CA directory (``/etc/grid-security/certificates``: ``*.pem``, ``<hash>.0``,
CRLs ``<hash>.r0``) and the signer is the list's endorser (``hv:dn`` and
``hv:ca`` in OpenSSL slash form).

Verification never spawns openssl and never looks at the system CA bundle:
the CMS structure is parsed with asn1crypto, signatures are checked with
cryptography, and the chain is built against a ``CAStore`` only. Stores are
cached and keep the results of certificate-signature checks, so verifying many
lists signed under the same CA costs one CMS signature check each.

The package, one job a module: ``dn`` (OpenSSL slash-form names), ``der``
(hand-read DER: the fast CMS reader, certificate serials), ``store`` (the CA
store, chains and CRLs judged at a time), ``directory`` (CA files and IGTF
directories), ``cms`` (parse, verify, sign) and ``keys`` (policy identities
and signers). Import from here; the modules are the layout, not the API.
"""

from gitreg.signing.x509.cms import X509SignerInfo, encapsulated_content, sign_cms, verify_cms
from gitreg.signing.x509.der import RefusedCertificateError, serial_problem
from gitreg.signing.x509.dn import certificate_dns, dn_openssl
from gitreg.signing.x509.keys import X509PublicKey, X509Signer, check_binding
from gitreg.signing.x509.store import CAStore

__all__ = [
    "CAStore",
    "RefusedCertificateError",
    "X509PublicKey",
    "X509Signer",
    "X509SignerInfo",
    "certificate_dns",
    "check_binding",
    "dn_openssl",
    "encapsulated_content",
    "serial_problem",
    "sign_cms",
    "verify_cms",
]
