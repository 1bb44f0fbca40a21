"""The endorser's local config: .git/gitreg.toml over git config gitreg.*."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gitreg.errors import UsageError
from gitreg.publish.local_config import (
    LocalConfig,
    load,
    parse_git_config,
    parse_toml,
)


def git(*args: str | Path) -> None:
    subprocess.run(["git", *map(str, args)], check=True, capture_output=True)


def test_toml_flattens_tables_and_lists():
    values = parse_toml(b'[endorser]\ndn = "/CN=A"\n[upload.store]\ndest = "file:///srv/"\n'
                        b'ssh_options = ["-i", "my key"]\n[publish]\nlifetime = 14\n',
                        source="x.toml")
    assert values == {"endorser.dn": "/CN=A", "upload.store.dest": "file:///srv/",
                      "upload.store.ssh_options": "-i 'my key'", "publish.lifetime": "14"}


def test_bad_toml_names_the_file():
    with pytest.raises(UsageError, match=r"\.git/gitreg\.toml: not valid TOML"):
        parse_toml(b"[endorser\n", source=".git/gitreg.toml")


def test_git_config_listing_keeps_subsection_case():
    listing = b"gitreg.endorser.dn\n/CN=A\0gitreg.upload.Mirror.dest\nfile:///x/\0"
    assert parse_git_config(listing) == {"endorser.dn": "/CN=A",
                                         "upload.Mirror.dest": "file:///x/"}


def test_toml_overrides_git_config_which_includes_global(tmp_path):
    git("init", "-q", tmp_path)
    git("config", "--global", "gitreg.endorser.email", "global@example.org")
    git("-C", tmp_path, "config", "gitreg.endorser.dn", "/CN=From git")
    (tmp_path / ".git" / "gitreg.toml").write_text('[endorser]\ndn = "/CN=From toml"\n')
    config = load(tmp_path, tmp_path / ".git")
    assert config.get("endorser.dn") == "/CN=From toml"
    assert config.get("endorser.email") == "global@example.org"
    assert "gitreg.toml" in config.origin("endorser.dn")
    assert config.get("endorser.ca") is None


def test_upload_targets_and_lifetime():
    config = LocalConfig(values={"upload.a.dest": "scp://h/d/", "upload.a.uri": "https://h/d/",
                                 "upload.a.ssh_options": "-i '/k ey'", "publish.lifetime": "7"})
    (target,) = config.upload_targets().values()
    assert (target.name, target.dest, target.uri) == ("a", "scp://h/d/", "https://h/d/")
    assert target.ssh_options == ("-i", "/k ey")
    assert config.lifetime_days() == 7


def test_bad_settings_are_usage_errors_naming_the_key():
    with pytest.raises(UsageError, match=r"publish\.lifetime"):
        LocalConfig(values={"publish.lifetime": "a week"}).lifetime_days()
    with pytest.raises(UsageError, match=r"upload\.b\.dest"):
        LocalConfig(values={"upload.b.uri": "https://x/"}).upload_targets()
