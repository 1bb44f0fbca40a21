"""Command-line interface: thin typer apps; heavy imports inside commands."""
