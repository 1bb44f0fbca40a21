"""`python -m gitreg` runs the CLI."""

from gitreg.cli.main import run

run()
