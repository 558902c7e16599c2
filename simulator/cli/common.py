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
    from simulator.errors import TimeBudget
    from simulator.settings import Settings
    from simulator.transport import Target

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

TARGET_FLAGS = ("url", "protocol", "sync_url", "timeout", "product", "billing", "optional")
"""The settings a command's flags can set, as :func:`simulator.settings.load_settings` names them."""


def fail(message: str, code: int) -> NoReturn:
    """End the command with a one-line message on stderr (never wrapped) and ``code``."""
    from rich.console import Console
    from rich.text import Text

    Console(stderr=True, soft_wrap=True).print(Text.assemble(("koosim:", "bold red"), " ", message))
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
            type=click.FloatRange(min=0, min_open=True),
            help="Per-call deadline in seconds (default 10).",
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
    ]
    for option in reversed(options):
        function = option(function)
    return function


def max_time_option(function: F) -> F:
    """``--max-time SECONDS``: the whole-run time budget (env KOOSIM_MAX_TIME, koosim.toml max_time)."""
    return click.option(
        "--max-time",
        type=click.FloatRange(min=0, min_open=True),
        metavar="SECONDS",
        help="Whole-run time budget; when spent, what is left is reported as not run, exit 1 "
        "(env KOOSIM_MAX_TIME, default 600).",
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

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from simulator.settings import load_settings

            self._settings = load_settings(self.flags)
        return self._settings

    @contextmanager
    def open(self, *, budget: bool = False) -> Iterator[Target]:
        """Yield the probed target; ``budget`` starts the ``max_time`` clock for every call."""
        from simulator.errors import TimeBudget
        from simulator.settings import reach_target

        settings = self.settings
        self.budget = TimeBudget(settings.max_time) if budget else None
        with reach_target(settings, budget=self.budget) as target:
            yield target

    def where(self, target: Target) -> str:
        """How a line names the target: the reference merchant, or its URL."""
        return "the bundled reference merchant" if self.settings.url is None else target.url

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
