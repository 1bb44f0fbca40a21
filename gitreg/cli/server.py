"""`gitreg server`: the registry's Git server (bare repository, hook, smart HTTP)."""

from __future__ import annotations

from pathlib import Path

import typer

server_app = typer.Typer(
    help="Run a registry Git server: a bare repository guarded by gitreg's pre-receive hook.",
    no_args_is_help=True,
)


@server_app.command("init")
def init(
    path: Path = typer.Argument(..., help="The bare repository to create, e.g. registry.git."),
    source: Path = typer.Option(..., "--from", help="The registry repository to seed main from."),
    peers: list[str] = typer.Option([], "--peer", help="A peer replica's URL, for "
                                    "`gitreg server sync-peers` (repeat for several)."),
) -> None:
    """Create (or update) a bare server repository with the hook and receive checks.

    Re-running on an existing server repository reinstalls the hook and the
    configuration; its refs are left as they are.
    """
    from gitreg.cli import output
    from gitreg.server.init import init_server

    init_server(path, source=source)
    if peers:
        from gitreg.server.peers import store_peers

        store_peers(path, peers)
    output.ok(f"server repository ready at {path} (pre-receive hook installed)")
    output.data(str(path))


@server_app.command("sync-peers")
def sync_peers(
    path: Path = typer.Argument(..., help="The bare server repository (this replica)."),
    peers: list[str] = typer.Option([], "--peer", help="A peer replica's URL (default: the "
                                    "peers stored by `gitreg server init --peer`)."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Fetch every peer replica, verify its head, and advance main (fast-forward or merge).

    Safe to run from a timer and after every accepted push: idempotent, safe
    to kill, and a push racing it is merged by the next run. Exit 0 when
    every peer was judged, 1 if a peer serves an invalid head, 3 if a peer
    was unreachable or a push moved main during the run.
    """
    from gitreg.cli import output
    from gitreg.server.peers import sync_peers as run

    report = run(path, peers or None)
    if json_output:
        output.data_json(report.to_json())
    for peer in report.peers:
        commit = f" {peer.commit[:12]}" if peer.commit else ""
        output.info(f"peer {peer.url}: {peer.state}{commit}: {peer.detail}")
    for beat in report.heartbeats:
        if beat["state"] in ("invalid", "ignored"):
            output.warn(f"heartbeat {beat['ref']}: {beat['state']}: {beat['detail']}")
    for finding in report.equivocations:
        output.warn(str(finding["message"]))
    if report.raced:
        output.warn(report.raced)
    if report.after is None:
        summary = "main is unset"
    elif report.advanced:
        how = f"merged {len(report.merge_parents)} heads" if report.merged else "fast-forward"
        summary = f"main advanced to {report.after[:12]} ({how})"
    else:
        summary = f"main stays at {report.after[:12]}"
    if report.exit_code == 0:
        output.ok(summary)
    else:
        output.error(f"{summary}; see the peers above")
    if not json_output and report.after is not None:
        output.data(report.after)
    raise typer.Exit(report.exit_code)


@server_app.command("heartbeat")
def heartbeat(
    path: Path = typer.Argument(..., help="The bare server repository (this replica)."),
    key: str = typer.Option(..., "--key", help="A heartbeat key of the policy: an SSH private "
                            "key file, openpgp:FINGERPRINT or x509:CERT.pem:KEY.pem."),
    replica: str | None = typer.Option(None, "--replica", help="This replica's name (default: "
                                       "git config gitreg.replica, else the host name)."),
    json_output: bool = typer.Option(False, "--json", help="Print the heartbeat as JSON."),
) -> None:
    """Sign a heartbeat for main (from cron or a systemd timer) into refs/gitreg/heartbeat/.

    Sites whose policy names heartbeat keys refuse a state no young
    heartbeat vouches for ("freeze suspected"). Idempotent; exit 0 when
    written, 2 when the key or the policy does not allow it.
    """
    from gitreg.cli import output
    from gitreg.model.dates import format_date, utcnow
    from gitreg.publish.signing_keys import load_signing_key
    from gitreg.server.heartbeat import write_heartbeat

    written = write_heartbeat(path, load_signing_key(key), replica=replica, now=utcnow())
    beat = written.heartbeat
    if json_output:
        output.data_json({"ref": written.ref, "commit": written.commit,
                          "replaced": written.replaced, "replica": beat.replica,
                          "registry": beat.registry, "main": beat.commit,
                          "time": format_date(beat.time), "key": beat.key_id})
    output.ok(f"heartbeat of replica {beat.replica} for main {beat.commit[:12]} at "
              f"{format_date(beat.time)} in {written.ref}")
    if not json_output:
        output.data(written.commit)


@server_app.command("serve")
def serve(
    path: Path = typer.Argument(..., help="The bare server repository to serve."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(0, "--port", help="TCP port (0 picks a free one)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not log requests to stderr."),
) -> None:
    """Serve fetch and push over smart HTTP (git http-backend) until SIGINT or SIGTERM.

    Prints the repository URL on stdout once it listens. Pushes run the
    repository's hooks. Without HTTP, `git daemon --enable=receive-pack`
    serves the same repository over git:// (no authentication).
    """
    import signal
    import sys

    from gitreg.cli import output
    from gitreg.server.http import GitHTTPServer

    server = GitHTTPServer(path, host, port, log=None if quiet else _log)

    def _stop(signum: int, _frame: object) -> None:
        # serve_forever polls; an exception from the handler ends it cleanly.
        raise KeyboardInterrupt(signum)

    signal.signal(signal.SIGTERM, _stop)
    output.data(server.url)
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        output.info("stopping")
    finally:
        server.server_close()


def _log(line: str) -> None:
    import sys

    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def register(app: typer.Typer) -> None:
    """Add the ``server`` command group to the ``gitreg`` app."""
    app.add_typer(server_app, name="server")
