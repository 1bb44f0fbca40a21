"""The SQLite site state: durable, transactional, versioned; the event journal's guarantees."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitreg.errors import GitregError
from gitreg.site.config import Handler
from gitreg.site.events import HandlerOutcome, delivery_variables, event_key, run_handlers
from gitreg.site.records import EquivocationRecord
from gitreg.site.state import SiteState
from gitreg.site.state_schema import SCHEMA_VERSION

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
IMAGE = "c0482bc2-bf41-5d49-aaaa-a750174a186b"
LIST = "76fdee70-8119-5d33-aaaa-3c57e1c60df1"
SHA = "ab" * 64


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.sqlite"


def add_image(site_state: SiteState, uuid: str = IMAGE, **changes: object) -> None:
    fields: dict = {"registry": "fedcloud", "list_uuid": LIST, "list_version": "20240101",
                    "sha512": SHA, "size": 1024, "state": "pending", "now": NOW}
    fields.update(changes)
    site_state.upsert_image(uuid, **fields)


def snapshot(state: SiteState) -> tuple:
    return (state.registries(), state.remotes(), state.images(), state.events())


def test_new_database_has_the_current_schema_in_wal_mode(db: Path) -> None:
    with SiteState.open(db) as state:
        assert state.schema_version == SCHEMA_VERSION
        assert state.registries() == [] and state.images() == [] and state.events() == []
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_image_fingerprint_changes_with_every_record_write_and_each_fresh_state(
        db: Path, tmp_path: Path) -> None:
    with SiteState.open(db) as state:
        seen = [state.image_fingerprint()]
        add_image(state)
        seen.append(state.image_fingerprint())
        add_image(state)  # the same values written again still count
        seen.append(state.image_fingerprint())
        state.mark(IMAGE, "cached", path="/state/cache/" + IMAGE, now=NOW)
        seen.append(state.image_fingerprint())
        assert state.forget_image(IMAGE)
        seen.append(state.image_fingerprint())
        # Writes outside SiteState (an operator's sqlite3 shell) count too.
        state._db.execute("INSERT INTO image (uuid, registry, list_uuid, list_version, "
                          "sha512, size, state, created_at, updated_at) VALUES "
                          "('x', 'r', 'l', '1', 'ab', 1, 'cached', 't', 't')")
        seen.append(state.image_fingerprint())
    assert len(set(seen)) == len(seen)
    with SiteState.open(db) as state:
        assert state.image_fingerprint() == seen[-1]
    with SiteState.open(tmp_path / "afresh" / "state.sqlite") as fresh:
        assert fresh.image_fingerprint() != seen[0]  # another generation


def test_everything_survives_reopening(db: Path) -> None:
    with SiteState.open(db) as state:
        state.advance("fedcloud", "c" * 40, now=NOW)
        state.record_remote("fedcloud", "http://a/fedcloud.git", "current", commit="c" * 40,
                            now=NOW)
        state.record_remote("fedcloud", "/srv/b.git", "unreachable", "connection refused",
                            now=NOW)
        add_image(state, metadata={"dc:title": "CernVM", "hv:format": "OVA"}, vo="my.vo")
        state.mark(IMAGE, "cached", path="/state/cache/" + IMAGE, now=NOW + timedelta(hours=1))
        state.enqueue_event("k1", "AvailablePostfix", {"VMCATCHER_EVENT_TYPE": "AvailablePostfix"},
                            ["h1"], now=NOW)
        before = snapshot(state)

    with SiteState.open(db) as state:
        assert snapshot(state) == before
        assert state.trusted_commit("fedcloud") == "c" * 40
        (registry,) = state.registries()
        assert registry.advanced_at == NOW
        unreachable = state.remotes("fedcloud")[0]
        assert (unreachable.url, unreachable.state, unreachable.detail) == \
            ("/srv/b.git", "unreachable", "connection refused")
        image = state.image(IMAGE)
        assert image is not None
        assert image.state == "cached"
        assert image.path == "/state/cache/" + IMAGE
        assert image.metadata == {"dc:title": "CernVM", "hv:format": "OVA"}
        assert image.vo == "my.vo"
        assert image.created_at == NOW
        assert image.updated_at == NOW + timedelta(hours=1)
        assert state.verified_uuids() == {IMAGE}


def test_advance_keeps_the_time_of_the_last_real_change(db: Path) -> None:
    with SiteState.open(db) as state:
        assert state.trusted_commit("fedcloud") is None
        state.advance("fedcloud", "a" * 40, now=NOW)
        state.advance("fedcloud", "a" * 40, now=NOW + timedelta(days=1))
        assert state.registries()[0].advanced_at == NOW
        state.advance("fedcloud", "b" * 40, now=NOW + timedelta(days=2))
        assert state.registries()[0].advanced_at == NOW + timedelta(days=2)
        assert state.trusted_commit("fedcloud") == "b" * 40


def test_upsert_replaces_but_keeps_created_at(db: Path) -> None:
    with SiteState.open(db) as state:
        add_image(state)
        add_image(state, list_version="20240202", sha512="CD" * 64, state="cached",
                  now=NOW + timedelta(days=1))
        (image,) = state.images()
        assert image.list_version == "20240202"
        assert image.sha512 == "cd" * 64
        assert image.created_at == NOW
        assert image.updated_at == NOW + timedelta(days=1)
        add_image(state, uuid="other", registry="private")
        assert [i.uuid for i in state.images(registry="private")] == ["other"]
        assert [i.uuid for i in state.images(state="cached")] == [IMAGE]
        assert state.forget_image("other") is True
        assert state.forget_image("other") is False


@pytest.mark.parametrize("bad_call", [
    lambda s: s.mark(IMAGE, "gone"),
    lambda s: s.mark("unknown-image", "revoked", "dropped from the list"),
    lambda s: s.record_remote("fedcloud", "http://a", "sleepy"),
    lambda s: add_image(s, state="lost"),
    lambda s: add_image(s, size=-1),
    lambda s: s.advance("fedcloud", ""),
    lambda s: s.advance("fedcloud", "a" * 40, now=datetime(2024, 1, 1)),  # naive
])
def test_bad_calls_raise_and_change_nothing(db: Path, bad_call) -> None:
    with SiteState.open(db) as state:
        add_image(state)
        before = snapshot(state)
        with pytest.raises(GitregError):
            bad_call(state)
        assert snapshot(state) == before


def test_a_failed_transaction_changes_nothing(db: Path) -> None:
    with SiteState.open(db) as state:
        add_image(state)
        before = snapshot(state)
        with pytest.raises(RuntimeError, match="crash in the middle"), state.transaction():
            state.advance("fedcloud", "a" * 40)
            state.mark(IMAGE, "cached")
            with state.transaction():  # nested: joins the outer one
                state.enqueue_event("k", "AvailablePostfix", {}, ["h"])
            raise RuntimeError("crash in the middle")
        assert snapshot(state) == before
    with SiteState.open(db) as state:
        assert snapshot(state) == before


def _kill_child_once(target: Callable[..., None], args: tuple[object, ...],
                     marker: Path) -> None:
    """Run ``target`` in a forked child; SIGKILL it once it has created ``marker``."""
    child = multiprocessing.get_context("fork").Process(target=target, args=args)
    child.start()
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists()
    os.kill(child.pid or 0, signal.SIGKILL)
    child.join(10)


def _advance_in_child(db: str, ready: str) -> None:
    # Holds a write transaction open, then dies without committing.
    state = SiteState.open(db)
    with state.transaction():
        state.advance("fedcloud", "f" * 40)
        Path(ready).touch()
        time.sleep(60)


def test_a_killed_writer_leaves_nothing_behind(db: Path, tmp_path: Path) -> None:
    with SiteState.open(db) as state:
        state.advance("fedcloud", "a" * 40)
    ready = tmp_path / "ready"
    _kill_child_once(_advance_in_child, (str(db), str(ready)), ready)
    with SiteState.open(db) as state:
        assert state.trusted_commit("fedcloud") == "a" * 40
        state.advance("fedcloud", "b" * 40)  # and the lock is free again
        assert state.trusted_commit("fedcloud") == "b" * 40


def test_concurrent_transactions_are_serialized(db: Path) -> None:
    SiteState.open(db).close()
    rounds, errors = 40, []

    def bump() -> None:
        # Read-modify-write: lost updates would show if two interleaved.
        try:
            with SiteState.open(db) as state:
                for _ in range(rounds):
                    with state.transaction():
                        current = int(state.trusted_commit("counter") or "0")
                        time.sleep(0.0005)
                        state.advance("counter", str(current + 1))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with SiteState.open(db) as state:
        assert state.trusted_commit("counter") == str(3 * rounds)


def test_newer_schema_is_refused(db: Path) -> None:
    SiteState.open(db).close()
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(GitregError, match="newer than this gitreg understands") as info:
        SiteState.open(db)
    assert info.value.hint
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_foreign_database_is_refused(db: Path) -> None:
    db.parent.mkdir(parents=True)
    raw = sqlite3.connect(db)
    raw.execute("CREATE TABLE vmcatcher_things (x)")
    raw.commit()
    raw.close()
    with pytest.raises(GitregError, match="not a gitreg site state"):
        SiteState.open(db)
    tables = sqlite3.connect(db).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("vmcatcher_things",)]


def test_garbage_file_is_refused(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(GitregError, match=str(db)):
        SiteState.open(db)
    assert db.read_bytes() == b"this is not a database at all" * 100


# --- the event journal ------------------------------------------------------


def deliver_pending(state: SiteState, handlers: list[Handler]) -> list[tuple[str, str, bool]]:
    """What the sync pipeline does with the journal: run each open delivery once."""
    by_name = {h.name: h for h in handlers}
    done = []
    for event in state.pending_events():
        for handler_name in event.pending_handlers:
            attempt = state.start_delivery(event.key, handler_name)
            env = {**event.env, **delivery_variables(event.key, attempt)}
            (outcome,) = run_handlers([by_name[handler_name]], env)
            state.mark_delivered(event.key, handler_name, outcome)
            done.append((event.key, handler_name, outcome.ok))
    return done


def counting_handler(tmp_path: Path, name: str, fail_while: Path | None = None) -> Handler:
    """A real script: logs each call; fails while the flag file exists."""
    log = tmp_path / f"{name}.log"
    check = f'if [ -e "{fail_while}" ]; then echo "{name} broken" >&2; exit 1; fi\n' \
        if fail_while else ""
    script = tmp_path / f"{name}.sh"
    script.write_text(f'#!/bin/sh\n{check}echo "$VMCATCHER_EVENT_TYPE $GITREG_EVENT_ID '
                      f'$GITREG_EVENT_ATTEMPT" >> "{log}"\n')
    script.chmod(0o755)
    return Handler((str(script),), 10)


def calls(tmp_path: Path, name: str) -> list[str]:
    log = tmp_path / f"{name}.log"
    return log.read_text().splitlines() if log.exists() else []


def test_enqueue_is_idempotent(db: Path) -> None:
    key = event_key("AvailablePostfix", IMAGE, SHA, "20240101")
    with SiteState.open(db) as state:
        assert state.enqueue_event(key, "AvailablePostfix", {"A": "1"}, ["h"]) is True
        assert state.enqueue_event(key, "AvailablePostfix", {"A": "2"}, ["h", "h2"]) is False
        (event,) = state.events()
        assert event.env == {"A": "1"}
        assert event.pending_handlers == ("h",)
        assert state.has_event(key)


def test_failed_handler_is_retried_next_sync_and_delivered_exactly_once(
        db: Path, tmp_path: Path) -> None:
    broken = tmp_path / "glance-is-down"
    broken.touch()
    good = counting_handler(tmp_path, "good")
    flaky = counting_handler(tmp_path, "flaky", fail_while=broken)
    handlers = [good, flaky]
    key = event_key("AvailablePostfix", IMAGE, SHA, "20240101")

    with SiteState.open(db) as state:  # sync 1: flaky fails
        state.enqueue_event(key, "AvailablePostfix",
                            {"VMCATCHER_EVENT_TYPE": "AvailablePostfix"},
                            [h.name for h in handlers])
        assert deliver_pending(state, handlers) == [(key, good.name, True),
                                                    (key, flaky.name, False)]
        (event,) = state.pending_events()
        (delivery,) = event.deliveries
        assert delivery.handler == flaky.name
        assert delivery.status == "failed"
        assert delivery.returncode == 1
        assert "flaky broken" in delivery.detail

    with SiteState.open(db) as state:  # sync 2: still broken, retried, still pending
        assert deliver_pending(state, handlers) == [(key, flaky.name, False)]

    broken.unlink()
    with SiteState.open(db) as state:  # sync 3: it works
        assert deliver_pending(state, handlers) == [(key, flaky.name, True)]
    with SiteState.open(db) as state:  # sync 4: nothing left to do
        assert state.pending_events() == []
        assert deliver_pending(state, handlers) == []
        (event,) = state.events()
        assert {d.handler: (d.status, d.attempts) for d in event.deliveries} == {
            good.name: ("delivered", 1), flaky.name: ("delivered", 3)}

    assert calls(tmp_path, "good") == [f"AvailablePostfix {key} 1"]
    assert calls(tmp_path, "flaky") == [f"AvailablePostfix {key} 3"]


def test_a_delivered_event_cannot_be_started_again(db: Path) -> None:
    ok = HandlerOutcome(("h",), 0, False, "")
    with SiteState.open(db) as state:
        state.enqueue_event("k", "ExpirePrefix", {}, ["h"])
        state.start_delivery("k", "h")
        state.mark_delivered("k", "h", ok)
        with pytest.raises(GitregError, match="already delivered"):
            state.start_delivery("k", "h")
        # A late duplicate report does not undo "delivered".
        state.mark_delivered("k", "h", HandlerOutcome(("h",), 1, False, "late"))
        assert state.events()[0].deliveries[0].status == "delivered"
        with pytest.raises(GitregError, match="no event"):
            state.start_delivery("nope", "h")
        with pytest.raises(GitregError, match="has no delivery"):
            state.mark_delivered("k", "other", ok)


def _deliver_in_child(db: str, handler: Handler) -> None:
    with SiteState.open(db) as state:
        deliver_pending(state, [handler])


def test_crash_during_a_handler_redelivers_it_once_flagged_as_a_retry(
        db: Path, tmp_path: Path) -> None:
    started = tmp_path / "started"
    script = tmp_path / "slow.sh"
    log = tmp_path / "slow.log"
    script.write_text(f'#!/bin/sh\necho "$GITREG_EVENT_ATTEMPT" >> "{log}"\n'
                      f'if [ "$GITREG_EVENT_ATTEMPT" = 1 ]; then touch "{started}"; sleep 2; fi\n')
    script.chmod(0o755)
    handler = Handler((str(script),), 10)
    with SiteState.open(db) as state:
        state.enqueue_event("k", "ExpirePostfix", {}, [handler.name])

    # The sync is killed while the handler runs.
    _kill_child_once(_deliver_in_child, (str(db), handler), started)

    with SiteState.open(db) as state:
        (event,) = state.pending_events()
        (delivery,) = event.deliveries
        assert delivery.interrupted
        assert delivery.attempts == 1
        # At least once: delivered again, marked as attempt 2.
        assert deliver_pending(state, [handler]) == [("k", handler.name, True)]
        assert deliver_pending(state, [handler]) == []
    assert log.read_text().splitlines() == ["1", "2"]


def test_new_handlers_do_not_get_old_events_and_removed_ones_are_dropped(db: Path) -> None:
    with SiteState.open(db) as state:
        state.enqueue_event("k1", "AvailablePostfix", {}, ["old", "kept"])
        assert state.drop_handlers({"kept", "new"}) == 1
        (event,) = state.pending_events()
        assert event.pending_handlers == ("kept",)
        statuses = {d.handler: d.status for d in state.events()[0].deliveries}
        assert statuses == {"old": "dropped", "kept": "pending"}
        state.enqueue_event("k2", "ExpirePrefix", {}, [])  # no handlers: journaled, not pending
        assert [e.key for e in state.events()] == ["k1", "k2"]
        assert [e.key for e in state.pending_events()] == ["k1"]


def test_equivocations_are_kept_and_seen_again_only_moves_last_seen(db: Path) -> None:
    seen = EquivocationRecord("fedcloud", f"imagelists/{LIST}.json", "2", ("b" * 40, "a" * 40),
                              ("d" * 40, "c" * 40), "a" * 40, "two contents with hv:version '2'")
    with SiteState.open(db) as state:
        state.record_equivocations([seen], now=NOW)
        state.record_equivocations([seen], now=NOW + timedelta(hours=2))
        state.record_equivocations([], now=NOW + timedelta(hours=3))
    with SiteState.open(db) as state:
        [kept] = state.equivocations("fedcloud")
        assert state.equivocations("other") == []
    assert (kept.blobs, kept.commits) == (("a" * 40, "b" * 40), ("c" * 40, "d" * 40))
    assert (kept.path, kept.version, kept.chosen, kept.reason) == \
        (seen.path, "2", "a" * 40, "equivocation")
    assert (kept.first_seen, kept.last_seen) == (NOW, NOW + timedelta(hours=2))
