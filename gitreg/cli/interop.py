"""`gitreg import` and `gitreg export` (filled in by the foundation work)."""
