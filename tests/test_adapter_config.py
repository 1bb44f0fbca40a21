"""``[[cloud]]`` sections of the site config, and the property mapping they feed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gitreg.adapters import properties
from gitreg.errors import InvalidDocumentError
from gitreg.site.config import parse_config

BASE: dict[str, Any] = {
    "site": {"state_dir": "state"},
    "registry": [{"name": "fedcloud", "remotes": ["https://example.org/r.git"],
                  "trust_root": "sha256:" + "a" * 64}],
}


def parse(*clouds: dict[str, Any]) -> Any:
    return parse_config({**BASE, "cloud": list(clouds)}, base_dir=Path("/srv/site"))


def test_a_glance_cloud_with_every_key() -> None:
    config = parse({"name": "openstack", "type": "glance", "cloud": "mycloud",
                    "registries": ["fedcloud"], "disk_formats": ["raw"],
                    "visibility": "shared", "projects": {"vo.example.org": "p1"},
                    "retire": {"hide": "0d", "deactivate": "7d", "delete": "30d"}})
    (cloud,) = config.clouds
    assert (cloud.name, cloud.type, cloud.cloud, cloud.registries, cloud.disk_formats) == (
        "openstack", "glance", "mycloud", ("fedcloud",), ("raw",))
    assert (cloud.visibility, dict(cloud.projects)) == ("shared", {"vo.example.org": "p1"})
    assert (cloud.hide_after, cloud.deactivate_after, cloud.delete_after) == (
        0.0, 7 * 86400.0, 30 * 86400.0)
    assert cloud.convert is True


def test_an_opennebula_cloud() -> None:
    (cloud,) = parse({"name": "one", "type": "opennebula", "endpoint": "http://one:2633/RPC2",
                      "auth_file": "one_auth", "datastore": 100, "template": True,
                      "permissions": "640"}).clouds
    assert cloud.auth_file == Path("/srv/site/one_auth")
    assert (cloud.datastore, cloud.template, cloud.permissions) == (100, True, "640")


def test_every_cloud_mistake_is_reported_with_its_path() -> None:
    with pytest.raises(InvalidDocumentError) as caught:
        parse({"name": "a b", "type": "azure", "registries": ["nope"],
               "disk_formats": ["qcow3"], "visibility": "everyone", "convert": "yes",
               "retire": {"hide": "9d", "delete": "1d", "later": "1d"}, "colour": 1},
              {"name": "one", "type": "opennebula", "permissions": "999"})
    problems = {p.path: p.message for p in caught.value.problems}
    assert set(problems) == {
        "cloud[0].name", "cloud[0].type", "cloud[0].registries", "cloud[0].disk_formats",
        "cloud[0].visibility", "cloud[0].convert", "cloud[0].retire", "cloud[0].retire.later",
        "cloud[0].colour", "cloud[0].cloud", "cloud[1].endpoint", "cloud[1].permissions"}
    assert "hide <= deactivate <= delete" in problems["cloud[0].retire"]


def test_glance_import_methods_are_glance_only_and_spelled_out() -> None:
    (cloud,) = parse({"name": "g", "type": "glance", "cloud": "c", "convert": "glance",
                      "upload": "web-download", "verify_plugin": True}).clouds
    assert (cloud.convert, cloud.glance_converts, cloud.upload, cloud.verify_plugin) == (
        True, True, "web-download", True)
    (plain,) = parse({"name": "g", "type": "glance", "cloud": "c"}).clouds
    assert (plain.convert, plain.glance_converts, plain.upload, plain.verify_plugin) == (
        True, False, "stream", False)
    with pytest.raises(InvalidDocumentError) as caught:
        parse({"name": "g", "type": "glance", "cloud": "c", "convert": "remote",
               "upload": "ftp"},
              {"name": "one", "type": "opennebula", "endpoint": "http://one:2633/RPC2",
               "upload": "web-download"})
    problems = {p.path: p.message for p in caught.value.problems}
    assert set(problems) == {"cloud[0].convert", "cloud[0].upload", "cloud[1].upload"}
    assert problems["cloud[0].convert"] == 'must be true, false or "glance", not \'remote\''
    assert "the opennebula adapter takes neither" in problems["cloud[1].upload"]


def test_web_download_is_refused_without_the_verify_plugin() -> None:
    # Without gitreg's Glance plugin, fetched bytes become an active image
    # before anyone can compare digests: the config says so and is refused.
    with pytest.raises(InvalidDocumentError) as caught:
        parse({"name": "g", "type": "glance", "cloud": "c", "upload": "web-download"},
              {"name": "h", "type": "glance", "cloud": "c", "verify_plugin": "yes"},
              {"name": "one", "type": "opennebula", "endpoint": "http://one:2633/RPC2",
               "verify_plugin": True})
    problems = {p.path: p.message for p in caught.value.problems}
    assert set(problems) == {"cloud[0].upload", "cloud[1].verify_plugin",
                             "cloud[2].verify_plugin"}
    assert problems["cloud[0].upload"].startswith(
        'upload = "web-download" needs verify_plugin = true')
    assert "before they can be checked" in problems["cloud[0].upload"]
    assert problems["cloud[1].verify_plugin"] == "must be true or false, not a string"
    assert "the opennebula adapter has none" in problems["cloud[2].verify_plugin"]


def test_duplicate_cloud_names_are_refused() -> None:
    with pytest.raises(InvalidDocumentError) as caught:
        parse({"name": "x", "type": "glance", "cloud": "c"},
              {"name": "x", "type": "glance", "cloud": "d"})
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("cloud[1].name", "duplicate cloud name 'x'")]


@pytest.mark.parametrize(("given", "canonical"), [
    ("amd64", "x86_64"), ("x86_64", "x86_64"), ("i386", "i686"), ("arm64", "aarch64"),
    ("ppc64el", "ppc64le"), ("AMD64", "x86_64"), (None, None)])
def test_architectures_are_canonical(given: str | None, canonical: str | None) -> None:
    assert properties.architecture(given) == canonical


@pytest.mark.parametrize(("image", "distro"), [
    ({"sl:os": "Linux", "sl:osname": "Ubuntu"}, "ubuntu"),
    ({"sl:os": "CentOS"}, "centos"), ({"sl:os": "Linux"}, None),
    ({"sl:osname": "Rocky Linux"}, "rocky"), ({"sl:osname": "AlmaLinux"}, "almalinux"),
    ({"sl:osname": "Scientific Linux"}, "scientificlinux")])
def test_os_distro_is_libosinfo_style(image: dict[str, str], distro: str | None) -> None:
    assert properties.os_distro(image) == distro


@pytest.mark.parametrize(("given", "mib"), [
    (2048, 2048), ("2048", 2048), ("2 GB", 2048), ("1GiB", 1024), ("512M", 512),
    ("lots", None), (True, None)])
def test_ram_minimum_units(given: Any, mib: int | None) -> None:
    assert properties.ram_mib(given) == mib


@pytest.mark.parametrize(("comments", "user"), [
    ("Default user: ubuntu", "ubuntu"), ("login is centos, key injected", "centos"),
    ("username = cloud-user", "cloud-user"), ("a plain image", None)])
def test_original_user_from_comments(comments: str, user: str | None) -> None:
    assert properties.original_user(comments) == user
