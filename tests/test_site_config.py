"""The site config: a valid file, and every kind of mistake named by its TOML path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitreg.errors import EXIT_REJECTED, EXIT_USAGE, InvalidDocumentError, UsageError
from gitreg.site.config import (
    DEFAULT_DOWNLOAD_WORKERS,
    DEFAULT_HANDLER_TIMEOUT,
    load_config,
)

FINGERPRINT = "sha256:" + "ab" * 32
LIST_A = "76fdee70-8119-5d33-aaaa-3c57e1c60df1"
IMAGE_A = "c0482bc2-bf41-5d49-aaaa-a750174a186b"


# A well-formed registry table, for the tests about the other tables.
REGISTRY_R = f"""[[registry]]
name = "r"
remotes = ["https://example.org/r.git"]
trust_root = "{FINGERPRINT}"
"""


def write(tmp_path: Path, text: str, name: str = "site.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> dict[str, str]:
    with pytest.raises(InvalidDocumentError) as info:
        load_config(path)
    assert info.value.exit_code == EXIT_REJECTED
    return {p.path: p.message for p in info.value.problems}


VALID = f"""
[site]
state_dir = "state"
download_workers = 3
min_rate = "64 KiB/s"
deadline = "30m"
conflicts = "priority"

[[registry]]
name = "fedcloud"
remotes = ["http://replica-a.example/fedcloud.git", "mirrors/fedcloud.git",
           "git@replica-b.example:fedcloud.git"]
trust_root = "{FINGERPRINT.upper().replace('SHA256', 'sha256')}"
priority = 10

[[registry]]
name = "private"
remotes = ["/srv/private.git"]
trust_root = "keys/policy.json"

[[subscription]]
registry = "fedcloud"
imagelists = ["*"]
new_images = "refuse"
[subscription.match]
"sl:arch" = "x86_64"

[[subscription]]
registry = "private"
imagelists = ["{LIST_A.upper()}"]
images = ["{IMAGE_A}"]

[[handler]]
command = "handlers/glance.sh --verbose 'two words'"
timeout = 45

[[handler]]
command = ["my-vmcatcher-handler"]
"""


def test_valid_config_is_parsed_with_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "policy.json").write_text("{}")
    config = load_config(write(tmp_path, VALID))

    assert config.state_dir == tmp_path / "state"
    assert config.state_db == tmp_path / "state" / "state.sqlite"
    assert config.download_workers == 3
    assert config.min_rate == 64 * 1024
    assert config.deadline == 1800.0
    assert config.conflicts == "priority"

    fedcloud, private = config.registries
    assert fedcloud.name == "fedcloud"
    assert fedcloud.remotes == (
        "http://replica-a.example/fedcloud.git",
        str(tmp_path / "mirrors" / "fedcloud.git"),   # relative path: against the file
        "git@replica-b.example:fedcloud.git",          # scp-like: left alone
    )
    assert fedcloud.trust_root == FINGERPRINT          # normalised to lower case
    assert fedcloud.trust_root_is_fingerprint
    assert fedcloud.priority == 10
    assert private.trust_root == str(tmp_path / "keys" / "policy.json")
    assert not private.trust_root_is_fingerprint
    assert private.priority == 0
    assert config.registry("private") is private

    sub_all, sub_one = config.subscriptions
    assert sub_all.imagelists == ("*",)
    assert sub_all.new_images == "refuse"
    assert dict(sub_all.match) == {"sl:arch": "x86_64"}
    assert sub_one.imagelists == (LIST_A,)             # UUIDs normalised to lower case
    assert sub_one.images == (IMAGE_A,)
    assert sub_one.new_images == "accept"
    assert config.subscriptions_for("private") == (sub_one,)

    glance, plain = config.handlers
    assert glance.command == (str(tmp_path / "handlers" / "glance.sh"), "--verbose", "two words")
    assert glance.timeout == 45.0
    assert plain.command == ("my-vmcatcher-handler",)  # bare name: looked up on PATH
    assert plain.timeout == DEFAULT_HANDLER_TIMEOUT


def test_minimal_config_takes_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f"""
[site]
state_dir = "/var/lib/gitreg"
{REGISTRY_R}"""))
    assert config.state_dir == Path("/var/lib/gitreg")
    assert config.download_workers == DEFAULT_DOWNLOAD_WORKERS
    assert config.conflicts == "report"
    assert config.subscriptions == ()
    assert config.handlers == ()


def test_subscription_filters(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f"""
[site]
state_dir = "s"
{REGISTRY_R}[[subscription]]
registry = "r"
imagelists = ["{LIST_A}"]
images = ["{IMAGE_A}"]
[subscription.match]
"sl:arch" = "x86_64"
"hv:size" = "42"
"""))
    (sub,) = config.subscriptions
    assert sub.wants_list(LIST_A.upper())
    assert not sub.wants_list("00000000-0000-0000-0000-000000000000")
    good = {"sl:arch": "x86_64", "hv:size": 42}
    assert sub.wants_image(IMAGE_A, good)
    assert not sub.wants_image(IMAGE_A, {"sl:arch": "i386", "hv:size": 42})
    assert not sub.wants_image(IMAGE_A, {"hv:size": 42})
    assert not sub.wants_image("00000000-0000-0000-0000-000000000000", good)


def test_every_problem_is_reported_at_once_with_its_toml_path(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, f"""
colour = "blue"
[site]
state_dir = "s"
download_worker = 2
download_workers = true
conflicts = "merge"
deadline = -5

[[registry]]
name = "good"
remotes = ["https://example.org/good.git"]
trust_root = "{FINGERPRINT}"

[[registry]]
name = "bad name/with slash"
remotes = []
trust_root = "sha256:1234"
priority = "high"

[[registry]]
name = "good"
remotes = ["ftp://example.org/x.git", "--upload-pack=evil", 7]
trust_root = "missing/policy.json"

[[subscription]]
registry = "godo"
imagelists = ["*", "not-a-uuid"]
images = ["also-not"]
new_images = "maybe"
[subscription.match]
"sl:arch" = 64

[[handler]]
command = "'unterminated"
timeout = "soon"

[[handler]]
timeout = 0
"""))
    assert problems == {
        "colour": "unknown key (did you mean 'cloud'?)",
        "site.download_worker": "unknown key (did you mean 'download_workers'?)",
        "site.download_workers": "must be an integer, not a boolean",
        "site.conflicts": "must be one of 'report', 'priority', not 'merge'",
        "site.deadline": "must be a positive, finite number of seconds",
        "registry[1].name": problems["registry[1].name"],
        "registry[1].remotes": "must be a non-empty list",
        "registry[1].trust_root": problems["registry[1].trust_root"],
        "registry[1].priority": "must be an integer, not a string",
        "registry[2].name": "duplicate registry name 'good'",
        "registry[2].remotes[0]": problems["registry[2].remotes[0]"],
        "registry[2].remotes[1]": problems["registry[2].remotes[1]"],
        "registry[2].remotes[2]": "must be a string, not an integer",
        "registry[2].trust_root": problems["registry[2].trust_root"],
        "subscription[0].registry": "no [[registry]] named 'godo' (did you mean 'good'?)",
        "subscription[0].imagelists": "'*' already means every list; give it alone",
        "subscription[0].images[0]": "'also-not' is not a UUID",
        "subscription[0].new_images": "must be one of 'accept', 'refuse', not 'maybe'",
        'subscription[0].match."sl:arch"': "must be a string, not an integer",
        "handler[0].command": problems["handler[0].command"],
        "handler[0].timeout": problems["handler[0].timeout"],
        "handler[1].command": "missing (required)",
        "handler[1].timeout": "must be a positive, finite number of seconds",
    }
    assert "not a valid registry name" in problems["registry[1].name"]
    assert "64 hex digits" in problems["registry[1].trust_root"]
    assert "unsupported URL scheme 'ftp'" in problems["registry[2].remotes[0]"]
    assert "command-line option" in problems["registry[2].remotes[1]"]
    assert "policy file not found" in problems["registry[2].trust_root"]
    assert str(tmp_path / "missing" / "policy.json") in problems["registry[2].trust_root"]
    assert "cannot be split into words" in problems["handler[0].command"]
    assert "must be seconds" in problems["handler[0].timeout"]


def test_diagnostics_name_the_file_and_each_path(tmp_path: Path) -> None:
    path = write(tmp_path, "[site]\nstate_dir = 's'\n[[registry]]\nname = 'r'\n"
                           f"trust_root = '{FINGERPRINT}'\nremotes = 'one'\n")
    with pytest.raises(InvalidDocumentError) as info:
        load_config(path)
    text = info.value.diagnostics()
    assert str(path) in text
    assert "registry[0].remotes: must be a list of strings, not a string" in text


@pytest.mark.parametrize(("text", "path", "message"), [
    ("", "site", "missing [site] table"),
    ("site = 3\n", "site", "must be a table ([site]), not an integer"),
    ("[site]\n", "site.state_dir", "missing (required)"),
    ("[site]\nstate_dir = 's'\n", "registry", "at least one [[registry]] is required"),
    ("[site]\nstate_dir = 's'\n[registry]\nname = 'r'\n", "registry",
     "must be an array of tables: write [[registry]], not [registry]"),
    ("[site]\nstate_dir = 's'\ndownload_workers = 0\n", "site.download_workers",
     "must be between 1 and 64, not 0"),
    ("[site]\nstate_dir = 's'\nmin_rate = 'fast'\n", "site.min_rate",
     "must be bytes per second: an integer or text like '64 KiB/s'"),
    ("[site]\nstate_dir = 's'\n[[subscription]]\nregistry = 'r'\nimagelists = []\n",
     "subscription[0].imagelists", "must be a non-empty list"),
])
def test_single_mistakes(tmp_path: Path, text: str, path: str, message: str) -> None:
    problems = problems_of(write(tmp_path, text))
    assert problems[path] == message


def test_toml_syntax_error_is_an_invalid_document(tmp_path: Path) -> None:
    path = write(tmp_path, "[site\nstate_dir = 's'\n")
    with pytest.raises(InvalidDocumentError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert "not valid TOML" in info.value.problems[0].message
    assert "line 1" in info.value.problems[0].message


def test_not_utf8_is_an_invalid_document(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_bytes(b"[site]\nstate_dir = '\xff'\n")
    with pytest.raises(InvalidDocumentError) as info:
        load_config(path)
    assert "not UTF-8" in info.value.problems[0].message


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.exit_code == EXIT_USAGE
    assert str(tmp_path / "nope.toml") in info.value.message
    assert info.value.hint


def test_directory_instead_of_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read site config"):
        load_config(tmp_path)


def test_unknown_registry_lookup_is_a_usage_error(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f"""
[site]
state_dir = "s"
{REGISTRY_R}"""))
    with pytest.raises(UsageError, match="no \\[\\[registry\\]\\] named 'x'"):
        config.registry("x")
