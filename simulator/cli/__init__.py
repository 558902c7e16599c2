"""``koosim``: the command line.

Exit codes, for every command that talks to a merchant: 0 all selected checks passed, 1 at least
one failed, 2 a usage or configuration error, 3 the target could not be reached at all.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from simulator import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def _fail(message: str, code: int) -> NoReturn:
    """End the command with a one-line message on stderr (never wrapped) and ``code``."""
    Console(stderr=True, soft_wrap=True).print(Text.assemble(("koosim:", "bold red"), " ", message))
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="koosim")
def main() -> None:
    """A fake Huawei Cloud KooGallery marketplace that contract-tests your merchant server.

    With no --url every command targets the bundled reference merchant, started on a free port.
    Keys come from KOOSIM_ACCESS_KEY / KOOSIM_SYNC_KEY or koosim.toml, never from the command line.
    """


def target_options(function: Any) -> Any:
    options = [
        click.option("--url", help="The merchant's produce interface URL (env KOOSIM_URL)."),
        click.option(
            "--protocol",
            type=click.Choice(["v2", "v1"]),
            help="Interface generation (env KOOSIM_PROTOCOL, default v2).",
        ),
        click.option("--sync-url", help="Base URL of the user-sync interfaces (default: <url>/v2)."),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            help="Per-call deadline in seconds (default 10).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def db_option(function: Any) -> Any:
    """``--db PATH``: the run history every command shares (env KOOSIM_DB)."""
    return click.option(
        "--db",
        "db_path",
        envvar="KOOSIM_DB",
        default=".koosim/koosim.db",
        show_default=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="SQLite run history (env KOOSIM_DB).",
    )(function)


def reproduce_command(settings_flags: dict[str, Any], check_id: str) -> str:
    words = ["koosim", "verify"]
    for name in ("url", "protocol", "sync_url", "timeout", "seed"):
        if settings_flags.get(name) is not None:
            words += [f"--{name.replace('_', '-')}", str(settings_flags[name])]
    return shlex.join([*words, "--checks", check_id])


@main.command()
@target_options
@click.option(
    "--checks", "patterns", multiple=True, metavar="GLOB", help="Only checks whose id matches (repeatable)."
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**63 - 1),
    help="Seed of the generated order ids (default: a new one each run, shown in reports).",
)
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write a JUnit XML report.")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a JSON report."
)
@click.option(
    "--html", type=click.Path(dir_okay=False, path_type=Path), help="Write a self-contained HTML report."
)
@db_option
def verify(
    url: str | None,
    protocol: str | None,
    sync_url: str | None,
    timeout: float | None,
    patterns: tuple[str, ...],
    seed: int | None,
    junit: Path | None,
    json_path: Path | None,
    html: Path | None,
    db_path: Path,
) -> None:
    """Run the conformance checks against a merchant and report per rule.

    The run is recorded in the run history as it happens (`koosim runs`, `koosim show`).
    """
    from simulator.checks import select
    from simulator.engine.run import TargetUnreachable, probe, run_checks
    from simulator.model import fresh_seed
    from simulator.report import console as console_report
    from simulator.report.console import plural
    from simulator.settings import ConfigError, load_settings, open_target
    from simulator.store import RunRecorder, Store, StoreError

    flags = {"url": url, "protocol": protocol, "sync_url": sync_url, "timeout": timeout, "seed": seed}
    seed = fresh_seed() if seed is None else seed
    try:
        settings = load_settings(flags)
        checks = select(patterns)
    except (ConfigError, LookupError) as exc:
        _fail(str(exc), EXIT_USAGE)
    console = Console()
    try:
        recorder = RunRecorder(
            Store(db_path), planned=len(checks), reproduce=lambda check_id: reproduce_command(flags, check_id)
        )
    except StoreError as exc:
        _fail(f"cannot keep the run history: {exc}", EXIT_USAGE)

    def finished(result: Any) -> None:
        recorder.result(result)
        progress.finished(result)

    try:
        with open_target(settings) as target:
            probe(target)
            where = "the bundled reference merchant" if settings.url is None else target.url
            console.print(
                f"koosim {__version__}: {plural(len(checks), 'check')} against {where} ({target.protocol}), "
                f"seed {seed}"
            )
            with console_report.LiveProgress(console, len(checks)) as progress:
                run = run_checks(
                    target,
                    checks,
                    seed=seed,
                    on_start=progress.started,
                    on_result=finished,
                    on_begin=recorder.begin,
                    on_exchange=recorder.exchange,
                )
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    except TargetUnreachable as exc:
        _fail(f"the target could not be reached: {exc}", EXIT_UNREACHABLE)
    recorder.finish(run)
    reproduce = {result.check.id: reproduce_command(flags, result.check.id) for result in run.results}
    console_report.print_run(console, run, reproduce)
    if recorder.problem is None:
        console.print(f"[dim]recorded in {escape(str(db_path))}: koosim show {run.id}[/]", highlight=False)
    else:
        Console(stderr=True).print(
            f"koosim: the run history is incomplete: {recorder.problem}", highlight=False, markup=False
        )
    _write_reports(run, reproduce, junit=junit, json_path=json_path, html=html)
    sys.exit(run.exit_code)


def _write_reports(run: Any, reproduce: dict[str, str], **paths: Path | None) -> None:
    from simulator.engine.record import run_record
    from simulator.report import html as html_report
    from simulator.report import junit as junit_report

    record = run_record(run, reproduce)
    writers = {
        "json_path": lambda: json.dumps(record, ensure_ascii=False, indent=2),
        "junit": lambda: junit_report.render(record),
        "html": lambda: html_report.render(record),
    }
    for name, path in paths.items():
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(writers[name](), encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot write {path}: {exc.strerror}", EXIT_USAGE)


@main.command(name="checks")
def list_checks() -> None:
    """List the check catalog: id, severity, the rule it enforces, what it checks."""
    from simulator.checks import catalog
    from simulator.report.console import print_catalog

    print_catalog(Console(), catalog())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on."
)
@click.option(
    "--protocol",
    type=click.Choice(["v1", "v2", "both"]),
    default="both",
    show_default=True,
    help="Which interface generation to answer.",
)
@click.option(
    "--db", default=":memory:", show_default=True, help="SQLite file for instances (:memory: keeps none)."
)
@click.option(
    "--rsa-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM private key for applicationSync secrets (default: a new key each start).",
)
@click.option(
    "--write-public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the merchant's RSA public key here (for KOOSIM_RSA_PUBLIC_KEY).",
)
def merchant(
    host: str, port: int, protocol: str, db: str, rsa_key: Path | None, write_public_key: Path | None
) -> None:
    """Run the bundled reference merchant, a model of a correct server.

    Keys come from KOOSIM_ACCESS_KEY and KOOSIM_SYNC_KEY; without them it uses the published
    demo keys, which are fine for a laptop and wrong for anything else.
    """
    import os

    from werkzeug.serving import make_server

    from simulator.reference import PRODUCE_PATH, MerchantConfig, create_app, public_key_pem
    from simulator.serving import serve_until_interrupted

    config = MerchantConfig(
        database=db,
        protocols=frozenset({"v1", "v2"} if protocol == "both" else {protocol}),
    )
    notes = []
    for name, variable in (("access_key", "KOOSIM_ACCESS_KEY"), ("sync_key", "KOOSIM_SYNC_KEY")):
        if os.environ.get(variable):
            setattr(config, name, os.environ[variable])
            notes.append(f"{name.replace('_', ' ')} from {variable}")
        else:
            notes.append(f"{name.replace('_', ' ')}: the published demo key (set {variable} for your own)")
    try:
        if rsa_key is not None:
            config.rsa_private_key = rsa_key.read_bytes()
            public_key_pem(config.rsa_private_key)  # fail now, not on the first applicationSync
        if write_public_key is not None:
            write_public_key.write_bytes(public_key_pem(config.rsa_private_key))
            notes.append(f"RSA public key written to {write_public_key}")
        server = make_server(host, port, create_app(config), threaded=True)
    except (OSError, ValueError, TypeError) as exc:
        _fail(f"cannot start the reference merchant: {exc}", EXIT_USAGE)
    console = Console()
    console.print(
        f"reference merchant: http://{host}:{server.port}{PRODUCE_PATH} ({protocol})", highlight=False
    )
    for note in notes:
        console.print(f"  {note}", highlight=False)
    console.print("  Ctrl+C stops it", highlight=False)
    serve_until_interrupted(server)


from simulator.cli.load import load  # noqa: E402

main.add_command(load)


from simulator.cli.scenarios import explore, play, scenarios  # noqa: E402

main.add_command(scenarios)
main.add_command(play)
main.add_command(explore)


from simulator.cli.server import runs, serve, show  # noqa: E402

main.add_command(serve)
main.add_command(runs)
main.add_command(show)

if __name__ == "__main__":  # pragma: no cover
    main()
