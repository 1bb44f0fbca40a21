"""Image upload: destinations, URI rewrite rules, file:// copies and scp to a real sshd."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest

from gitreg.errors import UnreachableError, UsageError
from gitreg.publish.imagefile import measure
from gitreg.publish.local_config import UploadTarget
from gitreg.publish.upload import parse_destination, plan_upload, scp_command, upload

TARGETS = {
    "store": UploadTarget("store", "scp://up@images.example.org:2222/srv/images/",
                          "https://images.example.org/", ("-i", "/k")),
    "local": UploadTarget("local", "file:///srv/www/images/", "https://www.example.org/img/"),
}


@pytest.mark.parametrize(("text", "reason"), [
    ("http://example.org/x/", "unsupported scheme"),
    ("/srv/images/", "unsupported scheme"),
    ("file://remote/srv/", "local path"),
    ("scp:///srv/", "no host"),
    ("scp://host/srv/?x=1", "no query"),
    ("scp://host:99999/srv/", "[Pp]ort out of range"),
])
def test_bad_destinations_are_usage_errors(text, reason):
    with pytest.raises(UsageError, match=reason):
        parse_destination(text)


def test_target_name_rewrites_to_the_public_uri():
    plan = plan_upload("store", "alma 9.qcow2", TARGETS)
    assert plan.destination.path == "/srv/images/alma 9.qcow2"
    assert (plan.destination.host, plan.destination.user, plan.destination.port) == \
        ("images.example.org", "up", 2222)
    assert plan.uri == "https://images.example.org/alma%209.qcow2"
    assert plan.ssh_options == ("-i", "/k")


def test_url_below_a_target_uses_its_rule_and_a_full_file_url_is_kept():
    plan = plan_upload("file:///srv/www/images/9/alma.raw", "ignored.raw", TARGETS)
    assert plan.destination.path == "/srv/www/images/9/alma.raw"
    assert plan.uri == "https://www.example.org/img/9/alma.raw"


def test_scp_without_a_rule_is_refused_and_file_without_one_keeps_the_file_url():
    with pytest.raises(UsageError, match="no URI rule"):
        plan_upload("scp://elsewhere.example.org/srv/", "a.raw", TARGETS)
    assert plan_upload("file:///tmp/x/", "a.raw", {}).uri == "file:///tmp/x/a.raw"
    with pytest.raises(UsageError, match="neither a URL nor an upload target"):
        plan_upload("nowhere", "a.raw", TARGETS)


def test_scp_command_puts_options_port_and_a_separator():
    plan = plan_upload("store", "-evil.raw", TARGETS)
    command = scp_command(Path("-evil.raw"), plan.destination, plan.ssh_options)
    assert command[:2] == ["scp", "-q"]
    assert command[command.index("-P") + 1] == "2222"
    assert command[-3:] == ["--", "-evil.raw", "up@images.example.org:/srv/images/-evil.raw"]


def test_file_upload_copies_atomically(tmp_path):
    image = tmp_path / "alma.raw"
    image.write_bytes(b"\x00disk" * 1000)
    store = tmp_path / "store"
    store.mkdir()
    plan = plan_upload(f"file://{store}/", image.name, {})
    upload(image, plan, measure(image))
    assert (store / "alma.raw").read_bytes() == image.read_bytes()
    assert [p.name for p in store.iterdir()] == ["alma.raw"]  # no temporary file left


def test_file_upload_to_a_missing_directory_writes_nothing(tmp_path):
    image = tmp_path / "alma.raw"
    image.write_bytes(b"disk")
    plan = plan_upload(f"file://{tmp_path}/missing/", image.name, {})
    with pytest.raises(UsageError, match="does not exist"):
        upload(image, plan, measure(image))
    assert not (tmp_path / "missing").exists()


def test_file_changed_during_upload_is_not_left_behind(tmp_path):
    image = tmp_path / "alma.raw"
    image.write_bytes(b"first")
    digest = measure(image)
    image.write_bytes(b"second, longer")
    store = tmp_path / "store"
    store.mkdir()
    with pytest.raises(UnreachableError, match="changed while"):
        upload(image, plan_upload(f"file://{store}/", image.name, {}), digest)
    assert list(store.iterdir()) == []


def test_measure_streams_size_and_sha512(tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "img").write_bytes(data)
    digest = measure(tmp_path / "img")
    assert (digest.size, digest.sha512) == (len(data), hashlib.sha512(data).hexdigest())
    with pytest.raises(UsageError, match="no such file"):
        measure(tmp_path / "absent")


# --- through the CLI, to a real sshd ------------------------------------------------


@pytest.fixture
def working_copy(tmp_path, ssh_keys, run_cli) -> tuple[Path, str, str]:
    """A registry with one draft list holding one image: (directory, list, image)."""
    reg = tmp_path / "reg"
    done = run_cli(["init", reg, "--name", "Uploads", "--root-key", ssh_keys["bob"].private])
    assert done.returncode == 0, done.stderr
    (reg / ".git" / "gitreg.toml").write_text(
        '[endorser]\ndn = "/CN=Alice"\nca = "/CN=CA"\nemail = "a@example.org"\n'
        'creator = "Alice"\n')
    list_id = run_cli(["list", "new", "--title", "Uploads"], cwd=reg).stdout.strip()
    image_id = run_cli(["image", "add", list_id, "--uri", "https://old.example.org/x",
                        "--size", "1", "--sha512", "0" * 128, "--title", "Alma",
                        "--os", "Linux", "--osversion", "9", "--arch", "x86_64"],
                       cwd=reg).stdout.strip()
    return reg, list_id, image_id


def _image(reg: Path, list_id: str) -> dict:
    document = json.loads((reg / "imagelists" / f"{list_id}.json").read_text())
    return document["hv:imagelist"]["hv:images"][0]["hv:image"]


def test_cli_upload_over_scp_sets_uri_size_and_checksum(working_copy, sshd, run_cli, tmp_path):
    reg, list_id, image_id = working_copy
    options = ", ".join(json.dumps(o) for o in sshd.client_options)
    with (reg / ".git" / "gitreg.toml").open("a") as config:
        config.write(f'[upload.store]\ndest = "scp://{sshd.user}@127.0.0.1:{sshd.port}'
                     f'{sshd.root}/"\nuri = "https://images.example.org/pub/"\n'
                     f"ssh_options = [{options}]\n")
    image = tmp_path / "alma-9.raw"
    image.write_bytes(b"\x7fELF" + bytes(300_000))
    done = run_cli(["image", "upload", list_id, "Alma", image, "--to", "store"], cwd=reg)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "https://images.example.org/pub/alma-9.raw\n"
    assert (sshd.root / "alma-9.raw").read_bytes() == image.read_bytes()
    entry = _image(reg, list_id)
    assert entry["dc:identifier"] == image_id
    assert entry["hv:uri"] == "https://images.example.org/pub/alma-9.raw"
    assert entry["hv:size"] == image.stat().st_size
    assert entry["sl:checksum:sha512"] == hashlib.sha512(image.read_bytes()).hexdigest()


def test_cli_upload_to_an_untrusted_host_key_fails_and_changes_nothing(working_copy, sshd,
                                                                       run_cli, tmp_path):
    reg, list_id, _ = working_copy
    stranger = tmp_path / "known_hosts"
    stranger.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 "
                        "AAAAC3NzaC1lZDI1NTE5AAAAIGM0bWtleW5vdHRoZXNlcnZlcnNrZXlhdGFsbDAw\n")
    # ssh takes the first value of an option: the stranger's host key wins.
    options = ["-o", f"UserKnownHostsFile={stranger}", *sshd.client_options]
    with (reg / ".git" / "gitreg.toml").open("a") as config:
        config.write(f'[upload.store]\ndest = "scp://127.0.0.1:{sshd.port}{sshd.root}/"\n'
                     f'uri = "https://images.example.org/"\n'
                     f"ssh_options = {json.dumps(shlex.join(options))}\n")
    list_file = reg / "imagelists" / f"{list_id}.json"
    before = list_file.read_bytes()
    image = tmp_path / "alma.raw"
    image.write_bytes(b"disk")
    done = run_cli(["image", "upload", list_id, "Alma", image, "--to", "store"], cwd=reg)
    assert done.returncode == 3, done.stderr
    assert f"cannot upload {image} to scp://127.0.0.1:{sshd.port}" in done.stderr
    assert done.stdout == ""
    assert list_file.read_bytes() == before
    assert list(sshd.root.iterdir()) == []
