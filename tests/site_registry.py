"""A real registry for site tests, built with the endorser CLI and served over HTTP.

``SiteWorld`` creates a registry (root key ``alice``, endorser ``bob``),
seeds hook-guarded server repositories (``gitreg server init``) served by the
real smart-HTTP server, an image server, a handler script that records each
event's environment, and a site config pointing at all of it. A pytest
plug-in (tests/conftest.py loads it): its fixtures ``world`` and
``base_registry`` serve every site test module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from tests.fixtures.env import GITREG, RunCli
from tests.fixtures.git_server import ServeRepository, git
from tests.fixtures.image_server import ImageServer
from tests.fixtures.ssh_keys import SSHKeyFiles

HANDLER = """#!{python}
import json, os, signal, sys
keep = {{k: v for k, v in os.environ.items() if k.startswith(("VMCATCHER_", "GITREG_"))}}
with open({log!r}, "a", encoding="utf-8") as f:
    f.write(json.dumps(keep, sort_keys=True) + "\\n")
# kill-at names an event type: the first such event SIGKILLs the sync itself.
kill = {kill!r}
if os.path.exists(kill) and open(kill).read().strip() == os.environ["VMCATCHER_EVENT_TYPE"]:
    os.unlink(kill)
    os.kill(os.getppid(), signal.SIGKILL)
sys.exit(1 if os.path.exists({fail!r}) else 0)
"""


@dataclass
class SiteWorld:
    root: Path
    run_cli: RunCli
    serve_git: ServeRepository
    images: ImageServer
    root_key: SSHKeyFiles
    endorser_key: SSHKeyFiles
    second_key: SSHKeyFiles | None = None
    work: Path = field(init=False)
    fingerprint: str = field(init=False)
    servers: dict[str, Path] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str | Path, cwd: Path | None = None) -> str:
        done = self.run_cli(list(args), cwd=cwd or self.work)
        assert done.returncode == 0, f"gitreg {args}: {done.stderr}"
        return done.stdout

    def create(self, base: tuple[Path, str] | None = None) -> SiteWorld:
        """Init the registry, or copy an already initialised one (``base``: path, fingerprint)."""
        self.work = self.root / "registry"
        if base is not None:
            shutil.copytree(base[0], self.work, symlinks=True)
            self.fingerprint = base[1]
            return self
        out = self.run_cli(["init", self.work, "--name", "test", "--root-key",
                            self.root_key.private], cwd=self.root)
        assert out.returncode == 0, out.stderr
        self.fingerprint = out.stdout.split()[0]
        self.cli("policy", "add-endorser", "bob", "--key", self.endorser_key.public,
                 "--allow", "imagelists/*")
        if self.second_key is not None:
            self.cli("policy", "add-endorser", "carol", "--key", self.second_key.public,
                     "--allow", "imagelists/*")
        self.cli("policy", "sign", "--key", self.root_key.private)
        self.cli("publish", "--policy-only", "--key", self.root_key.private, "-m", "policy")
        return self

    def new_list(self, title: str, *, cwd: Path | None = None) -> str:
        return self.cli("list", "new", "--title", title, "--dn", "/DC=org/CN=Bob",
                        "--ca", "/DC=org/CN=CA", "--email", "bob@example.org",
                        "--creator", "Bob", cwd=cwd).strip()

    def add_image(self, list_uuid: str, name: str, body: bytes, *, cwd: Path | None = None,
                  uuid: str | None = None, **keys: str) -> str:
        url = self.images.serve(f"/{name}.img", body)
        image_file = self.root / f"{name}.img"
        image_file.write_bytes(body)
        return self.cli("image", "add", list_uuid, "--uri", url, "--file", image_file,
                        "--title", name, "--os", "Linux", "--osversion", "9",
                        "--arch", keys.get("arch", "x86_64"), "--format", "raw",
                        *(["--uuid", uuid] if uuid else []), cwd=cwd).strip()

    def remove_image(self, list_uuid: str, image_uuid: str) -> None:
        self.cli("image", "remove", list_uuid, image_uuid)

    def publish(self, message: str = "update", *, cwd: Path | None = None,
                key: SSHKeyFiles | None = None) -> str:
        self.cli("publish", "--key", (key or self.endorser_key).private, "-m", message, cwd=cwd)
        return git("-C", cwd or self.work, "rev-parse", "HEAD").stdout.strip()

    def clone(self, name: str, source: str) -> Path:
        """A second endorser's working copy, cloned from a server repository."""
        path = self.root / name
        git("clone", "--quiet", self.servers[source], path)
        return path

    def push_new_list(self, name: str, replica: str, title: str, image: str,
                      body: bytes) -> tuple[Path, str, str]:
        """Endorser ``name`` clones ``replica``, publishes a new list of one image
        with the second key and pushes it there only: (clone, list, commit)."""
        clone = self.clone(name, replica)
        new = self.new_list(title, cwd=clone)
        self.add_image(new, image, body, cwd=clone)
        commit = self.publish(name, cwd=clone, key=self.second_key)
        self.push(replica, cwd=clone)
        return clone, new, commit

    def server(self, name: str) -> str:
        """A hook-guarded server repository seeded from the registry, served over HTTP."""
        path = self.root / f"{name}.git"
        self.cli("server", "init", path, "--from", self.work, cwd=self.root)
        self.servers[name] = path
        self.urls[name] = self.serve_git(path)
        return self.urls[name]

    def bare(self, name: str) -> Path:
        """A hook-guarded server repository used by path (no HTTP)."""
        path = self.root / f"{name}.git"
        self.cli("server", "init", path, "--from", self.work, cwd=self.root)
        self.servers[name] = path
        self.urls[name] = str(path)
        return path

    def push(self, name: str, *, cwd: Path | None = None) -> None:
        git("-C", cwd or self.work, "push", "--quiet", self.urls[name], "main:main")

    def hookless_copy(self, name: str, source: str) -> str:
        """A copy of a server repository without the hook: it accepts anything."""
        path = self.root / f"{name}.git"
        shutil.copytree(self.servers[source], path)
        (path / "hooks" / "pre-receive").unlink()
        self.servers[name] = path
        self.urls[name] = self.serve_git(path)
        return self.urls[name]

    def site_config(self, remotes: list[str], *, extra: str = "", subscription: str = "",
                    deadline: str = "30s", name: str = "site") -> Path:
        """A site under root/``name`` following this registry at ``remotes``."""
        return write_site(self.root / name, [{"name": "test", "remotes": remotes,
                                              "trust_root": self.fingerprint,
                                              "subscription": subscription}],
                          settings=f'download_workers = 2\nmin_rate = 1\n'
                                   f'deadline = "{deadline}"\n{extra}')

    def on_two_replicas(self, *titles: str) -> tuple[list[str], list[str], Path]:
        """Publish a list per title, each with one image (``one-a`` for "One"), seed
        replicas a and b with them; the lists, their images and a site following both."""
        lists, images = [], []
        for title in titles:
            lists.append(self.new_list(title))
            name = title.lower()
            images.append(self.add_image(lists[-1], f"{name}-a", f"{name} a\n".encode() * 9))
        self.publish(f"{len(titles)} lists")
        return lists, images, self.site_config([self.server("a"), self.server("b")])

    def diverge(self, bob: tuple[str, str, bytes],
                carol: tuple[str, str, bytes]) -> tuple[str, str]:
        """Replicas a and b accept different pushes: bob adds an image (list, name, bytes)
        through a, carol another through a clone of b. Their new images' UUIDs."""
        assert self.second_key is not None, "carol is the second endorser"
        bob_image = self.add_image(*bob)
        self.publish(f"bob adds {bob[1]}")
        self.push("a")
        clone = self.clone("carol", "b")
        carol_image = self.add_image(*carol, cwd=clone)
        self.publish(f"carol adds {carol[1]}", cwd=clone, key=self.second_key)
        self.push("b", cwd=clone)
        return bob_image, carol_image

    @property
    def event_log(self) -> Path:
        return self.root / "site" / "events.jsonl"

    def events(self) -> list[dict[str, str]]:
        if not self.event_log.exists():
            return []
        return [json.loads(line) for line in self.event_log.read_text().splitlines()]

    @property
    def state_dir(self) -> Path:
        return self.root / "site" / "state"

    def sync(self, config: Path, *extra: str) -> tuple[int, dict[str, Any]]:
        done = self.run_cli(["site", "sync", "--config", config, "--json", *extra])
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"no JSON report: {done.stdout}\n{done.stderr}") from None
        return done.returncode, report


def site_toml(registries: Sequence[Mapping[str, Any]], *, settings: str = "",
              handler: Path | None = None) -> str:
    """A site config: state_dir "state" and ``settings``; per registry (name, remotes,
    trust_root, optional priority and subscription keys) its table and a subscription
    to all its lists; the handler, if any."""
    tables = []
    for registry in registries:
        priority = f"priority = {registry['priority']}\n" if "priority" in registry else ""
        tables.append(f"""
[[registry]]
name = "{registry['name']}"
remotes = {json.dumps([str(remote) for remote in registry['remotes']])}
trust_root = "{registry['trust_root']}"
{priority}
[[subscription]]
registry = "{registry['name']}"
imagelists = ["*"]
{registry.get('subscription', '')}
""")
    handlers = f'\n[[handler]]\ncommand = ["{handler}"]\ntimeout = 20\n' if handler else ""
    return f'[site]\nstate_dir = "state"\n{settings}\n{"".join(tables)}{handlers}'


def write_site(site: Path, registries: Sequence[Mapping[str, Any]], *, settings: str) -> Path:
    """A site directory: site.toml and the HANDLER script, which logs to events.jsonl."""
    site.mkdir(exist_ok=True)
    handler = site / "handler.py"
    handler.write_text(HANDLER.format(python=sys.executable, log=str(site / "events.jsonl"),
                                      fail=str(site / "handler-fails"),
                                      kill=str(site / "kill-at")), encoding="utf-8")
    handler.chmod(0o755)
    config = site / "site.toml"
    config.write_text(site_toml(registries, settings=settings, handler=handler),
                      encoding="utf-8")
    return config


def sha512(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


def tree_listing(path: Path) -> dict[str, bytes]:
    """Every file under path with its bytes (for before/after comparisons)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def git_log(path: Path) -> list[str]:
    return subprocess.run(["git", "-C", str(path), "log", "--format=%H", "main"],
                          capture_output=True, text=True, check=True).stdout.split()


@pytest.fixture(scope="session")
def base_registry(tmp_path_factory: pytest.TempPathFactory, ssh_alice: SSHKeyFiles,
                  ssh_bob: SSHKeyFiles, ssh_carol: SSHKeyFiles) -> tuple[Path, str]:
    """One initialised registry (endorsers bob and carol) that each test copies."""
    root = tmp_path_factory.mktemp("base-registry")
    env = {"GIT_CONFIG_GLOBAL": str(root / "gitconfig"), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.org"}

    def run(args: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*GITREG, *map(str, args)], env={**os.environ, **env},
                              capture_output=True, text=True, check=False,
                              cwd=kwargs.get("cwd"), timeout=120)

    world = SiteWorld(root, run, _no_git_server, _NO_IMAGES, ssh_alice, ssh_bob,
                      second_key=ssh_carol).create()
    return world.work, world.fingerprint


@pytest.fixture
def world(tmp_path: Path, run_cli: RunCli, git_http_server: ServeRepository,
          image_server: ImageServer, ssh_alice: SSHKeyFiles, ssh_bob: SSHKeyFiles,
          ssh_carol: SSHKeyFiles, base_registry: tuple[Path, str]) -> SiteWorld:
    """A copy of the base registry (endorsers bob and carol), served as each test says."""
    return SiteWorld(tmp_path, run_cli, git_http_server, image_server, ssh_alice, ssh_bob,
                     second_key=ssh_carol).create(base_registry)


def _no_git_server(path: Path) -> str:
    raise AssertionError("the base registry serves nothing")


_NO_IMAGES = cast(ImageServer, None)
