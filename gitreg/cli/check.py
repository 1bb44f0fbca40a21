"""`gitreg check` (filled in by the foundation work)."""
