"""What every `gitreg` invocation promises: --version, exit codes, no tracebacks.

Exit codes (README, "Exit codes"): 0 success, 1 rejected, 2 usage, 3 operational.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gitreg
from tests.fixtures.env import RunCli

CORPUS = Path(__file__).parent / "data" / "bad-json"


def test_version(run_cli: RunCli) -> None:
    result = run_cli(["--version"])
    assert result.returncode == 0
    assert result.stdout == f"gitreg {gitreg.__version__}\n"


def test_help_lists_the_interop_commands(run_cli: RunCli) -> None:
    result = run_cli(["--help"])
    assert result.returncode == 0
    for command in ("check", "import", "export"):
        assert command in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["check", "/nonexistent/list.json"], "no such file"),
    (["check", "--no-such-option", "x"], "No such option"),
    (["check"], "Missing argument"),
    (["check", "--ca-dir", "/nonexistent/ca", str(CORPUS / "base-valid.json")],
     "not a directory"),
    (["check", str(CORPUS)], "is a directory"),
    (["import", "/nonexistent/list.signed", "--ca-dir", str(CORPUS)], "no such file"),
    (["export", str(CORPUS / "base-valid.json"), "--key", "k.pem"], "Missing option"),
    (["check", "--max-size", "0", str(CORPUS / "base-valid.json")], "--max-size"),
], ids=["missing-file", "bad-option", "no-argument", "ca-dir-missing", "directory",
        "import-missing-file", "export-no-cert", "bad-max-size"])
def test_usage_errors_exit_2(run_cli: RunCli, args: list[str], message: str) -> None:
    result = run_cli(args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_verbose_shows_a_traceback_for_a_user_error(run_cli: RunCli) -> None:
    quiet = run_cli(["check", "/nonexistent/list.json"])
    loud = run_cli(["--verbose", "check", "/nonexistent/list.json"])
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr
    assert loud.returncode == quiet.returncode == 2
    assert "no such file" in loud.stderr


def _run_with_internal_error(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point, with one extra command that has a bug (a stand-in for
    any unexpected exception inside a command)."""
    program = textwrap.dedent("""
        import sys
        from gitreg.cli import main

        @main.app.command("explode")
        def explode() -> None:
            raise KeyError("hv:uri")

        sys.argv = ["gitreg", *sys.argv[1:]]
        main.run()
    """)
    return subprocess.run([sys.executable, "-c", program, *args], capture_output=True,
                          text=True, check=False, timeout=60)


def test_internal_error_is_one_line_without_verbose() -> None:
    result = _run_with_internal_error("explode")
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert "internal error: KeyError" in result.stderr
    assert "--verbose" in result.stderr


def test_internal_error_shows_a_traceback_with_verbose() -> None:
    result = _run_with_internal_error("--verbose", "explode")
    assert result.returncode == 3
    assert "Traceback" in result.stderr
    assert "KeyError: 'hv:uri'" in result.stderr


def test_rejected_data_exits_1_and_unreadable_ca_dir_is_reported(run_cli: RunCli,
                                                                 tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    (ca_dir / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n"
                                       "-----END CERTIFICATE-----\n", encoding="ascii")
    signed = tmp_path / "list.signed"
    signed.write_bytes(b"MIME-Version: 1.0\nContent-Type: multipart/signed; "
                       b'boundary="b"\n\n--b\n{}\n--b--\n')
    result = run_cli(["check", "--ca-dir", ca_dir, signed])
    assert result.returncode == 1
    assert "broken.pem" in result.stderr
    assert "Traceback" not in result.stderr
