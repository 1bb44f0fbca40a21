"""Package metadata: the licence is an SPDX expression (no setuptools deprecation banners)."""

from __future__ import annotations

import tomllib
from importlib.metadata import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_license_is_an_spdx_string_in_pyproject_and_installed_metadata() -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert project["project"]["license"] == "Apache-2.0"
    # setuptools accepts the SPDX string from 77 on and warns about tables before.
    assert project["build-system"]["requires"] == ["setuptools>=77"]
    assert metadata("gitreg").get("License-Expression") == "Apache-2.0"
