"""Test session setup: nothing touches the user's home, keyrings or git config.

Key fixtures live in one plug-in module per scheme under tests/fixtures/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# CI (CI=true) replays a fixed set of examples so a run is reproducible; on a
# developer's machine every run explores new ones. HYPOTHESIS_PROFILE overrides.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE",
                                     "ci" if os.environ.get("CI") else "dev"))

pytest_plugins = [
    "tests.fixtures.env",
    "tests.fixtures.ssh_keys",
    "tests.fixtures.openpgp_keys",
    "tests.fixtures.x509_pki",
    "tests.fixtures.sshd",
    "tests.fixtures.image_server",
    "tests.fixtures.git_server",
    "tests.fixtures.glance",
    "tests.fixtures.opennebula",
    "tests.site_registry",
]

# Other tools' imagelists, vendored with their SOURCES.md so that a fresh
# clone runs every interop test.
INTEROP = Path(__file__).resolve().parent / "data" / "interop"


@pytest.fixture(scope="session")
def interop_dir() -> Path:
    """The real imagelists of other tools (tests/data/interop, see SOURCES.md there)."""
    return INTEROP


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test Endorser")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "endorser@example.org")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test Endorser")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "endorser@example.org")
    monkeypatch.delenv("GITREG_VERBOSE", raising=False)
    # A GNUPGHOME that exists but holds nothing: a test that needs keys uses
    # the session keyring fixture explicitly.
    gnupg = home / ".gnupg"
    gnupg.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(gnupg))
    yield
    os.environ.pop("GITREG_VERBOSE", None)
