"""``pytest --koosim-url URL``: the check catalog as pytest items, and a ``marketplace`` fixture.

The plugin is installed with the package for everyone (entry point ``pytest11``), so it is inert
unless asked: without ``--koosim-url`` it adds no item, and nothing of the package beyond this
module is imported until a test requests the ``marketplace`` fixture. Keys come from
``KOOSIM_ACCESS_KEY`` / ``KOOSIM_SYNC_KEY`` / ``koosim.toml`` exactly as for ``koosim``, never from
the command line.

The checks are not in any file, so no ``pytest_collect_file`` hook sees them. They are made once
per session in ``pytest_collection_modifyitems`` under a synthetic ``koosim`` collector (node ids
``koosim::security.v2-signature-wrong``), before ``-k``, ``-m`` and ``--deselect`` act on the item
list, so those select checks as they select any test.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator, Iterator, Mapping
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from simulator.checks import Check
    from simulator.clock import Clock
    from simulator.engine.run import CheckResult
    from simulator.model import Order, OrderFactory
    from simulator.openapi import InboundCall
    from simulator.server.market import MarketServer
    from simulator.settings import Settings
    from simulator.transport import Exchange, Target, Transport

REFERENCE = "reference"
"""The ``--koosim-url`` value that names the bundled reference merchant, started in-process."""
MAX_FINDINGS_SHOWN = 5
_V1_SIGNING_FIELDS = frozenset({"timeStamp", "authToken"})


class KoosimWarning(UserWarning):
    """A warning-severity check (practice, not a documented rule) found something."""


class CheckFailed(Exception):
    """A check's verdict is FAILED; the message is the whole, redacted, failure report."""


class TargetProblem(Exception):
    """The target cannot be used: a setting is wrong or nothing answers at its address."""


# --- options and configuration ------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("koosim", "koosim: contract-test a KooGallery merchant")
    group.addoption(
        "--koosim-url",
        metavar="URL",
        help="Run the koosim check catalog against this produce URL ('reference': the bundled "
        "reference merchant). Keys come from KOOSIM_ACCESS_KEY/KOOSIM_SYNC_KEY or koosim.toml.",
    )
    group.addoption(
        "--koosim-protocol",
        choices=("v2", "v1"),
        help="Interface generation (env KOOSIM_PROTOCOL, default v2).",
    )
    group.addoption(
        "--koosim-sync-url", metavar="URL", help="Base URL of the user-sync interfaces (default: <url>/v2)."
    )
    group.addoption(
        "--koosim-timeout",
        type=float,  # its range is checked with the other settings, by simulator.settings
        metavar="SECONDS",
        help="The marketplace's per-call deadline (env KOOSIM_TIMEOUT, default 5 as published: §3.3).",
    )
    group.addoption(
        "--koosim-product",
        choices=("saas", "saas-kit", "license"),
        help="What the merchant sells; checks of interfaces it need not have are skipped with the "
        "reason (docs/protocol.md §1.2; env KOOSIM_PRODUCT, default saas).",
    )
    group.addoption(
        "--koosim-billing",
        choices=("period", "one-time", "on-demand"),
        help="Billing mode: yearly/monthly, one-time, pay-per-use (env KOOSIM_BILLING, default period).",
    )
    group.addoption(
        "--koosim-license-call",
        choices=("getLicense", "getLicenseAsync"),
        help="How a License product receives its licence (docs/protocol.md §6, A41; "
        "env KOOSIM_LICENSE_CALL, default getLicense).",
    )
    group.addoption(
        "--koosim-optional",
        choices=("on", "off"),
        help="Whether the product allows specification changes (upgradeInstance, changeInstanceCheck; "
        "env KOOSIM_OPTIONAL, default on).",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("koosim_url") is None:
        return
    config.addinivalue_line("markers", "koosim: a check of the koosim catalog (added by --koosim-url)")
    try:
        settings = _state(config).settings()
    except TargetProblem as problem:
        raise pytest.UsageError(str(problem)) from None
    if settings.url is not None and not settings.access_key:
        raise pytest.UsageError(
            "koosim: --koosim-url needs the merchant's access key: set KOOSIM_ACCESS_KEY or "
            "access_key in koosim.toml (never on the command line)"
        )


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("koosim_url") is None:
        return None
    settings = _state(config).settings()
    where = "the bundled reference merchant" if settings.url is None else settings.url
    return (
        f"koosim: checks against {where} ({settings.protocol}, deadline {settings.timeout:g} s, "
        f"profile {settings.profile}); {settings.clock().describe()}"
    )


class KoosimSession:
    """The target of one pytest session: opened on first use, shared by every item and fixture,
    closed (reference merchant stopped) when pytest unconfigures."""

    def __init__(self, config: pytest.Config) -> None:
        self.url: str | None = config.getoption("koosim_url")
        self._flags = {
            "protocol": config.getoption("koosim_protocol"),
            "sync_url": config.getoption("koosim_sync_url"),
            "timeout": config.getoption("koosim_timeout"),
            "product": config.getoption("koosim_product"),
            "billing": config.getoption("koosim_billing"),
            "optional": config.getoption("koosim_optional"),
            "license_call": config.getoption("koosim_license_call"),
        }
        self.exchanges: list[Exchange] = []
        """Every exchange of the active checks run so far: what per-exchange checks judge."""
        self._settings: Settings | None = None
        self._target: Target | None = None
        self._transport: Transport | None = None
        self._orders: OrderFactory | None = None
        self._problem: str | None = None
        self._resources = ExitStack()
        self.market: MarketServer | None = None
        """The marketplace open API of the session (``server/market.py``), once the target is opened."""

    @property
    def explicit_url(self) -> str | None:
        """The merchant's URL, or None for the reference merchant (``reference`` or no option)."""
        return None if self.url in (None, REFERENCE) else self.url

    def settings(self) -> Settings:
        if self._settings is None:
            from dataclasses import replace

            from simulator.errors import KoosimError
            from simulator.settings import load_settings

            try:
                settings = load_settings({**self._flags, "url": self.explicit_url})
            except KoosimError as exc:
                raise TargetProblem(f"koosim: {_plugin_flags(exc.one_line())}") from None
            # Only --koosim-url switches the target: KOOSIM_URL or url in koosim.toml never
            # sends a plain pytest run to a server.
            self._settings = replace(settings, url=self.explicit_url)
        return self._settings

    def target(self) -> Target:
        """The target, opened and probed once; :class:`TargetProblem` every time if it cannot be."""
        if self._problem is None and self._target is None:
            from simulator.errors import KoosimError
            from simulator.server.market import market_server
            from simulator.settings import reach_target

            try:
                settings = self.settings()
                self.market = self._resources.enter_context(market_server(settings))
                self._target = self._resources.enter_context(reach_target(settings))
                self.market.usage_key = self._target.access_key
                for key in self.market.secrets:
                    self._target.learn_secret(key)
            except TargetProblem as problem:
                self._problem = str(problem)
            except KoosimError as exc:
                where = f" (--koosim-url {self.url})" if self.explicit_url else ""
                self._problem = f"koosim: {_plugin_flags(exc.one_line())}{where}"
        if self._problem is not None:
            raise TargetProblem(self._problem)
        assert self._target is not None
        return self._target

    @property
    def orders(self) -> OrderFactory:
        """One order factory for the session, so no two items or tests reuse an order id."""
        if self._orders is None:
            from simulator.model import OrderFactory, fresh_seed

            self._orders = OrderFactory(fresh_seed())
        return self._orders

    def run(self, check: Check) -> CheckResult:
        from simulator.engine.run import run_check
        from simulator.transport import Transport

        target = self.target()
        if self._transport is None:
            self._transport = Transport(target)
            self._resources.callback(self._transport.close)
        return run_check(
            check,
            target,
            self._transport,
            self.orders,
            self.exchanges,
            self.settings().delivery,
            None if self.market is None else self.market.log,
        )

    def reproduce(self, check_id: str) -> str:
        from simulator.engine.run import reproduce_command

        return reproduce_command({**self._flags, "url": self.explicit_url}, check_id)

    def close(self) -> None:
        self._resources.close()


_STATE = pytest.StashKey[KoosimSession]()


def _state(config: pytest.Config) -> KoosimSession:
    state = config.stash.get(_STATE, None)
    if state is None:
        state = config.stash[_STATE] = KoosimSession(config)
        config.add_cleanup(state.close)
    return state


# --- the catalog as items ----------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if config.getoption("koosim_url") is None:
        return
    # Collected through the ordinary hooks, so the terminal counts the items and a broken
    # catalog shows as a collection error of "koosim".
    catalog = KoosimCatalog.from_parent(session, name="koosim", nodeid="koosim")
    catalog.ihook.pytest_collectstart(collector=catalog)
    report = catalog.ihook.pytest_make_collect_report(collector=catalog)
    catalog.ihook.pytest_collectreport(report=report)
    items.extend(node for node in report.result if isinstance(node, pytest.Item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if isinstance(item, KoosimCheck) and report.skipped and isinstance(report.longrepr, tuple):
        # Name the check, not the line of this module that called pytest.skip.
        # lineno None: pytest's skip summary then shows no line (its stubs say int, it accepts None)
        report.longrepr = (item.nodeid, None, report.longrepr[2])  # type: ignore[assignment]
    return report


class KoosimCatalog(pytest.Collector):
    """The synthetic parent of the check items: ``-k koosim`` selects them all."""

    def collect(self) -> list[KoosimCheck]:
        from simulator.checks import catalog

        return [KoosimCheck.from_parent(self, name=check.id, check=check) for check in catalog()]


class KoosimCheck(pytest.Item):
    """One check of the catalog, run against the session's target."""

    def __init__(self, *, check: Check, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.add_marker("koosim")

    def runtest(self) -> None:
        from simulator.checks import Verdict
        from simulator.redaction import printable, redact

        state = _state(self.config)
        result = state.run(self.check)
        secrets = state.target().secrets
        self.user_properties.append(("koosim_verdict", result.verdict.value))
        if result.verdict is Verdict.FAILED:
            raise CheckFailed(_failure_report(result, secrets, state.reproduce(self.check.id)))
        if result.verdict is Verdict.WARNED:
            message = f"{self.check.id} (practice, protocol.md {self.check.rule}): {result.evidence}"
            warning = KoosimWarning(printable(redact(message, secrets)))
            # Attributed to "koosim", not to the line of this module that raises it.
            warnings.warn_explicit(warning, KoosimWarning, filename="koosim", lineno=0)
        elif result.verdict is Verdict.SKIPPED:
            pytest.skip(redact(result.skip_reason or "does not apply to this target", secrets))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CheckFailed | TargetProblem | KoosimWarning):  # -W error::…
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"koosim {self.check.id}"


def _failure_report(result: CheckResult, secrets: tuple[str, ...], reproduce: str) -> str:
    """What failed, the exchanges that show it and the rule, with every key redacted."""
    from simulator.engine.record import exchange_record
    from simulator.redaction import printable, redact

    check = result.check
    lines = [
        redact(result.evidence, secrets),  # first: pytest's short summary shows this line
        f"check: {check.id}: {' '.join(filter(None, (check.title, check.doc)))}",
        f"rule: protocol.md {check.rule} ({check.severity})",
    ]
    for number, finding in enumerate(result.findings[:MAX_FINDINGS_SHOWN], start=1):
        lines += ["", f"finding {number} of {len(result.findings)}: {redact(finding.message, secrets)}"]
        for exchange in finding.exchanges:
            lines += _exchange_lines(exchange_record(exchange, secrets))
    if len(result.findings) > MAX_FINDINGS_SHOWN:
        lines += ["", f"(+{len(result.findings) - MAX_FINDINGS_SHOWN} more findings)"]
    lines += ["", f"reproduce: {redact(reproduce, secrets)}"]
    return printable("\n".join(lines))


def _exchange_lines(record: Mapping[str, Any]) -> list[str]:
    request, response = record["request"], record["response"]
    lines = [f"  exchange {record['id']}: {record['label'] or record['activity']}"]
    lines.append(f"    > {request['method']} {request['url']}")
    lines += [f"    > {name}: {value}" for name, value in request["headers"].items()]
    if request["body"]:
        lines.append(f"    > {request['body']}")
    if response is None:
        lines.append(f"    < no answer after {record['elapsed_ms']} ms: {record['error']}")
        return lines
    lines.append(f"    < HTTP {response['status']} in {record['elapsed_ms']} ms")
    lines += [
        f"    < {name}: {value}"
        for name, value in response["headers"].items()
        if name.lower() in ("content-type", "body-sign")
    ]
    lines.append(f"    < {response['body']}")
    return lines


# --- fixtures for a merchant's own scenario tests ---------------------------------------------


class DecryptedSecret(str):
    """A decrypted appInfo value: a plain ``str`` whose repr hides it from tracebacks and
    assertion explanations. ``print`` and string diffs (``==``) still show it: don't."""

    def __repr__(self) -> str:
        return "<decrypted secret, hidden>"


class SimulatedMarketplace:
    """The marketplace side of a merchant's own scenario test: it sends signed calls to the
    target, remembers the orders it placed, and keeps every exchange in :attr:`exchanges`.

    The lifecycle methods take the newInstance exchange (or an instanceId); each returns the
    :class:`~simulator.transport.Exchange`, whose ``result_code`` and ``answer_field(...)`` a
    test asserts on.
    """

    def __init__(self, target: Target, orders: OrderFactory, market: MarketServer | None = None) -> None:
        from simulator.transport import Transport

        self.target = target
        self.orders = orders
        self.market = market
        """The open API the merchant may call back (Querying an Order, usage push): its
        :attr:`~simulator.server.market.MarketServer.base_url` and inbound calls."""
        self._heard_before = 0 if market is None else market.log.total
        self.exchanges: list[Exchange] = []
        self._transport = Transport(target)
        self._order_of_exchange: dict[str, Order] = {}
        self._order_of_instance: dict[str, Order] = {}

    def __repr__(self) -> str:
        return f"<SimulatedMarketplace {self.target!r}, {len(self.exchanges)} exchange(s)>"

    @property
    def clock(self) -> Clock:
        """The marketplace clock (``--time-scale``; docs/protocol.md §10): every exchange carries
        the instant it was sent (``market_at``); with ``KOOSIM_TIME_SCALE=frozen`` a test moves
        it with ``marketplace.clock.advance(timedelta(hours=1))`` instead of sleeping."""
        return self.target.clock

    def close(self) -> None:
        self._transport.close()

    @property
    def inbound(self) -> list[InboundCall]:
        """The merchant's calls to the open API since this test began (direction merchant →
        marketplace), each with the gateway's verdict."""
        return [] if self.market is None else self.market.log.since(self._heard_before)

    # --- sending -----------------------------------------------------------------------------

    def send(self, fields: Mapping[str, Any], label: str = "", *, attempt: int = 1) -> Exchange:
        """Send a produce-interface call with these fields, signed in the target's protocol; skips
        the test when the target's product profile has no such activity (docs/protocol.md §1.2)."""
        activity = fields.get("activity")
        if isinstance(activity, str):
            reason = self.target.profile.skip_reason((activity,), self.target.protocol)
            if reason is not None:
                pytest.skip(reason)
        exchange = self._transport.send(
            fields, label=label or str(fields.get("activity", "")), attempt=attempt
        )
        self.exchanges.append(exchange)
        return exchange

    def sync(self, call: str, body: Mapping[str, Any], label: str = "", *, attempt: int = 1) -> Exchange:
        """Send a user-authorization sync call (``authSync``, ``tenantSync``, …); skips the test
        when the product has no Kit (docs/protocol.md §1.2) or no sync key is configured."""
        reason = self.target.profile.skip_reason((call,), self.target.protocol)
        if reason is not None:
            pytest.skip(reason)
        if not self.target.sync_key:
            pytest.skip("no sync key configured (KOOSIM_SYNC_KEY)")
        exchange = self._transport.sync(call, body, label=label or call, attempt=attempt)
        self.exchanges.append(exchange)
        return exchange

    def new_instance(self, **order_overrides: Any) -> Exchange:
        """Order a new instance for a fresh order; ``order_overrides`` are :class:`~simulator.model.Order`
        fields: ``trial=True``, ``test=True``, ``sku_code=…``, ``extra={"userName": …}``, …"""
        order = self.orders.order(**order_overrides)
        exchange = self.send(order.new_instance_fields(self.orders.business_id()), "newInstance")
        self._remember(order, exchange)
        return exchange

    def resend(self, exchange: Exchange) -> Exchange:
        """Send the same call again as the marketplace resends it: the same order and content,
        a new businessId (when the call has one), timestamp and nonce."""
        from simulator.transport import SYNC

        fields = {name: value for name, value in exchange.fields.items() if name not in _V1_SIGNING_FIELDS}
        if "businessId" in fields:
            fields["businessId"] = self.orders.business_id()
        label = f"{exchange.label or exchange.activity} (resend)"
        if exchange.interface == SYNC:
            return self.sync(exchange.activity, fields, label, attempt=exchange.attempt + 1)
        again = self.send(fields, label, attempt=exchange.attempt + 1)
        if exchange.id in self._order_of_exchange:
            self._remember(self._order_of_exchange[exchange.id], again)
        return again

    def refresh(self, instance: Exchange | str, *, days: int = 60, scene: str = "RENEWAL") -> Exchange:
        """refreshInstance: a new expireTime ``days`` from now; ``scene`` RENEWAL, TRIAL_TO_FORMAL, …"""
        instance_id, order = self._resolve(instance)
        fields = order.refresh_fields(instance_id, self.orders.expire_time(days=days), scene)
        return self.send(fields, f"refreshInstance {scene}")

    def freeze(self, instance: Exchange | str) -> Exchange:
        from simulator.model import status_fields

        return self.send(status_fields(self._resolve(instance)[0], "FREEZE"), "updateInstanceStatus FREEZE")

    def unfreeze(self, instance: Exchange | str) -> Exchange:
        from simulator.model import status_fields

        return self.send(
            status_fields(self._resolve(instance)[0], "UNFREEZE"), "updateInstanceStatus UNFREEZE"
        )

    def release(self, instance: Exchange | str) -> Exchange:
        """releaseInstance; on V1 it names the subscription order, mandatory (docs/protocol.md §5.5)."""
        from simulator.model import release_call

        instance_id, order = self._resolve(instance)
        return self.send(release_call(self.target.protocol, instance_id, order.order_id), "releaseInstance")

    def upgrade(self, instance: Exchange | str) -> Exchange:
        """upgradeInstance (docs/protocol.md §4.3): the upgrade order; no product fields in the body."""
        instance_id, order = self._resolve(instance)
        return self.send(order.upgrade_fields(instance_id), "upgradeInstance")

    def query(self, *instances: Exchange | str) -> Exchange:
        from simulator.model import query_fields

        return self.send(
            query_fields(*(self._resolve(instance)[0] for instance in instances)), "queryInstance"
        )

    # --- reading answers -----------------------------------------------------------------------

    def app_info(self, exchange: Exchange) -> dict[str, Any]:
        """The answer's appInfo with userName and password DECRYPTED (access key, declared
        encryptType), for a test to assert on. Never print or log what it returns."""
        from simulator.checks.base import describe
        from simulator.checks.security import encrypt_type_problem
        from simulator.protocol import DecryptionError, decrypt

        app_info = exchange.answer_field("appInfo")
        if not isinstance(app_info, dict):
            raise ValueError(
                f"{exchange.label or exchange.activity}: no appInfo in the answer ({describe(exchange)})"
            )
        declared = exchange.answer_field("encryptType")
        wrong_type = encrypt_type_problem(declared)
        if wrong_type is not None:
            raise ValueError(wrong_type)
        decrypted = dict(app_info)
        for name in ("userName", "password"):
            value = app_info.get(name)
            if isinstance(value, str) and value:
                try:
                    decrypted[name] = DecryptedSecret(decrypt(value, self.target.access_key, declared))
                except DecryptionError as problem:
                    raise DecryptionError(f"appInfo.{name} with encryptType {declared}: {problem}") from None
        return decrypted

    def contract_problems(self, exchange: Exchange) -> list[str]:
        """What the per-exchange checks (contract.*, timing.*) find wrong with this answer; [] if none."""
        from simulator.checks import judge_exchange
        from simulator.redaction import redact

        return [
            redact(f"{breach.check_id}: {breach.message}", self.target.secrets)
            for breach in judge_exchange(exchange, self.target)
        ]

    # --- bookkeeping ---------------------------------------------------------------------------

    def _remember(self, order: Order, exchange: Exchange) -> None:
        self._order_of_exchange[exchange.id] = order
        instance_id = exchange.answer_field("instanceId")
        if isinstance(instance_id, str) and instance_id:
            self._order_of_instance[instance_id] = order

    def _resolve(self, instance: Exchange | str) -> tuple[str, Order]:
        """The instanceId and the order behind it; a fresh order for an id this test never created."""
        if isinstance(instance, str):
            return instance, self._order_of_instance.get(instance) or self.orders.order()
        from simulator.checks.base import describe

        instance_id = instance.answer_field("instanceId")
        if not isinstance(instance_id, str) or not instance_id:
            label = instance.label or instance.activity
            raise ValueError(f"{label}: the answer carries no instanceId ({describe(instance)})")
        order = self._order_of_exchange.get(instance.id) or self._order_of_instance.get(instance_id)
        return instance_id, order or self.orders.order()


def _plugin_flags(message: str) -> str:
    """The message with the command line's flag names as this plugin spells them: a pytest user
    typed ``--koosim-url``, not ``--url``."""
    import re

    return re.sub(r"(?<![\w-])--(url|protocol|sync-url|timeout)\b", r"--koosim-\1", message)


@pytest.fixture(scope="session")
def koosim_target(pytestconfig: pytest.Config) -> Target:
    """The merchant under test: ``--koosim-url``'s, else the bundled reference merchant (one per session)."""
    try:
        return _state(pytestconfig).target()
    except TargetProblem as problem:
        pytest.fail(str(problem), pytrace=False)


@pytest.fixture
def marketplace(koosim_target: Target, pytestconfig: pytest.Config) -> Iterator[SimulatedMarketplace]:
    """A :class:`SimulatedMarketplace` sending to ``koosim_target``; its ``exchanges`` are this test's own."""
    state = _state(pytestconfig)
    market = SimulatedMarketplace(koosim_target, state.orders, state.market)
    yield market
    market.close()
