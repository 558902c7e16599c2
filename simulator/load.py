"""``koosim load``: marketplace traffic at volume, on Locust used as a library.

Every simulated marketplace (a Locust user) places new orders, resends some of them, sends
concurrent duplicate copies of others, renews and queries what it created, resending failed
calls per the delivery policies (:mod:`simulator.delivery`) on the marketplace clock. Every
instanceId any answer gives for an order goes into an :class:`OrderLedger`; an order that ends
with more than one is the idempotency failure that only concurrency exposes. Locally one process
does everything; in
distributed mode each worker reports its ledger to the master with its stats
(``report_to_master`` / ``worker_report``) and once more, complete, when its users stop.

Importing this module imports Locust, which monkey-patches the standard library with gevent,
and that works only before anything has imported ``ssl``. So this module runs in a process of
its own, ``python -m simulator.load SPEC``, which the ``load`` command (``cli_load.py``)
starts and waits for: neither ``koosim``'s start-up nor any other process ever imports it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import gevent
import locust
import locust.exception
from gevent.event import Event
from gevent.pool import Group
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simulator.checks.base import describe
from simulator.checks.idempotency import answered_ids
from simulator.delivery import Delivery, DeliveryOverride, deliver, delivery_failure, policy_for
from simulator.engine.run import delivery_note
from simulator.model import Order, OrderFactory, query_fields, within_query_limit
from simulator.protocol import ResultCode
from simulator.redaction import printable, redact
from simulator.transport import PRODUCE, Exchange, Target, Transport

LOCUST_VERSION = locust.__version__

WAIT_FOR_WORKERS = WAIT_FOR_MASTER = 60.0
"""How long a master waits for ``--expect-workers`` to connect, and a worker for its master."""
FINAL_REPORT_WAIT = 15.0
"""How long a master waits, after stopping the users, for each worker's complete ledger."""
KNOWN_ORDERS = 50
"""Orders each user remembers for resends, renewals and queries: memory stays flat."""
QUERY_BATCH = 10

NEW, RESEND, CONCURRENT, RENEWAL, QUERY = (
    "newInstance",
    "newInstance resend",
    "newInstance concurrent copies",
    "refreshInstance RENEWAL",
    "queryInstance",
)
ACTIVITIES = (NEW, RESEND, CONCURRENT, RENEWAL, QUERY)
"""The rows of the summary: what the marketplace does, as Locust's request names."""

INSTANCES, FINAL = "koosim_instances", "koosim_final"
"""Keys a worker adds to its reports to the master."""

logger = logging.getLogger("koosim.load")


class LoadFailure(Exception):
    """An answer the marketplace does not accept; its message is what came back (no secrets)."""


# --- what every order ended with -------------------------------------------------------------


class OrderLedger:
    """Every instanceId any answer gave, per order line; on a worker, also what the master lacks."""

    def __init__(self, forwarding: bool = False) -> None:
        self._instances: dict[str, set[str]] = {}
        self._unsent: list[tuple[str, str]] = []
        self._forwarding = forwarding

    def add(self, order_line: str, instance_id: str) -> None:
        known = self._instances.setdefault(order_line, set())
        if instance_id not in known:
            known.add(instance_id)
            if self._forwarding:
                self._unsent.append((order_line, instance_id))

    def drain(self) -> list[tuple[str, str]]:
        """The pairs added since the last drain (a worker's next report to the master)."""
        unsent, self._unsent = self._unsent, []
        return unsent

    def merge(self, pairs: Iterable[Iterable[str]]) -> None:
        for order_line, instance_id in pairs:
            self.add(order_line, instance_id)

    @property
    def orders(self) -> int:
        return len(self._instances)

    def duplicates(self) -> dict[str, set[str]]:
        """The order lines that ended with more than one instanceId."""
        return {line: ids for line, ids in self._instances.items() if len(ids) > 1}


def order_line(order: Order) -> str:
    return f"{order.order_id}/{order.order_line_id}"


# --- what one simulated marketplace does -----------------------------------------------------


@dataclass(frozen=True)
class LoadPlan:
    """What the users of one process need: how to reach the target, how to resend, where to record.

    Users send to the environment's host: the target's URL, or on a worker the master's.
    """

    target: Target
    delivery: DeliveryOverride | None = None
    """The user's change to the delivery policies (None: the published ones, §10.1)."""
    ledger: OrderLedger = field(default_factory=OrderLedger)
    copies: int = 3
    """How many copies of one order a concurrent duplicate resend sends at once."""


class MarketplaceUser(locust.User):
    """One simulated marketplace: orders, resends, concurrent copies, renewals and queries."""

    abstract = True
    plan: LoadPlan
    wait_time = locust.between(0.05, 0.25)

    def on_start(self) -> None:
        if not self.environment.host:  # a worker that refused its master's target
            raise locust.exception.StopUser
        self.target = replace(self.plan.target, url=self.environment.host)
        self.transport = Transport(self.target, on_exchange=self._report)
        self.orders = OrderFactory(seed=uuid.uuid4().hex)  # distinct orders on every user and worker
        self.known: deque[tuple[Order, str]] = deque(maxlen=KNOWN_ORDERS)

    def on_stop(self) -> None:
        self.transport.close()

    # --- the traffic -------------------------------------------------------------------------

    @locust.task(4)
    def new_order(self) -> None:
        order = self.orders.order()
        self._remember(order, self._deliver("newInstance", self._new_instance(order), NEW, RESEND), new=True)

    @locust.task(2)
    def resend(self) -> None:
        """The marketplace missed an answer and sends the order again (new businessId, same line)."""
        if not self.known:
            return self.new_order()
        order, _ = random.choice(self.known)
        self._remember(
            order, self._deliver("newInstance", self._new_instance(order), RESEND, RESEND), new=False
        )

    @locust.task(1)
    def concurrent_copies(self) -> None:
        """Copies of one new order arrive at the same moment, each on its own connection."""
        order = self.orders.order()
        start = Event()
        group = Group()

        def copy(number: int) -> Exchange:
            transport = Transport(self.target, on_exchange=self._report)
            try:
                start.wait()
                return transport.send(self._new_instance(order)(), label=CONCURRENT, attempt=number)
            finally:
                transport.close()

        try:
            copies = [group.spawn(copy, number) for number in range(1, self.plan.copies + 1)]
            gevent.sleep(0)  # every copy is waiting at the gate
            start.set()
            group.join(timeout=self.target.connect_timeout + self.target.timeout + 1)
            answered = [g.value for g in copies if g.successful() and g.value is not None]
            self._remember(order, answered, new=True)
        finally:
            group.kill(block=False)

    def _has(self, activity: str) -> bool:
        """Whether the product profile has ``activity`` (docs/protocol.md §1.2): the traffic mix
        holds only the calls the merchant must implement; a task without its call places an order."""
        return self.target.profile.requires(activity, self.target.protocol)

    @locust.task(2)
    def renewal(self) -> None:
        if not self.known or not self._has("refreshInstance"):
            return self.new_order()
        order, instance_id = random.choice(self.known)
        expire = self.orders.expire_time(days=random.randint(31, 400))
        self._deliver("refreshInstance", lambda: order.refresh_fields(instance_id, expire), RENEWAL, RENEWAL)

    @locust.task(2)
    def query(self) -> None:
        if not self.known or not self._has("queryInstance"):
            return self.new_order()
        chosen = random.sample(list(self.known), min(QUERY_BATCH, len(self.known)))
        ids = within_query_limit([instance_id for _, instance_id in chosen])  # ≤ 100 characters (§4.5)
        self._deliver("queryInstance", lambda: query_fields(*ids), QUERY, QUERY)

    # --- the mechanics -----------------------------------------------------------------------

    def _new_instance(self, order: Order) -> Callable[[], dict[str, str]]:
        """Each delivery of an order is a new call: new businessId (and timestamp and nonce)."""
        return lambda: order.new_instance_fields(self.orders.business_id())

    def _deliver(
        self, activity: str, fields: Callable[[], dict[str, str]], label: str, resend_label: str
    ) -> list[Exchange]:
        """Send a call, resending per its delivery policy on the marketplace clock (the target's);
        each delivery is its own request in the stats."""

        def send(attempt: int) -> Exchange:
            return self.transport.send(
                fields(), label=label if attempt == 1 else resend_label, attempt=attempt
            )

        policy = policy_for(PRODUCE, self.target.protocol, activity, self.plan.delivery)
        deadline = self.target.timeout
        return deliver(
            Delivery(policy, self.target.clock),
            send,
            lambda exchange: delivery_failure(exchange, deadline=deadline),
        )

    def _remember(self, order: Order, exchanges: list[Exchange], new: bool) -> None:
        """Put every instanceId the answers gave in the ledger; keep a new order for later."""
        ids = answered_ids(exchanges)  # a success without an instanceId names no instance
        for instance_id in ids:
            self.plan.ledger.add(order_line(order), instance_id)
        if new and ids:
            self.known.append((order, ids[0]))

    def _report(self, exchange: Exchange) -> None:
        failure = None
        if exchange.result_code != ResultCode.SUCCESS:  # a merchant may echo a key in what it answers
            failure = LoadFailure(redact(describe(exchange), self.target.secrets))
        self.environment.events.request.fire(
            request_type=exchange.method,
            name=exchange.label,
            response_time=exchange.elapsed * 1000,
            response_length=len(exchange.response_body),
            exception=failure,
            context={"attempt": exchange.attempt},
        )


def user_class(plan: LoadPlan) -> type[MarketplaceUser]:
    """The concrete user class for one process; master and workers agree on its name."""
    return type("MarketplaceUser", (MarketplaceUser,), {"plan": plan, "abstract": False})


# --- the outcome -----------------------------------------------------------------------------


@dataclass
class ActivityStats:
    name: str
    requests: int
    failures: int
    p50: float
    p95: float
    p99: float
    max: float


@dataclass
class LoadSummary:
    activities: list[ActivityStats]
    requests: int
    failures: int
    orders: int
    duplicates: dict[str, set[str]]
    errors: list[tuple[str, str, int]]
    """(activity, what came back, occurrences), most frequent first."""
    max_error_rate: float
    problems: list[str] = field(default_factory=list)
    """Why the numbers cannot be trusted (a worker that never sent its ledger, …)."""

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def exit_code(self) -> int:
        failed = self.duplicates or self.error_rate > self.max_error_rate or self.problems
        return 1 if failed or not self.requests else 0


def summarise(environment: Environment, ledger: OrderLedger, max_error_rate: float) -> LoadSummary:
    stats = environment.stats
    rows = []
    order = {name: index for index, name in enumerate(ACTIVITIES)}
    for entry in sorted(stats.entries.values(), key=lambda e: (order.get(e.name, len(order)), e.name)):
        if not entry.num_requests:
            continue
        rows.append(
            ActivityStats(
                name=entry.name,
                requests=entry.num_requests,
                failures=entry.num_failures,
                p50=entry.get_response_time_percentile(0.5),
                p95=entry.get_response_time_percentile(0.95),
                p99=entry.get_response_time_percentile(0.99),
                max=entry.max_response_time or 0.0,
            )
        )
    errors = sorted(
        ((error.name, str(error.error), error.occurrences) for error in stats.errors.values()),
        key=lambda item: -item[2],
    )
    return LoadSummary(
        activities=rows,
        requests=stats.total.num_requests,
        failures=stats.total.num_failures,
        orders=ledger.orders,
        duplicates=ledger.duplicates(),
        errors=errors,
        max_error_rate=max_error_rate,
    )


SHOWN_DUPLICATES = 5


def print_summary(console: Console, summary: LoadSummary) -> None:
    table = Table(title="latency per activity (ms)")
    for column in ("activity", "requests", "failures", "p50", "p95", "p99", "max"):
        table.add_column(column, justify="left" if column == "activity" else "right")
    for row in summary.activities:
        table.add_row(
            escape(row.name),
            str(row.requests),
            str(row.failures),
            *(f"{value:.0f}" for value in (row.p50, row.p95, row.p99, row.max)),
        )
    console.print(table)
    for name, error, occurrences in summary.errors[:5]:
        console.print(f"  {occurrences} × {escape(printable(f'{name}: {error}'))}", highlight=False)
    rate_style = "red" if summary.error_rate > summary.max_error_rate else "green"
    console.print(
        f"[{rate_style}]error rate: {summary.error_rate:.2%}[/] ({summary.failures} of {summary.requests} "
        f"requests failed; threshold {summary.max_error_rate:.2%})",
        highlight=False,
    )
    duplicate_style = "bold red" if summary.duplicates else "green"
    console.print(
        f"[{duplicate_style}]{len(summary.duplicates)} orders with more than one instanceId[/] "
        f"(of {summary.orders} orders)",
        highlight=False,
    )
    for line, ids in list(summary.duplicates.items())[:SHOWN_DUPLICATES]:
        shown = printable(f"{line}: {', '.join(sorted(ids))}", one_line=True)  # ids the merchant chose
        console.print(f"  {escape(shown)}", highlight=False)
    if len(summary.duplicates) > SHOWN_DUPLICATES:
        console.print(f"  … and {len(summary.duplicates) - SHOWN_DUPLICATES} more", highlight=False)
    for problem in summary.problems:
        console.print(f"[bold red]{escape(problem)}[/]", highlight=False)
    if not summary.requests:
        console.print("[bold red]no request completed: nothing to judge[/]")


# --- running it ------------------------------------------------------------------------------


def run_local(
    plan: LoadPlan, users: int, spawn_rate: float, run_time: float, max_error_rate: float
) -> LoadSummary:
    """Run every user in this process for ``run_time`` seconds."""
    environment = Environment(user_classes=[user_class(plan)], host=plan.target.url)
    runner = environment.create_local_runner()
    try:
        runner.start(users, spawn_rate=spawn_rate)
        _sleep(run_time, environment)
    finally:
        runner.quit()
    return summarise(environment, plan.ledger, max_error_rate)


def run_master(
    plan: LoadPlan,
    users: int,
    spawn_rate: float,
    run_time: float,
    max_error_rate: float,
    *,
    bind_host: str,
    port: int,
    expect_workers: int,
    on_listening: Callable[[int], None],
) -> LoadSummary:
    """Spread the users over workers, collect their stats and ledgers, and judge the whole."""
    environment = Environment(user_classes=[user_class(plan)], host=plan.target.url)
    try:
        runner: MasterRunner = environment.create_master_runner(bind_host, port)
    except (SystemExit, locust.exception.RPCError) as exc:  # Locust exits on a busy port, after logging it
        raise MasterBindFailed(f"the master cannot listen on {bind_host}:{port} ({exc})") from None
    seen_workers: set[str] = set()
    final_from: set[str] = set()

    def on_worker_report(client_id: str, data: dict[str, Any]) -> None:
        seen_workers.add(client_id)
        plan.ledger.merge(data.get(INSTANCES, ()))
        if data.get(FINAL):
            final_from.add(client_id)

    environment.events.worker_report.add_listener(on_worker_report)
    try:
        on_listening(runner.server.port)
        deadline = time.monotonic() + WAIT_FOR_WORKERS
        while runner.worker_count < expect_workers:
            if time.monotonic() > deadline:
                raise WorkersMissing(
                    f"{runner.worker_count} of {expect_workers} worker(s) connected within "
                    f"{WAIT_FOR_WORKERS:g} s"
                )
            gevent.sleep(0.1)
        seen_workers.update(client.id for client in runner.clients.all)
        starter = gevent.spawn(runner.start, users, spawn_rate)
        _sleep(run_time, environment)
        starter.kill()
        runner.stop()  # the workers stop their users and send their complete ledgers
        deadline = time.monotonic() + FINAL_REPORT_WAIT
        while not seen_workers <= final_from and time.monotonic() < deadline:
            gevent.sleep(0.1)
    finally:
        runner.quit()
    summary = summarise(environment, plan.ledger, max_error_rate)
    missing = seen_workers - final_from
    if missing:
        summary.problems.append(
            f"{len(missing)} worker(s) did not report their final orders: the duplicate count is incomplete"
        )
    return summary


class MasterBindFailed(Exception):
    """The master's port is taken or its address does not exist."""


class WorkersMissing(Exception):
    """Fewer workers than ``--expect-workers`` connected in time."""


class MasterUnreachable(Exception):
    """A worker found no master at the address it was given."""


class TargetRefused(Exception):
    """The master asked a worker to send traffic somewhere the worker was not told to."""


def run_worker(plan: LoadPlan, master_host: str, master_port: int, expected_url: str | None) -> int:
    """Serve a master until it quits; returns the number of requests this worker sent."""
    environment = Environment(user_classes=[user_class(plan)])
    sent = 0
    refused: list[str] = []

    def on_request(**_: Any) -> None:
        nonlocal sent
        sent += 1

    def on_report(client_id: str, data: dict[str, Any]) -> None:
        data[INSTANCES] = plan.ledger.drain()

    def on_test_start(environment: Environment, **_: Any) -> None:
        if expected_url is not None and environment.host != expected_url:
            refused.append(environment.host or "no URL")
            environment.host = None  # the users stop before sending anything
            gevent.spawn(runner.quit)

    def on_test_stop(environment: Environment, **_: Any) -> None:
        # The users are stopped: this report holds this worker's last stats and whole ledger,
        # and it reaches the master before the "stopped" message that ends the master's wait.
        data: dict[str, Any] = {}
        environment.events.report_to_master.fire(client_id=runner.client_id, data=data)
        data[FINAL] = True
        runner.send_message("stats", data)

    environment.events.request.add_listener(on_request)
    environment.events.report_to_master.add_listener(on_report)
    environment.events.test_start.add_listener(on_test_start)
    environment.events.test_stop.add_listener(on_test_stop)
    try:
        with gevent.Timeout(WAIT_FOR_MASTER, MasterUnreachable):
            runner: WorkerRunner = environment.create_worker_runner(master_host, master_port)
    except (MasterUnreachable, ConnectionError):
        raise MasterUnreachable(
            f"no master answered at {master_host}:{master_port} within {WAIT_FOR_MASTER:g} s"
        ) from None
    with contextlib.suppress(KeyboardInterrupt):
        runner.greenlet.join()  # until the master says quit, or is silent for a minute
    runner.quit()
    if refused:
        raise TargetRefused(
            f"the master sent this worker to {refused[0]}, not to its own --url/KOOSIM_URL {expected_url}"
        )
    return sent


PROGRESS_EVERY = 10.0
"""Seconds between two progress lines of a run (elapsed, requests, failures, users)."""


def _sleep(seconds: float, environment: Environment | None = None) -> None:
    """The test's duration, with a progress line every :data:`PROGRESS_EVERY` seconds; Ctrl+C
    ends it early and the summary still comes."""
    started = time.monotonic()
    try:
        while (left := seconds - (time.monotonic() - started)) > 0:
            gevent.sleep(min(left, PROGRESS_EVERY))
            if environment is not None and seconds - (time.monotonic() - started) > 0:
                print(_progress_line(environment, time.monotonic() - started, seconds), flush=True)
    except KeyboardInterrupt:
        logger.warning("interrupted: stopping the users")


def _progress_line(environment: Environment, elapsed: float, seconds: float) -> str:
    total = environment.stats.total
    users = environment.runner.user_count if environment.runner is not None else 0
    return (
        f"load: {elapsed:.0f}/{seconds:g} s · {total.num_requests} requests · "
        f"{total.num_failures} failures · {users} users"
    )


# --- the process the load command starts -----------------------------------------------------


def main(argv: list[str]) -> int:
    """Run what ``SPEC`` (JSON, built by ``simulator/cli/load.py``) describes; return the exit code."""
    from simulator.errors import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, KoosimError
    from simulator.reference import DEMO_ACCESS_KEY
    from simulator.settings import build_target, load_settings, reach_target

    logging.basicConfig(level=logging.WARNING, format="koosim load: %(levelname)s %(name)s: %(message)s")
    spec = json.loads(argv[0])
    console = Console()
    errors = Console(stderr=True)

    def fail(message: str, code: int) -> int:
        errors.print(f"[bold red]koosim:[/] {escape(message)}", highlight=False)
        return code

    try:
        settings = load_settings(spec["flags"])
    except KoosimError as exc:
        return fail(exc.one_line(), exc.exit_code)
    delivery = settings.delivery
    if not settings.profile.requires("newInstance", settings.protocol):
        return fail(
            f"koosim load plays SaaS orders (newInstance, renewals, queries); the profile "
            f"{settings.profile} has none of them (docs/protocol.md §1.2)",
            EXIT_USAGE,
        )

    if spec["mode"] == "worker":
        # Without a key of its own a worker can only be serving a master that runs the bundled
        # reference merchant, which then uses the published demo key.
        target = build_target(
            settings, url=settings.url or "", access_key=settings.access_key or DEMO_ACCESS_KEY
        )
        plan = LoadPlan(
            target=target, delivery=delivery, ledger=OrderLedger(forwarding=True), copies=spec["copies"]
        )
        where = f"{spec['master_host']}:{spec['master_port']}"
        console.print(f"koosim load worker (Locust {LOCUST_VERSION}): master at {where}", highlight=False)
        sys.stdout.flush()
        try:
            sent = run_worker(plan, spec["master_host"], spec["master_port"], expected_url=settings.url)
        except MasterUnreachable as exc:
            return fail(str(exc), EXIT_UNREACHABLE)
        except TargetRefused as exc:
            return fail(str(exc), EXIT_USAGE)
        console.print(f"koosim load worker: done, {sent} requests sent", highlight=False)
        return EXIT_OK

    users, spawn_rate, run_time = spec["users"], spec["spawn_rate"], spec["run_time"]
    max_error_rate = spec["max_error_rate"]
    try:
        with reach_target(settings) as target:
            plan = LoadPlan(target=target, delivery=delivery, copies=spec["copies"])
            where = "the bundled reference merchant" if settings.url is None else target.url
            console.print(
                f"koosim load (Locust {LOCUST_VERSION}): {users} users, spawn rate {spawn_rate:g}/s, "
                f"for {run_time:g} s against {where} ({target.protocol}); {target.clock.describe()}; "
                f"resends: {delivery_note(delivery)}",
                highlight=False,
            )
            if spec["mode"] == "master":

                def listening(port: int) -> None:
                    console.print(
                        f"master listening on port {port}; waiting for {spec['expect_workers']} worker(s)",
                        highlight=False,
                    )
                    sys.stdout.flush()

                summary = run_master(
                    plan,
                    users,
                    spawn_rate,
                    run_time,
                    max_error_rate,
                    bind_host=spec["master_bind_host"],
                    port=spec["master_port"],
                    expect_workers=spec["expect_workers"],
                    on_listening=listening,
                )
            else:
                summary = run_local(plan, users, spawn_rate, run_time, max_error_rate)
    except KoosimError as exc:
        return fail(exc.one_line(), exc.exit_code)
    except WorkersMissing as exc:
        return fail(f"not enough workers: {exc}", EXIT_UNREACHABLE)
    except MasterBindFailed as exc:
        return fail(str(exc), EXIT_USAGE)
    print_summary(console, summary)
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
