"""Signatures: one interface, one module per scheme (ssh, openpgp, x509)."""
