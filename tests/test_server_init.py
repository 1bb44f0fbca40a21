"""`gitreg server init`: a seeded, hooked, protected bare repository; idempotent."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from gitreg.errors import UsageError
from gitreg.gitstore import PushResult, RegistryStore, push
from gitreg.server.init import hook_template, init_server, install_hook, server_config
from tests.fixtures.git_server import git, make_registry

REJECT_ALL = "#!/bin/sh\necho 'held by the test hook'\nexit 1\n"


def _registry(path: Path) -> Path:
    return make_registry(path)


def _seeded(tmp_path: Path) -> tuple[Path, Path]:
    """A registry working copy and the server repository init_server seeded from it."""
    source = _registry(tmp_path / "source")
    bare = tmp_path / "registry.git"
    init_server(bare, source=source)
    return source, bare


def _push_a_change(source: Path, bare: Path, content: str) -> PushResult:
    """Commit a changed gitreg.json in ``source`` and push it to ``bare``."""
    (source / "gitreg.json").write_text(content)
    git("commit", "--quiet", "-am", "change", cwd=source)
    return push(source, str(bare), timeout=60)


def _config(bare: Path, key: str) -> str:
    return git("-C", bare, "config", "--get", key).stdout.strip()


def test_init_seeds_main_sets_the_receive_checks_and_installs_the_hook(tmp_path):
    source, bare = _seeded(tmp_path)

    assert git("-C", bare, "rev-parse", "--is-bare-repository").stdout.strip() == "true"
    assert RegistryStore.open(bare).ref("refs/heads/main") == \
        git("rev-parse", "HEAD", cwd=source).stdout.strip()
    assert _config(bare, "receive.denyNonFastForwards") == "true"
    assert _config(bare, "receive.denyDeletes") == "true"
    assert _config(bare, "receive.fsckObjects") == "true"
    assert _config(bare, "receive.maxInputSize") == str(64 * 1024 * 1024)
    assert _config(bare, "http.receivepack") == "true"
    assert _config(bare, "core.hooksPath") == "hooks"

    hook = bare / "hooks" / "pre-receive"
    assert os.access(hook, os.X_OK)
    text = hook.read_text()
    assert text.splitlines()[0] == f"#!{sys.executable}"
    assert "gitreg.server.hook" in text
    assert text.split("\n", 1)[1] == hook_template().split("\n", 1)[1]


def test_init_is_idempotent_and_never_loses_refs(tmp_path):
    source, bare = _seeded(tmp_path)
    # The server moves on (as pushes would make it); then an operator re-runs init.
    git("-C", bare, "update-ref", "refs/heads/main",
        git("-C", bare, "commit-tree", "-p", "main", "-m", "newer", "main^{tree}").stdout.strip())
    git("-C", bare, "update-ref", "refs/heads/extra", "main")
    refs_before = git("-C", bare, "for-each-ref").stdout
    git("-C", bare, "config", "receive.denyDeletes", "false")
    (bare / "hooks" / "pre-receive").write_text("#!/bin/sh\nexit 0\n")

    init_server(bare, source=source)
    assert git("-C", bare, "for-each-ref").stdout == refs_before
    assert _config(bare, "receive.denyDeletes") == "true"
    assert "gitreg.server.hook" in (bare / "hooks" / "pre-receive").read_text()
    for key, value in server_config().items():
        assert _config(bare, key) == value


def test_missing_or_empty_source_is_a_usage_error_and_creates_nothing(tmp_path, run_cli):
    bare = tmp_path / "registry.git"
    with pytest.raises(UsageError, match="no such registry"):
        init_server(bare, source=tmp_path / "absent")
    assert not bare.exists()
    empty = tmp_path / "empty"
    git("init", "--quiet", empty)
    with pytest.raises(UsageError, match="no branch main"):
        init_server(bare, source=empty)
    assert not bare.exists()

    result = run_cli(["server", "init", bare, "--from", tmp_path / "absent"])
    assert result.returncode == 2
    assert "no such registry" in result.stderr
    assert not bare.exists()


def test_init_refuses_a_directory_that_is_not_a_bare_repository(tmp_path):
    source = _registry(tmp_path / "source")
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not a bare Git repository"):
        init_server(target, source=source)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    with pytest.raises(UsageError):
        init_server(source, source=source)  # a working copy is not a server


def test_cli_server_init_prints_the_path(tmp_path, run_cli):
    source = _registry(tmp_path / "source")
    bare = tmp_path / "registry.git"
    result = run_cli(["server", "init", bare, "--from", source])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(bare)
    assert RegistryStore.open(bare).ref("refs/heads/main") is not None


def test_the_installed_hook_runs_even_when_core_hookspath_points_elsewhere(tmp_path):
    source, bare = _seeded(tmp_path)
    hook = install_hook(bare, REJECT_ALL)
    assert hook.read_text() == REJECT_ALL  # not a Python script: left as written
    elsewhere = tmp_path / "no-hooks"
    elsewhere.mkdir()
    git("config", "--global", "core.hooksPath", elsewhere)

    result = _push_a_change(source, bare, '{"changed": true}\n')
    assert not result.accepted
    assert "held by the test hook" in result.message


def test_a_hook_for_an_interpreter_path_with_spaces_still_runs(tmp_path):
    source, bare = _seeded(tmp_path)
    odd = tmp_path / "python with spaces"
    odd.mkdir()
    (odd / "python3").symlink_to(sys.executable)
    script = ("#!/usr/bin/env python3\nimport sys\nsys.stdin.read()\n"
              "print('python hook ran', sys.version_info[0])\nsys.exit(1)\n")
    hook = install_hook(bare, script, python=str(odd / "python3"))
    assert hook.read_text().startswith("#!/bin/sh\n")

    result = _push_a_change(source, bare, '{"changed": 2}\n')
    assert not result.accepted
    assert "python hook ran 3" in result.message


def test_init_verifies_the_seed_and_pins_its_initial_policy(tmp_path):
    from gitreg.model.policy import fingerprint

    source, bare = _seeded(tmp_path)
    assert _config(bare, "gitreg.trustroot") == \
        fingerprint((source / "policy.json").read_bytes())


def test_init_refuses_an_unverifiable_seed_and_creates_nothing(tmp_path):
    from gitreg.errors import PolicyViolationError

    source = _registry(tmp_path / "source")
    (source / "notes.txt").write_text("not a registry file\n")
    git("add", "notes.txt", cwd=source)
    git("commit", "--quiet", "-m", "unsigned", cwd=source)
    bare = tmp_path / "registry.git"
    with pytest.raises(PolicyViolationError) as caught:
        init_server(bare, source=source)
    assert "commit-signature" in str(caught.value)
    assert not bare.exists()
