"""``koosim load``: the command. It checks its options, then runs the engine
(``simulator/load.py``, which imports Locust) in a process of its own and waits for it:
Locust is never imported by ``koosim``'s own process.

Exit codes: 0 no order got more than one instanceId and the error rate is within
``--max-error-rate``; 1 otherwise (or no request completed, or a worker's orders never
reached the master); 2 a usage or configuration error; 3 the target, the master or the
expected workers could not be reached.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from importlib.util import find_spec
from typing import Any

import click

from simulator.cli.common import EXIT_FAILED, EXIT_USAGE, TargetInfo, fail, with_target

MAX_RUN_TIME = 3600.0
"""``--run-time`` is capped at one hour: load is a bounded experiment, not a soak by accident."""
ENGINE_GRACE = 180.0
"""What the engine may take beyond ``--run-time``: start-up, waiting for workers (60 s), stopping
the users and collecting the workers' ledgers; past it the engine process is killed."""
DEFAULT_MASTER_PORT = 5557
"""Locust's own default port for its master."""


class Duration(click.ParamType):
    """``90s``, ``5m``, ``1h``, ``1m30s`` (:func:`simulator.clock.parse_duration`, the one grammar
    of a duration a user types), at most one hour: a number of seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from simulator.clock import parse_duration

        try:
            seconds = value if isinstance(value, float) else parse_duration(str(value)).total_seconds()
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds > MAX_RUN_TIME:
            self.fail(f"must be at most {MAX_RUN_TIME:g} s (1 h)", param, ctx)
        return seconds


@click.command()
@with_target()
@click.option("--users", type=click.IntRange(min=1), default=10, show_default=True, help="Simulated users.")
@click.option(
    "--spawn-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Users started per second.",
)
@click.option(
    "--run-time", type=Duration(), default="30s", show_default=True, help="How long (30s, 5m, at most 1h)."
)
@click.option(
    "--max-error-rate",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    help="Exit 1 when more than this fraction of requests fail.",
)
@click.option(
    "--delivery-resends",
    type=click.IntRange(0, 60),
    help="Resends of a failed call, for every delivery policy (env KOOSIM_DELIVERY_RESENDS; "
    "default: the published schedules, docs/protocol.md §10.1).",
)
@click.option(
    "--delivery-interval",
    metavar="DURATION",
    help="Marketplace time before the first resend (90s, 3m, 1h), for every delivery policy "
    "(env KOOSIM_DELIVERY_INTERVAL); scaled by --time-scale.",
)
@click.option("--resends", type=click.IntRange(0, 60), hidden=True, help="Deprecated: --delivery-resends.")
@click.option("--backoff", type=click.FloatRange(min=0), hidden=True, help="Deprecated: --delivery-interval.")
@click.option(
    "--copies",
    type=click.IntRange(2, 20),
    default=3,
    show_default=True,
    help="Copies of an order a concurrent duplicate resend sends at once.",
)
@click.option("--master", is_flag=True, help="Distribute the users over --worker processes.")
@click.option(
    "--expect-workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Master: start when this many workers have connected (waits at most 60 s).",
)
@click.option(
    "--master-bind-host",
    default="*",
    show_default=True,
    help="Master: the interface workers connect to (* = all).",
)
@click.option("--worker", is_flag=True, help="Take users from a --master and send their traffic.")
@click.option("--master-host", default="127.0.0.1", show_default=True, help="Worker: where the master is.")
@click.option(
    "--master-port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_MASTER_PORT,
    show_default=True,
    help="The master's port (master: 0 picks a free one and prints it).",
)
def load(
    info: TargetInfo,
    users: int,
    spawn_rate: float,
    run_time: float,
    max_error_rate: float,
    delivery_resends: int | None,
    delivery_interval: str | None,
    resends: int | None,
    backoff: float | None,
    copies: int,
    master: bool,
    expect_workers: int,
    master_bind_host: str,
    worker: bool,
    master_host: str,
    master_port: int,
) -> None:
    """Send marketplace traffic at volume (Locust, headless) and count duplicate instances.

    New orders, resends, concurrent duplicate copies, renewals and queries, from --users
    simulated marketplaces, for --run-time, against the target (the bundled reference
    merchant when there is no --url). Prints latency percentiles per activity, the error
    rate, and how many orders ended with more than one instanceId. Run it in one process, or
    as one --master and any number of --worker processes (needs the [load] extra: Locust).
    """
    if master and worker:
        fail("--master and --worker exclude each other", EXIT_USAGE)
    if worker and master_port == 0:
        fail("a worker needs the master's real --master-port, not 0", EXIT_USAGE)
    if find_spec("locust") is None:
        fail("koosim load needs Locust: pip install 'koogallery-simulator[load]'", EXIT_USAGE)

    info.flags.update(
        delivery_resends=delivery_resends,
        delivery_interval=delivery_interval,
        resends=resends,
        backoff=backoff,
    )
    info.settings  # noqa: B018 - a malformed setting fails here, before a process is started
    spec = {
        "mode": "worker" if worker else "master" if master else "local",
        "flags": info.flags,
        "users": users,
        "spawn_rate": spawn_rate,
        "run_time": run_time,
        "max_error_rate": max_error_rate,
        "copies": copies,
        "expect_workers": expect_workers,
        "master_bind_host": master_bind_host,
        "master_host": master_host,
        "master_port": master_port,
    }
    bound = MAX_RUN_TIME + ENGINE_GRACE if worker else run_time + ENGINE_GRACE
    sys.exit(_run_engine(spec, bound))


def _run_engine(spec: dict[str, Any], bound: float) -> int:
    """Run ``python -m simulator.load SPEC`` in a fresh interpreter and return its exit code.

    Locust's gevent monkey-patching must come before anything imports ``ssl``, and by the time
    a command runs, ``koosim`` has imported plenty; a fresh process imports Locust first. It
    shares this terminal, so its progress and summary appear as they are printed.
    """
    command = [sys.executable, "-m", "simulator.load", json.dumps(spec)]
    # A process group of its own: Ctrl+C reaches this process only, which passes it on once.
    process = subprocess.Popen(command, process_group=0 if os.name == "posix" else None)
    try:
        try:
            return process.wait(timeout=bound)
        except KeyboardInterrupt:  # the engine stops its users and still prints the summary
            process.send_signal(signal.SIGINT)
            return process.wait(timeout=ENGINE_GRACE)
    except subprocess.TimeoutExpired:
        fail(f"the load run did not end within {bound:g} s and was stopped", EXIT_FAILED)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return EXIT_FAILED
