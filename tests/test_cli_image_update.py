"""`gitreg image update` and `image upload` of an image without hv:uri, through the CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from gitreg.publish.image_update import next_image_version
from tests.test_cli_endorser import make_registry, ok


def head(reg: Path) -> str:
    return subprocess.run(["git", "-C", reg, "rev-parse", "main"], capture_output=True,
                          text=True, check=True).stdout


def image_of(run_cli, reg: Path, list_id: str) -> dict:
    document = json.loads(ok(run_cli(["list", "show", list_id, "--json"], cwd=reg)).stdout)
    (entry,) = document["hv:imagelist"]["hv:images"]
    return entry["hv:image"]


def write(path: Path, body: bytes) -> Path:
    path.write_bytes(body)
    return path


def add(run_cli, reg: Path, list_id: str, image: Path, *uri: str) -> str:
    return ok(run_cli(["image", "add", list_id, *uri, "--file", image, "--title", "Alma 9",
                       "--os", "Linux", "--osversion", "9.4", "--arch", "x86_64"],
                      cwd=reg)).stdout.strip()


def test_update_sets_file_facts_and_bumps_the_version_once(run_cli, tmp_path, ssh_keys):
    reg = make_registry(tmp_path, ssh_keys, roots=("bob",), alice=True)
    key = ssh_keys["alice"].private
    list_id = ok(run_cli(["list", "new", "--title", "Base"], cwd=reg)).stdout.strip()
    image_id = add(run_cli, reg, list_id, write(tmp_path / "v1.img", b"one" * 1000),
                   "--uri", "https://img.example.org/v1.img")
    ok(run_cli(["publish", "--key", key], cwd=reg))
    assert image_of(run_cli, reg, list_id)["hv:version"] == "1"

    v2 = write(tmp_path / "v2.img", b"two" * 2000)
    first = ok(run_cli(["image", "update", list_id, image_id, "--file", v2, "--uri",
                        "https://img.example.org/v2.img", "--osversion", "9.5"], cwd=reg))
    assert first.stdout == "2\n"
    assert "hv:version 1 -> 2" in first.stderr and "hv:size 3000 -> 6000" in first.stderr
    image = image_of(run_cli, reg, list_id)
    assert (image["hv:size"], image["sl:checksum:sha512"], image["hv:uri"],
            image["sl:osversion"]) == (6000, hashlib.sha512(v2.read_bytes()).hexdigest(),
                                       "https://img.example.org/v2.img", "9.5")

    # Updated again before publishing: still one version past the published one.
    v3 = write(tmp_path / "v3.img", b"three" * 100)
    assert ok(run_cli(["image", "update", list_id, "Alma 9", "--file", v3],
                      cwd=reg)).stdout == "2\n"
    before = (reg / "imagelists" / f"{list_id}.json").read_bytes()
    same = ok(run_cli(["image", "update", list_id, image_id, "--file", v3], cwd=reg))
    assert "unchanged" in same.stderr
    assert (reg / "imagelists" / f"{list_id}.json").read_bytes() == before

    ok(run_cli(["publish", "--key", key], cwd=reg))
    ok(run_cli(["verify", reg]))
    assert image_of(run_cli, reg, list_id)["hv:version"] == "2"
    assert ok(run_cli(["image", "update", list_id, image_id, "--file", v2],
                      cwd=reg)).stdout == "3\n"


def test_image_without_uri_is_uploaded_before_it_can_be_published(run_cli, tmp_path,
                                                                  ssh_keys):
    reg = make_registry(tmp_path, ssh_keys, roots=("bob",), alice=True)
    key = ssh_keys["alice"].private
    list_id = ok(run_cli(["list", "new", "--title", "Uploads"], cwd=reg)).stdout.strip()
    image = write(tmp_path / "alma.img", b"alma" * 500)
    added = run_cli(["image", "add", list_id, "--file", image, "--title", "Alma 9",
                     "--os", "Linux", "--osversion", "9.4", "--arch", "x86_64"], cwd=reg)
    assert added.returncode == 0, added.stderr
    assert "has no hv:uri yet" in added.stderr
    image_id = added.stdout.strip()

    main = head(reg)
    refused = run_cli(["publish", "--key", key], cwd=reg)
    assert refused.returncode == 2
    assert f"image {image_id} has no hv:uri yet" in refused.stderr
    assert "gitreg image upload" in refused.stderr
    assert head(reg) == main

    store = tmp_path / "store"
    store.mkdir()
    uploaded = ok(run_cli(["image", "upload", list_id, image_id, image, "--to",
                           f"{store.as_uri()}/"], cwd=reg))
    assert uploaded.stdout == f"{store.as_uri()}/alma.img\n"
    assert (store / "alma.img").read_bytes() == image.read_bytes()
    ok(run_cli(["publish", "--key", key], cwd=reg))
    assert image_of(run_cli, reg, list_id)["hv:uri"] == f"{store.as_uri()}/alma.img"


def test_next_image_version_moves_past_the_published_one():
    assert next_image_version("1", None) == "1"
    assert next_image_version("1", "1") == "2"
    assert next_image_version("2", "1") == "2"
    assert next_image_version("3.3.0-1", "3.3.0-1") == "3.3.0-2"
    assert next_image_version("0.9", "1.0") == "1.1"
