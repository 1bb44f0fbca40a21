"""How the CLI is put together: modules register their commands, nothing imports main.

A command module that imported ``app`` from ``gitreg.cli.main`` made an
import cycle (main imports the modules to build the app); these tests keep
the ``register(app)`` pattern of CONTRIBUTING.md ("Adding a command").
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gitreg.cli
from gitreg.cli import main

CLI_DIR = Path(gitreg.cli.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _defines_commands(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    return "def register(" in text or ".command(" in text


def test_no_cli_module_imports_main() -> None:
    offenders = [p.name for p in CLI_DIR.glob("*.py")
                 if p.name != "main.py" and {"gitreg.cli.main", "gitreg.cli.main.app"}
                 & _imports(p)]
    assert offenders == []


def test_every_module_with_commands_is_registered() -> None:
    with_commands = {p.stem for p in CLI_DIR.glob("*.py")
                     if p.stem != "main" and _defines_commands(p)}
    assert with_commands == set(main.COMMAND_MODULES)


def test_each_build_is_a_fresh_app_with_every_command() -> None:
    first, second = main.build_app(), main.build_app()
    assert first is not second
    top = {c.name or (c.callback.__name__ if c.callback else "") for c in first.registered_commands}
    groups = {g.name for g in first.registered_groups}
    assert {"init", "publish", "log", "check", "import", "export", "verify"} <= top
    assert {"list", "image", "policy", "server", "site"} <= groups
    assert len(second.registered_commands) == len(first.registered_commands)


def test_importing_any_cli_module_alone_works() -> None:
    """No module needs another to have been imported first (a cycle would show here)."""
    for name in main.COMMAND_MODULES:
        done = subprocess.run([sys.executable, "-c", f"import gitreg.cli.{name}"],
                              capture_output=True, text=True, check=False, timeout=60)
        assert done.returncode == 0, (name, done.stderr)


def test_hook_module_does_not_import_the_cli_stack() -> None:
    code = ("import sys, gitreg.server.hook; "
            "print(','.join(m for m in ('typer', 'click', 'rich', 'pydantic', 'gitreg.cli') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
