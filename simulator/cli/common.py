"""What every command shares: the options, the exit codes, the one error mapping, and
:func:`with_target`, the preamble of every command that talks to a merchant.

The pattern is Flask's ``ScriptInfo`` / ``with_appcontext``: :class:`TargetInfo` holds what the
flags say and resolves, on first use, the settings (flags > env > koosim.toml) and the target;
``with_target`` adds the target options to a command, hands it a ``TargetInfo`` and turns any
:class:`~simulator.errors.KoosimError` into one ``koosim:`` line on stderr and its exit code, here
and nowhere else. Command modules import this module, never :mod:`simulator.cli` itself.

Nothing heavy is imported at module level: ``koosim --help`` loads every command module.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import click

from simulator.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, KoosimError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from simulator.errors import TimeBudget
    from simulator.server.market import MarketServer
    from simulator.settings import Settings
    from simulator.transport import Exchange, Target

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "TargetInfo",
    "UsageError",
    "db_option",
    "fail",
    "fail_with",
    "handle_errors",
    "with_target",
]

F = TypeVar("F", bound=Callable[..., Any])

MAX_TIMEOUT, MAX_MAX_TIME = 300.0, 86400.0
"""settings.MAX_TIMEOUT and settings.MAX_MAX_TIME (a test keeps them equal), here so that the
help needs no import of the settings."""

TARGET_FLAGS = (
    "url",
    "protocol",
    "sync_url",
    "timeout",
    "encrypt_type",
    "product",
    "billing",
    "optional",
    "license_call",
    "market_port",
    "market_tls",
    "time_scale",
)
"""The settings a command's flags can set, as :func:`simulator.settings.load_settings` names them."""


EXIT_SIGINT, EXIT_SIGTERM = 130, 143
"""Interrupted by Ctrl-C / SIGTERM: 128 + the signal's number, as a shell reports it."""

PLAIN_WIDTH = 100_000
"""The width of output that is not a terminal: wide enough that no line is ever wrapped, so a
run id, a seed, a signed URL or a check id is never cut in a CI log."""

OUTPUT: dict[str, Any] = {"color": True}
"""What the group's options say about output for every command (``koosim --no-color …``)."""


def make_console(*, stderr: bool = False) -> Console:
    """The console every command prints through.

    On a terminal: Rich as usual (colour unless ``--no-color`` or NO_COLOR). Elsewhere (a pipe, a
    CI log): plain lines, never wrapped nor truncated, whatever COLUMNS says.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    options: dict[str, Any] = {"stderr": stderr}
    if not OUTPUT["color"]:
        options["no_color"] = True
    if not terminal:
        options.update(width=PLAIN_WIDTH, soft_wrap=True, color_system=None)
    return Console(**options)


def fail(message: str, code: int) -> NoReturn:
    """End the command with a one-line message on stderr (never wrapped) and ``code``."""
    from rich.text import Text

    make_console(stderr=True).print(Text.assemble(("koosim:", "bold red"), " ", message), soft_wrap=True)
    sys.exit(code)


def fail_with(error: KoosimError) -> NoReturn:
    """The one mapping of an error to what the user sees: its line and its exit code (2 or 3)."""
    fail(error.one_line(), error.exit_code)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Run a command's body: a :class:`KoosimError` ends it through :func:`fail_with`."""
    try:
        yield
    except KoosimError as error:
        fail_with(error)


# --- options ----------------------------------------------------------------------------------------


def target_options(function: F) -> F:
    """``--url``, ``--protocol``, ``--sync-url``, ``--timeout`` and the product profile
    (``--product``, ``--billing``, ``--optional/--no-optional``): the settings a flag may give."""
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
            type=click.FloatRange(min=0, min_open=True, max=MAX_TIMEOUT),
            metavar="SECONDS",
            help=f"Per-call deadline: more than 0, at most {MAX_TIMEOUT:g} s "
            "(env KOOSIM_TIMEOUT, default 5 as published: docs/protocol.md §3.3).",
        ),
        click.option(
            "--encrypt-type",
            type=click.Choice(["1", "2"]),
            help="The seller's encryption choice: 1 = AES-256, 2 = AES-128 (env KOOSIM_ENCRYPT_TYPE, "
            "default 1; docs/protocol.md §2.7).",
        ),
        click.option(
            "--product",
            type=click.Choice(["saas", "saas-kit", "license"]),
            help="What the merchant sells: the interfaces koosim exercises (docs/protocol.md §1.2; "
            "env KOOSIM_PRODUCT, default saas).",
        ),
        click.option(
            "--billing",
            type=click.Choice(["period", "one-time", "on-demand"]),
            help="Billing mode: yearly/monthly, one-time or pay-per-use "
            "(env KOOSIM_BILLING, default period).",
        ),
        click.option(
            "--optional/--no-optional",
            default=None,
            help="Whether the product allows specification changes, so upgradeInstance and "
            "changeInstanceCheck are exercised (env KOOSIM_OPTIONAL, default on).",
        ),
        click.option(
            "--license-call",
            type=click.Choice(["getLicense", "getLicenseAsync"]),
            help="How a License product receives its licence: getLicense (docs/protocol.md §6.1) or "
            "getLicenseAsync (§6.2); the other is never sent, as no page says which a product "
            "receives (A41; env KOOSIM_LICENSE_CALL, default getLicense).",
        ),
        click.option(
            "--market-port",
            type=click.IntRange(0, 65535),
            metavar="PORT",
            help="Port of the marketplace open API (Querying an Order, usage push) the command serves "
            "on 127.0.0.1 for the merchant to call; AK/SK from KOOSIM_MARKET_AK / KOOSIM_MARKET_SK "
            "(env KOOSIM_MARKET_PORT, default 0: a free port, printed in the run header).",
        ),
        click.option(
            "--market-tls/--no-market-tls",
            default=None,
            help="Serve the open API over HTTPS with a certificate of koosim's own CA, "
            ".koosim/market-ca/ca.pem, for a merchant that validates certificates strictly "
            "(env KOOSIM_MARKET_TLS, default off).",
        ),
        click.option(
            "--time-scale",
            metavar="SCALE|frozen",
            help="The marketplace clock: marketplace time runs SCALE times the wall (3600 = an hour "
            "per second; real = 1), or 'frozen' (moves only when advanced: scenario `advance` steps, "
            "each wait in verify/play/explore, POST /api/clock/advance in serve). Default 3600, "
            "real time in serve (env KOOSIM_TIME_SCALE; docs/protocol.md §10).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def max_time_option(function: F) -> F:
    """``--max-time SECONDS``: the whole-run time budget (env KOOSIM_MAX_TIME, koosim.toml max_time)."""
    return click.option(
        "--max-time",
        type=click.FloatRange(min=0, min_open=True, max=MAX_MAX_TIME),
        metavar="SECONDS",
        help=f"Whole-run time budget, at most {MAX_MAX_TIME:g} s; when spent, what is left is "
        "reported as not run, exit 1 (env KOOSIM_MAX_TIME, default 600).",
    )(function)


def no_preflight_option(function: F) -> F:
    """``--no-preflight``: run even when the first call shows a wrong key, path or a web page."""
    return click.option(
        "--no-preflight",
        is_flag=True,
        help="Run even when the first call shows a wrong key, a wrong path or a web page "
        "(without it such a target ends the command with exit 3 and one diagnosis).",
    )(function)


def db_option(function: F) -> F:
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


# --- the preamble ----------------------------------------------------------------------------------


class TargetInfo:
    """What a command knows about its target, resolved when first asked (Flask's ``ScriptInfo``).

    ``flags`` are the command-line values (None: not given). :attr:`settings` validates them
    with the environment and koosim.toml once; :meth:`open` starts the whole-run time budget,
    opens the target (or the bundled reference merchant) and probes it.
    """

    def __init__(self, flags: dict[str, Any]) -> None:
        self.flags = flags
        self._settings: Settings | None = None
        self.budget: TimeBudget | None = None
        self.market: MarketServer | None = None
        """The marketplace open API of this command, while :meth:`open` is active."""

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from simulator.settings import load_settings

            self._settings = load_settings(self.flags)
            for line in self._settings.deprecations:
                make_console(stderr=True).print(f"koosim: warning: {line}", markup=False, soft_wrap=True)
        return self._settings

    @contextmanager
    def open(self, *, budget: bool = False) -> Iterator[Target]:
        """Yield the probed target; ``budget`` starts the ``max_time`` clock for every call."""
        from simulator.errors import TimeBudget
        from simulator.server.market import market_server
        from simulator.settings import reach_target

        settings = self.settings
        self.budget = TimeBudget(settings.max_time) if budget else None
        with market_server(settings) as market, reach_target(settings, budget=self.budget) as target:
            market.usage_key = target.access_key
            for key in market.secrets:  # redacted from every record, like the target's keys
                target.learn_secret(key)
            self.market = market
            try:
                yield target
            finally:
                self.market = None

    def market_line(self) -> str:
        """The run header's line naming the open API's base URL (empty outside :meth:`open`)."""
        return "" if self.market is None else self.market.header()

    def preflight(self, target: Target, *, skip: bool = False, seed: int = 0) -> Exchange | None:
        """Against a merchant's URL (not the bundled one), send the preflight call; raise
        :class:`~simulator.errors.TargetMisconfigured` when its answer names an obvious cause.
        Returns its exchange (None when skipped)."""
        if skip or self.settings.url is None:
            return None
        from simulator.engine.preflight import preflight
        from simulator.errors import TargetMisconfigured

        diagnosis, exchange = preflight(target, seed=seed)
        if diagnosis is not None:
            raise TargetMisconfigured(f"{diagnosis} (--no-preflight runs anyway)")
        return exchange

    def where(self, target: Target) -> str:
        """How a line names the target: the reference merchant, or its URL, redacted of the
        target's secrets and with hostile characters spelled out (Rich markup still to escape)."""
        from simulator.redaction import printable, redact

        if self.settings.url is None:
            return "the bundled reference merchant"
        return printable(redact(target.url, target.secrets), one_line=True)

    def reproduce(self, check_id: str, seed: int | None = None) -> str:
        """The ``koosim verify`` line that runs ``check_id`` alone with these flags."""
        from simulator.engine.run import reproduce_command

        return reproduce_command({**self.flags, "seed": seed}, check_id)


def with_target(*, max_time: bool = False) -> Callable[[F], F]:
    """Give a command the target options (and ``--max-time``), and a :class:`TargetInfo` as its
    first argument, ``info``; run it under :func:`handle_errors`, the one error mapping."""

    def decorate(function: F) -> F:
        flag_names = (*TARGET_FLAGS, "max_time") if max_time else TARGET_FLAGS

        @functools.wraps(function)
        def command(**kwargs: Any) -> Any:
            info = TargetInfo({name: kwargs.pop(name) for name in flag_names})
            with handle_errors():
                return function(info, **kwargs)

        command.__koosim_with_target__ = True  # type: ignore[attr-defined]
        wrapped = target_options(cast(F, command))
        return max_time_option(wrapped) if max_time else wrapped

    return decorate


# --- interruption and reports ----------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, as Ctrl-C raises KeyboardInterrupt: the command
    reports what it did so far and ends with 143 instead of dying mid-write."""


def interrupted_code(exc: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM: never 1, which means a check failed."""
    return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT


def interrupted_reason(exc: KeyboardInterrupt) -> str:
    return "interrupted by SIGTERM" if isinstance(exc, Terminated) else "interrupted by Ctrl-C (SIGINT)"


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`Terminated` (in the main thread only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ReportFiles:
    """The report files a command was asked to write, checked before any traffic.

    A path that cannot be written ends the command with exit 2 before the first call, not after
    the whole run (where it would hide the verdict). Each report is written to a temporary file
    beside it and renamed into place: a failed or interrupted write never leaves a 0-byte report.
    Reports quote what the merchant answered, so they are 0600 (mkstemp's mode), like the history.
    """

    def __init__(self, **paths: Path | None) -> None:
        self.paths = {name: path for name, path in paths.items() if path is not None}
        for path in self.paths.values():
            self._check(path)

    @staticmethod
    def _check(path: Path) -> None:
        import tempfile

        if path.is_dir():
            raise UsageError(f"cannot write the report {path}: it is a directory")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=True):
                pass
        except OSError as exc:
            raise UsageError(f"cannot write the report {path}: {exc.strerror or exc}") from None

    def write(self, render: Callable[[str], str]) -> None:
        """Write every report; ``render(name)`` gives the text of the report of option ``name``."""
        import os
        import tempfile

        for name, path in self.paths.items():
            text = render(name)
            try:
                descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
                try:
                    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                        handle.write(text)
                    os.replace(temporary, path)
                except BaseException:
                    Path(temporary).unlink(missing_ok=True)
                    raise
            except OSError as exc:
                raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def check_listen_address(host: str, port: int, what: str) -> None:
    """End with one ``koosim:`` line and exit 2 when ``host:port`` cannot be listened on (a port
    in use, a host that does not resolve): werkzeug would print a paragraph and exit 1."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug binds
            probe.bind(address)
    except OSError as exc:
        fail(f"cannot start the {what} on {host}:{port}: {exc.strerror or exc}", EXIT_USAGE)
