"""``koosim serve``, ``koosim runs`` and ``koosim show``: the marketplace server and the history."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any

import click

from simulator.cli.common import (
    EXIT_USAGE,
    TargetInfo,
    check_listen_address,
    db_option,
    fail,
    handle_errors,
    make_console,
    with_target,
)
from simulator.cli.scenarios import scenarios_option
from simulator.errors import KoosimError
from simulator.redaction import printable


def _open_store(db_path: Path, *, must_exist: bool = False) -> Any:
    from simulator.store import Store

    if must_exist and not db_path.exists():
        fail(
            f"no run history at {db_path}: `koosim verify` creates it (or pass --db / KOOSIM_DB)", EXIT_USAGE
        )
    with handle_errors():
        return Store(db_path)


STATUS_STYLE = {"finished": "green", "running": "yellow", "interrupted": "bold red"}


@click.command()
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(min=1), help="How many runs to list."
)
@click.option(
    "--kind",
    help="Only runs of this kind: verify, play, or a console call / notification.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as a JSON list instead.")
@db_option
def runs(limit: int, kind: str | None, as_json: bool, db_path: Path) -> None:
    """List past runs, newest first: id, when, target, verdict counts, status."""
    from datetime import datetime

    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from simulator.checks import Verdict
    from simulator.report.console import verdict_text

    store = _open_store(db_path, must_exist=True)
    with handle_errors():  # a damaged file: one line, not a traceback
        listed = store.history.runs(limit=limit, kind=kind)
    if as_json:
        click.echo(json.dumps(listed, ensure_ascii=False, indent=2))
        return
    console = make_console()
    if not listed:
        console.print(f"no run in {escape(str(db_path))} yet", highlight=False)
        return
    table = Table(title=f"koosim runs ({escape(str(db_path))})", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("run", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("verdicts", no_wrap=True)
    table.add_column("exchanges", justify="right", no_wrap=True)
    table.add_column("target", overflow="fold", ratio=1)
    for run in listed:
        status = run["status"]
        if status == "running" and run["checks_planned"]:
            status += f" {run['checks_done']}/{run['checks_planned']}"
        verdicts = " ".join(
            f"{verdict_text(Verdict(name))} {count}" for name, count in run["summary"].items() if count
        )
        table.add_row(
            escape(run["run_id"]),
            datetime.fromtimestamp(run["started_at"]).strftime("%m-%d %H:%M"),
            escape(run["kind"]),
            f"[{STATUS_STYLE.get(run['status'], 'dim')}]{escape(status)}[/]",
            verdicts or "[dim]none yet[/]",
            str(run["exchange_count"]),
            escape(
                printable(
                    f"{run['target'].get('url', '')} ({run['target'].get('protocol', '')})", one_line=True
                )
            ),
        )
    console.print(table)


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the stored record as JSON instead.")
@db_option
def show(run_id: str, as_json: bool, db_path: Path) -> None:
    """Print one past run (its id, or a unique start of it) as `koosim verify` printed it."""
    from rich.markup import escape

    from simulator.report.console import print_record

    store = _open_store(db_path, must_exist=True)
    try:
        with handle_errors():  # a damaged file: one line, not a traceback
            record = store.history.run(store.history.resolve_run_id(run_id))
    except LookupError as exc:
        fail(str(exc.args[0]), EXIT_USAGE)
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False, indent=2))
        return
    console = make_console()
    print_record(console, record)
    if record["status"] != "finished":
        note = {
            "running": f"still running (pid {record['pid']} on {record['host']})",
            "interrupted": f"interrupted: the process (pid {record['pid']} on {record['host']}) ended "
            "before the run finished; the exchanges it completed are above",
        }[record["status"]]
        done = f"{record['checks_done']} of {record['checks_planned']} checks done"
        console.print(f"[yellow]run {escape(record['run_id'])} {escape(note)}; {done}[/]", highlight=False)
    if record.get("error"):
        console.print(f"[red]the run stopped early: {escape(printable(record['error']))}[/]", highlight=False)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=5000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on."
)
@with_target()
@scenarios_option
@db_option
def serve(info: TargetInfo, host: str, port: int, scenario_dirs: tuple[Path, ...], db_path: Path) -> None:
    """Run the fake marketplace: web console, JSON API, and the APIs a merchant calls.

    The target starts as --url (keys from KOOSIM_ACCESS_KEY / KOOSIM_SYNC_KEY or koosim.toml) or,
    without one, the bundled reference merchant; the console can change it at any time. Open the
    printed address (it holds this process's token, or KOOSIM_SERVE_TOKEN when set); a --host other
    than a loopback one needs KOOSIM_SERVE_TOKEN.
    """

    from simulator.clock import isoformat
    from simulator.engine.delisting import next_dial_test
    from simulator.server import create_app, market_state, start_scheduler
    from simulator.server.deliveries import durable_clock
    from simulator.server.dial import service as dial_service
    from simulator.server.guard import TokenError, bind_problem, console_url, server_token
    from simulator.server.state import ConsoleSettings, SettingsError
    from simulator.server.wsgi import Server

    try:
        token, token_from_env = server_token()
    except TokenError as exc:
        fail(str(exc), EXIT_USAGE)
    if (problem := bind_problem(host, token_from_env)) is not None:
        fail(problem, EXIT_USAGE)
    found = info.settings
    check_listen_address(host, port, "server")  # before the history is opened: one line, exit 2
    store = _open_store(db_path)
    app = create_app(
        store,
        ConsoleSettings(
            protocol=found.protocol,
            timeout=found.timeout,
            time_scale=found.time_scale,
            delivery=found.delivery,
        ),
        token=token,
        hosts=[host],
        scenario_dirs=scenario_dirs,
        clock=durable_clock(store, found.time_scale),
    )
    market = market_state(app)
    try:
        market.configure(
            {
                "url": found.url,
                "sync_url": found.sync_url,
                "access_key": found.access_key,
                "sync_key": found.sync_key,
                "bundled": found.url is None,
                "market_ak": found.market_ak,
                "market_sk": found.market_sk,
            }
        )
        if found.rsa_public_key:
            market.configure({"rsa_public_key": found.rsa_public_key.decode("ascii", errors="replace")})
        server = Server(app, host, port)
    except (SettingsError, OSError) as exc:
        market.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        bound = f" on {host}:{port}" if isinstance(exc, OSError) else ""
        fail(f"cannot start the server{bound}: {reason}", EXIT_USAGE)
    console = make_console()
    settings = market.settings
    address = console_url(host, server.port, token)
    base = address.split("/?", 1)[0]
    console.print(f"koosim marketplace: {address} (console)", highlight=False, soft_wrap=True)
    history = printable(str(db_path))
    console.print(f"  JSON API under {base}/api/, history in {history}", highlight=False, markup=False)
    console.print(
        "  scripts send the token as 'Authorization: Bearer <token>' (the token= above)", highlight=False
    )
    console.print(f"  {market.clock.describe()} (GET {base}/api/clock)", highlight=False, markup=False)
    where = "the bundled reference merchant" if settings.bundled else printable(settings.url or "")
    console.print(f"  target: {where} ({settings.protocol})", highlight=False, markup=False)
    if settings.url and not settings.access_key:
        console.print(
            "  no access key yet: set KOOSIM_ACCESS_KEY or enter it on the Target page", highlight=False
        )
    open_api = base
    if found.market_port or found.market_tls:  # the open API alone too: a fixed port, or HTTPS
        from simulator.server.market import CA_DIR, market_alone
        from simulator.server.openapi import service_of

        try:
            alone = market_alone(service_of(app), found.market_port, CA_DIR if found.market_tls else None)
        except KoosimError as exc:
            market.close()
            fail(exc.one_line(), exc.exit_code)
        market.on_close(closing(alone.start()))
        open_api = alone.base_url
        if found.market_tls:
            open_api += f" (HTTPS: trust the CA {CA_DIR / 'ca.pem'})"
    console.print(
        f"  marketplace open API: {open_api} — point your merchant's marketplace base URL here"
        + (
            ""
            if settings.market_ak and settings.market_sk
            else " (no KOOSIM_MARKET_AK / KOOSIM_MARKET_SK yet: Querying an Order is refused, APIGW.0303)"
        ),
        highlight=False,
        markup=False,
    )
    dial_timer = dial_service(app)  # stopped by market.close() too (install ties it to the app)
    try:
        dial_timer.start()  # twice a marketplace day (docs/protocol.md §10.3); /dial runs one now
        next_dial = isoformat(next_dial_test(dial_timer.clock.now()))
        console.print(f"  dial tests: twice a marketplace day, the next at {next_dial}", highlight=False)
        pending = store.deliveries.pending()
        if pending:
            console.print(
                f"  {pending} scheduled delivery(ies) pending in the history: "
                f"sent when due ({base}/messages)",
                highlight=False,
                markup=False,
            )
        console.print("  Ctrl+C stops it", highlight=False)
        start_scheduler(app)
        server.run()
    finally:
        dial_timer.stop()
        market.close()
