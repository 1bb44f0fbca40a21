"""gitreg: a Git-backed, replicated registry of signed HEPiX imagelists."""

__version__ = "0.1.0"
