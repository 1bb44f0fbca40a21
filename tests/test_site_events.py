"""vmcatcher events: the variables handlers see, and how handlers are run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from gitreg.site import events
from gitreg.site.cache import SiteCache
from gitreg.site.config import Handler
from gitreg.site.events import (
    ALL_VARIABLES,
    EventType,
    delivery_variables,
    event_environment,
    event_key,
    run_handlers,
)

SESSION = "0d3c9a52-5f7e-11ee-8c99-0242ac120002"


@pytest.fixture
def appdb_list(interop_dir: Path) -> dict:
    """A real AppDB-style list (cloudkeeper's sample): VO-wide, with ad:mpuri."""
    return json.loads((interop_dir / "cloudkeeper" / "image_list10.json").read_text())


@pytest.fixture
def site(tmp_path: Path) -> SiteCache:
    cache = SiteCache(tmp_path / "state")
    cache.ensure_dirs()
    return cache


def shell_script(tmp_path: Path, name: str, body: str) -> Path:
    """An executable ``/bin/sh`` script ``name`` under tmp_path."""
    script = tmp_path / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def recorder(tmp_path: Path, name: str = "record.sh") -> Path:
    """A real handler script: saves its environment and arguments (NUL-separated)."""
    return shell_script(tmp_path, name, """out="$1"; shift
mkdir -p "$out"
n=$(ls "$out" | wc -l)
env -0 > "$out/$n.env"
printf '%s\\0' "$@" > "$out/$n.args"
""")


def records(out: Path) -> list[dict]:
    """What the recorder saw, one entry per run, in order."""
    runs = []
    for n in range(len(list(out.glob("*.env")))):
        env_items = (out / f"{n}.env").read_bytes().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in env_items if item)
        args = [a.decode() for a in (out / f"{n}.args").read_bytes().split(b"\0")[:-1]]
        runs.append({"env": env, "argv": args})
    return runs


def test_available_event_carries_vmcatchers_variables(appdb_list: dict, site: SiteCache) -> None:
    imagelist = appdb_list["hv:imagelist"]
    image = imagelist["hv:images"][0]  # wrapped {"hv:image": {...}}: accepted as is
    env = event_environment(EventType.AVAILABLE_POSTFIX, image, appdb_list,
                            session_uuid=SESSION, cache_dirs=site.dirs)
    inner = image["hv:image"]
    assert env == {
        "VMCATCHER_EVENT_TYPE": "AvailablePostfix",
        "VMCATCHER_EVENT_DC_IDENTIFIER": "c0482bc2-bf41-5d49-aaaa-a750174a186b",
        "VMCATCHER_EVENT_DC_TITLE": "Image for CernVM [Scientific Linux/6.0/KVM]",
        "VMCATCHER_EVENT_DC_DESCRIPTION": inner["dc:description"],
        "VMCATCHER_EVENT_HV_URI": inner["hv:uri"],
        "VMCATCHER_EVENT_HV_SIZE": "121243136",
        "VMCATCHER_EVENT_HV_HYPERVISOR": "KVM",
        "VMCATCHER_EVENT_HV_VERSION": "3.3.0-1",          # the image's, not the list's
        "VMCATCHER_EVENT_HV_FORMAT": "OVA",
        "VMCATCHER_EVENT_SL_ARCH": "x86_64",
        "VMCATCHER_EVENT_SL_CHECKSUM_SHA512": inner["sl:checksum:sha512"],
        "VMCATCHER_EVENT_SL_COMMENTS": "",                 # present but empty: set, empty
        "VMCATCHER_EVENT_SL_OS": "Linux",
        "VMCATCHER_EVENT_SL_OSVERSION": "6.0",
        "VMCATCHER_EVENT_AD_MPURI": inner["ad:mpuri"],
        "VMCATCHER_EVENT_FILENAME": "c0482bc2-bf41-5d49-aaaa-a750174a186b",
        "VMCATCHER_EVENT_IL_DC_IDENTIFIER": "76fdee70-8119-5d33-aaaa-3c57e1c60df1",
        "VMCATCHER_EVENT_VO": "some1.vo.net",
        "VMCATCHER_EVENT_UUID_SESSION": SESSION,
        "VMCATCHER_CACHE_DIR_CACHE": f"{site.dirs.cache}/",
        "VMCATCHER_CACHE_DIR_DOWNLOAD": f"{site.dirs.download}/",
        "VMCATCHER_CACHE_DIR_EXPIRE": f"{site.dirs.expire}/",
    }
    assert set(env) == set(ALL_VARIABLES)


def test_missing_values_are_not_set(site: SiteCache) -> None:
    image = {"dc:identifier": "img-1", "hv:size": 42, "sl:arch": "x86_64"}
    env = event_environment("ExpirePrefix", image, {"dc:identifier": "list-1", "ad:vo": ""},
                            session_uuid=SESSION, cache_dirs=site.dirs)
    assert env["VMCATCHER_EVENT_HV_SIZE"] == "42"
    for absent in ("VMCATCHER_EVENT_HV_FORMAT", "VMCATCHER_EVENT_AD_MPURI",
                   "VMCATCHER_EVENT_DC_TITLE", "VMCATCHER_EVENT_VO"):
        assert absent not in env


def test_expire_postfix_names_the_file_in_expired(site: SiteCache) -> None:
    env = event_environment("ExpirePostfix", {"dc:identifier": "img-1"}, None,
                            filename="img-1.20240131T235958Z", vo="my.vo",
                            session_uuid=SESSION, cache_dirs=site.dirs)
    assert env["VMCATCHER_EVENT_FILENAME"] == "img-1.20240131T235958Z"
    assert env["VMCATCHER_EVENT_VO"] == "my.vo"
    assert "VMCATCHER_EVENT_IL_DC_IDENTIFIER" not in env


@pytest.mark.parametrize("kind", [EventType.PROCESS_PREFIX, EventType.PROCESS_POSTFIX])
def test_process_events_carry_no_image(kind: EventType, site: SiteCache) -> None:
    env = event_environment(kind, {"dc:identifier": "img-1"}, {"dc:identifier": "l"},
                            session_uuid=SESSION, cache_dirs=site.dirs)
    assert env == {
        "VMCATCHER_EVENT_TYPE": kind.value,
        "VMCATCHER_EVENT_UUID_SESSION": SESSION,
        "VMCATCHER_CACHE_DIR_CACHE": f"{site.dirs.cache}/",
        "VMCATCHER_CACHE_DIR_DOWNLOAD": f"{site.dirs.download}/",
        "VMCATCHER_CACHE_DIR_EXPIRE": f"{site.dirs.expire}/",
    }


def test_unknown_event_type_is_refused(site: SiteCache) -> None:
    with pytest.raises(ValueError, match="ExpirePosfix"):
        event_environment("ExpirePosfix", None, None, session_uuid=SESSION,
                          cache_dirs=site.dirs)


def test_values_the_os_cannot_carry_are_cleaned(site: SiteCache) -> None:
    image = {"dc:identifier": "img-1", "dc:title": "evil\x00title", "dc:description": "\ud800x",
             "sl:comments": ["a", 1], "hv:size": True}
    env = event_environment("AvailablePrefix", image, None, session_uuid=SESSION,
                            cache_dirs=site.dirs)
    assert env["VMCATCHER_EVENT_DC_TITLE"] == "eviltitle"
    assert env["VMCATCHER_EVENT_DC_DESCRIPTION"] == "?x"
    assert env["VMCATCHER_EVENT_SL_COMMENTS"] == '["a", 1]'
    assert env["VMCATCHER_EVENT_HV_SIZE"] == "true"
    # And a real process accepts them.
    (outcome,) = run_handlers([Handler(("true",), 5)], env)
    assert outcome.ok


def test_event_key_is_session_independent() -> None:
    key = event_key("AvailablePostfix", "img-1", "ABCDEF", "20240101")
    assert key == "AvailablePostfix:img-1:abcdef:20240101"
    assert delivery_variables(key, 2) == {"GITREG_EVENT_ID": key, "GITREG_EVENT_ATTEMPT": "2"}


def test_handler_script_sees_the_event_and_the_parent_environment(
        tmp_path: Path, site: SiteCache, appdb_list: dict) -> None:
    out = tmp_path / "events"
    script = recorder(tmp_path)
    image = appdb_list["hv:imagelist"]["hv:images"][1]["hv:image"]
    parent = {"PATH": os.environ["PATH"], "SITE_SECRET_PATH": "/etc/x",
              # Stale values from a previous event must not leak into this one.
              "VMCATCHER_EVENT_HV_FORMAT": "stale", "VMCATCHER_EVENT_AD_MPURI": "stale",
              "GITREG_EVENT_ID": "stale"}
    del image["hv:format"]
    env = event_environment("AvailablePostfix", image, appdb_list, session_uuid=SESSION,
                            cache_dirs=site.dirs)
    handler = Handler((str(script), str(out), "$HOME", "two words; rm -rf /"), 10)

    (outcome,) = run_handlers([handler], env, base_env=parent)

    assert outcome.ok, outcome
    assert outcome.returncode == 0 and not outcome.timed_out
    (seen,) = records(out)
    # No shell: arguments arrive exactly as configured.
    assert seen["argv"] == ["$HOME", "two words; rm -rf /"]
    got = {k: v for k, v in seen["env"].items()
           if k.startswith(("VMCATCHER_", "GITREG_EVENT_"))}
    assert got == env
    assert "VMCATCHER_EVENT_HV_FORMAT" not in got
    assert got["VMCATCHER_EVENT_AD_MPURI"] == image["ad:mpuri"]
    assert seen["env"]["SITE_SECRET_PATH"] == "/etc/x"


def test_every_handler_runs_even_after_one_fails(tmp_path: Path, site: SiteCache) -> None:
    out = tmp_path / "events"
    failing = Handler(("sh", "-c", "echo 'glance said no' >&2; exit 3"), 5)
    missing = Handler((str(tmp_path / "no-such-handler"),), 5)
    good = Handler((str(recorder(tmp_path)), str(out)), 5)
    env = event_environment("ProcessPrefix", None, None, session_uuid=SESSION,
                            cache_dirs=site.dirs)

    first, second, third = run_handlers([failing, missing, good], env)

    assert not first.ok
    assert first.returncode == 3
    assert first.stderr_tail == "glance said no\n"
    assert first.describe() == "exit code 3"
    assert not second.ok
    assert second.returncode is None
    assert "cannot start" in second.error and "no-such-handler" in second.error
    assert third.ok
    assert records(out)[0]["env"]["VMCATCHER_EVENT_TYPE"] == "ProcessPrefix"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_dead(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_timeout_kills_the_handlers_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # The handler starts a grandchild and waits: both must die.
    script = shell_script(tmp_path, "slow.sh", f"sleep 60 &\necho $! > {pid_file}\nwait\n")

    start = time.monotonic()
    (outcome,) = run_handlers([Handler((str(script),), 0.5)], {})
    elapsed = time.monotonic() - start

    assert outcome.timed_out
    assert not outcome.ok
    assert "timed out" in outcome.describe()
    assert elapsed < 5
    assert _wait_dead(int(pid_file.read_text()))


def test_handler_ignoring_sigterm_is_killed(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "KILL_GRACE_SECONDS", 0.3)
    pid_file = tmp_path / "pid"
    script = shell_script(tmp_path, "stubborn.sh", f"trap '' TERM\necho $$ > {pid_file}\n"
                                                   "while :; do sleep 0.05; done\n")
    (outcome,) = run_handlers([Handler((str(script),), 0.3)], {})
    assert outcome.timed_out
    assert outcome.returncode is not None and outcome.returncode < 0
    assert _wait_dead(int(pid_file.read_text()))


def test_output_is_captured_but_bounded(tmp_path: Path) -> None:
    script = shell_script(tmp_path, "chatty.sh",
                          "head -c 3000000 /dev/zero | tr '\\0' 'x'\n"
                          "head -c 2000000 /dev/zero | tr '\\0' 'y' >&2\necho END >&2\nexit 1\n")
    (outcome,) = run_handlers([Handler((str(script),), 20)], {})
    assert outcome.returncode == 1
    assert len(outcome.stderr_tail) == events.OUTPUT_TAIL_BYTES
    assert outcome.stderr_tail.endswith("yyyyEND\n")
    assert len(outcome.stdout_tail) == events.OUTPUT_TAIL_BYTES
    assert set(outcome.stdout_tail) == {"x"}


def test_background_child_holding_the_pipe_does_not_make_a_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    # The handler succeeds at once but leaves a child with its stdout open.
    script = shell_script(tmp_path, "detach.sh",
                          f"sleep 30 &\necho $! > {pid_file}\necho done\nexit 0\n")
    start = time.monotonic()
    (outcome,) = run_handlers([Handler((str(script),), 10)], {})
    assert outcome.ok
    assert outcome.stdout_tail == "done\n"
    assert time.monotonic() - start < 3
    os.kill(int(pid_file.read_text()), 9)
