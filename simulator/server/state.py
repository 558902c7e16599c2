"""What the fake marketplace holds in memory: the merchant it talks to and the keys it shares.

Keys are entered once (console or JSON API) and live only here, in this process: they are never
written to the run history, never rendered back (a page says "set" or "not set"), and every
record that leaves the server is redacted with them.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from simulator.clock import Clock
from simulator.openapi import InboundLog
from simulator.settings import (
    PROFILE_SETTINGS,
    VALIDATORS,
    ConfigError,
    Settings,
    build_target,
    named,
    open_target,
    validate,
)
from simulator.settings import PROTOCOLS as PROTOCOLS  # the console lists them
from simulator.store import Store
from simulator.transport import LearnedSecrets, Target

SECRET_SETTINGS = ("access_key", "sync_key", "notification_token", "market_ak", "market_sk")
DEFAULT_RECIPIENT = "the merchant's registered contact"


class NotConfigured(Exception):
    """The console or API asked for something that needs a target that is not configured yet."""


class SettingsError(ConfigError, ValueError):
    """A setting has a value the server cannot use; the message names the setting."""


@dataclass(frozen=True)
class ConsoleSettings(Settings):
    """The target merchant as every ``koosim`` command knows it (:class:`simulator.settings.Settings`:
    URL, protocol, keys, timeout), and the marketplace's other contacts with it."""

    notification_url: str | None = None
    notification_token: str | None = None
    contact: str = DEFAULT_RECIPIENT
    """Where the marketplace's SMS / e-mail about failed user syncs go (shown in the outbox)."""
    bundled: bool = False
    """The target is the reference merchant this server started itself."""

    def __repr__(self) -> str:  # keys never show up in a repr, a log line or a traceback
        return f"ConsoleSettings({', '.join(f'{name}={value!r}' for name, value in self.public().items())})"

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(value for name in SECRET_SETTINGS if (value := getattr(self, name)))

    def public(self) -> dict[str, Any]:
        """The settings as a page or the API may show them: keys only as "set" / "not set"."""
        return {
            "url": self.url,
            "protocol": self.protocol,
            "sync_url": self.sync_url,
            "timeout": self.timeout,
            "product": self.profile.product,
            "billing": self.profile.billing,
            "optional": self.profile.optional,
            "license_call": self.profile.license_call,
            "profile": str(self.profile),
            "encrypt_type": self.encrypt_type,
            "notification_url": self.notification_url,
            "contact": self.contact,
            "bundled": self.bundled,
            "access_key": "set" if self.access_key else "not set",
            "sync_key": "set" if self.sync_key else "not set",
            "notification_token": "set" if self.notification_token else "not set",
            "market_ak": "set" if self.market_ak else "not set",
            "market_sk": "set" if self.market_sk else "not set",
            "rsa_public_key": "set" if self.rsa_public_key else "not set",
        }


CONFIGURABLE = frozenset(
    {"url", "sync_url", "notification_url", "protocol", "timeout", "contact", "bundled", "clear_keys"}
    | {"product", "billing", "optional", "license_call", "encrypt_type"}
    | {"rsa_public_key", *SECRET_SETTINGS}
)
"""What the console and the API may change (the resend policy and time budget are the CLI's)."""


def _checked(name: str, value: Any) -> Any:
    """``value`` through the one validator every command uses, or SettingsError naming ``name``."""
    try:
        return validate(name, value)
    except ValueError as exc:
        raise SettingsError(named(name, str(exc))) from None


KEYS_OF = {
    "url": ("access_key", "sync_key"),
    "sync_url": ("sync_key",),
    "notification_url": ("notification_token",),
}
"""The keys shared with the merchant at each URL: moving a URL to another host forgets them."""


def _host(url: str | None) -> str:
    return urlsplit(url or "").netloc.lower()


def _forget_keys_of_other_hosts(
    old: ConsoleSettings, new: ConsoleSettings, changes: Mapping[str, Any]
) -> ConsoleSettings:
    """``new`` without the keys of a URL whose host changed, unless ``changes`` gives them anew:
    a target moved elsewhere must not get calls signed with the last merchant's keys."""
    forget = {
        key
        for name, keys in KEYS_OF.items()
        if getattr(old, name) and _host(getattr(old, name)) != _host(getattr(new, name))
        for key in keys
        if not changes.get(key)
    }
    cleared: dict[str, Any] = dict.fromkeys(forget)
    return replace(new, **cleared) if forget else new


class MarketState:
    """The server's state, shared by every request and every background run of one app."""

    def __init__(
        self, store: Store, settings: ConsoleSettings | None = None, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        """This process's name on the deliveries it claims (store/deliveries.py)."""
        self.held_deliveries: dict[int, float] = {}
        """Deliveries the scheduler could not send, until when (monotonic) it leaves them alone."""
        self.scheduler: Any = None
        """The background sender of due deliveries, when ``serve`` started one (server/deliveries.py)."""
        self._settings = settings or ConsoleSettings()
        self.clock: Clock = clock if clock is not None else self._settings.clock(live=True)
        """The marketplace's one clock in ``serve`` (docs/protocol.md §10): every target, run and
        scheduled delivery reads it; a frozen one is advanced by /api/clock/advance."""
        self._lock = threading.Lock()
        self._learned_secrets = LearnedSecrets()
        """Plaintexts decrypted in any call, redacted in every later one (a fresh Target each call)."""
        self._bundled: tuple[ExitStack, Target] | None = None
        """The reference merchant this server started (see ``bundled``) and its target."""
        self._runs: dict[str, threading.Thread] = {}
        self.plays: dict[str, Any] = {}
        """Scenario sessions being played by hand, by id (see :mod:`simulator.server.play`)."""
        self._closing = ExitStack()
        """What :meth:`close` ends besides (the open API's order watch, :meth:`on_close`)."""
        self.open_api_log: InboundLog | None = None
        """The merchant's calls to this server's open API (set by ``server.market.serve_service``):
        the checks of a run started here judge the calls made during it."""

    @property
    def settings(self) -> ConsoleSettings:
        with self._lock:
            return self._settings

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.settings.secrets

    def configure(self, changes: Mapping[str, Any]) -> ConsoleSettings:
        """Apply the given settings; a key left out or empty keeps its current value.

        ``bundled=True`` points the target at the reference merchant this server runs itself
        (started on first use on 127.0.0.1 and a free port).
        """
        unknown = sorted(set(changes) - CONFIGURABLE)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name in ("url", "sync_url", "notification_url"):
            if name in changes:
                value = changes[name]
                if value is not None and not isinstance(value, str):
                    raise SettingsError(f"{name} must be a string")
                values[name] = _checked(name, value.strip()) if value and value.strip() else None
        if "protocol" in changes:
            values["protocol"] = _checked("protocol", changes["protocol"])
        if changes.get("timeout") not in (None, ""):
            values["timeout"] = _checked("timeout", changes["timeout"])
        if changes.get("encrypt_type") not in (None, ""):  # the seller's choice (§2.7, U20)
            values["encrypt_type"] = _checked("encrypt_type", changes["encrypt_type"])
        profile = {
            name: _checked(name, changes[name])
            for name in PROFILE_SETTINGS
            if changes.get(name) not in (None, "")
        }
        if "contact" in changes:
            contact = changes["contact"]
            if not isinstance(contact, str):
                raise SettingsError("contact must be a string")
            values["contact"] = contact.strip()[:200] or DEFAULT_RECIPIENT
        if changes.get("clear_keys"):
            values.update(dict.fromkeys(SECRET_SETTINGS), rsa_public_key=None)
        for name in SECRET_SETTINGS:
            value = changes.get(name)
            if value is not None and not isinstance(value, str):
                raise SettingsError(f"{name} must be a string")
            if value:
                values[name] = _checked(name, value) if name in VALIDATORS else value
        if changes.get("rsa_public_key"):
            if not isinstance(changes["rsa_public_key"], str):
                raise SettingsError("rsa_public_key must be a PEM string")
            values["rsa_public_key"] = _checked("rsa_public_key", changes["rsa_public_key"])
        bundled = changes.get("bundled")
        if bundled not in (None, True, False):
            raise SettingsError("bundled must be true or false")
        with self._lock:
            settings = self._settings
            if settings.bundled and not bundled and (bundled is False or "url" in values):
                # leaving the bundled merchant: its demo keys are not the next merchant's
                settings = replace(
                    settings, access_key=None, sync_key=None, rsa_public_key=None, bundled=False
                )
            settings = _forget_keys_of_other_hosts(settings, replace(settings, **values), changes)
            if profile:  # the product profile (docs/protocol.md §1.2), validated as the CLI's
                settings = replace(settings, profile=replace(settings.profile, **profile))
            if bundled:
                settings = self._use_bundled(settings)
            self._settings = settings
        return settings

    def _use_bundled(self, settings: ConsoleSettings) -> ConsoleSettings:
        if self._bundled is not None and self._bundled[1].encrypt_type != settings.encrypt_type:
            # the bundled merchant decrypts with the seller's choice (§2.7, U20): restart it
            self._bundled[0].close()
            self._bundled = None
        if self._bundled is None:
            # the reference merchant every command falls back on, kept running until close()
            stack = ExitStack()
            started = open_target(Settings(encrypt_type=settings.encrypt_type))
            self._bundled = stack, stack.enter_context(started)
        bundled = self._bundled[1]
        return replace(
            settings,
            url=bundled.url,
            sync_url=None,
            access_key=bundled.access_key,
            sync_key=bundled.sync_key,
            rsa_public_key=bundled.rsa_public_key,
            bundled=True,
        )

    def delivery_urls(self) -> tuple[str, ...]:
        """The URLs this server holds keys for: it sends stored deliveries to these only."""
        settings = self.settings
        urls = [settings.url] if settings.url and settings.access_key else []
        if settings.notification_url and settings.notification_token:
            urls.append(settings.notification_url)
        return tuple(urls)

    def target(self) -> Target:
        """The configured merchant as a transport target; NotConfigured if it has no URL or key."""
        settings = self.settings
        if not settings.url:
            raise NotConfigured("no target configured: set the merchant's URL and keys first")
        if not settings.access_key:
            raise NotConfigured("the target has no access key: set it first")
        return build_target(settings, learned_secrets=self._learned_secrets, clock=self.clock)

    def run_target(self) -> Target:
        """:meth:`target` for a verify run or a scenario played from the server: on a clock of its
        own, as ``koosim verify``'s (×3600 unless ``--time-scale`` says otherwise; a frozen one
        jumps at each wait), starting at the marketplace's current instant. A run never sleeps
        through real marketplace time (V1's 3-minute resend gaps) nor blocks on a frozen clock."""
        return replace(self.target(), clock=self.settings.clock(start=self.clock.now()))

    # --- background runs ---------------------------------------------------------------------

    def track(self, run_id: str, thread: threading.Thread) -> None:
        with self._lock:
            self._runs = {key: t for key, t in self._runs.items() if t.is_alive()}
            self._runs[run_id] = thread

    def wait_for_runs(self, timeout: float) -> bool:
        """Wait for the background runs to end (tests, shutdown); True when they all did."""
        with self._lock:
            threads = list(self._runs.values())
        for thread in threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in threads)

    def on_close(self, context: AbstractContextManager[Any]) -> None:
        """Enter ``context`` now and leave it in :meth:`close`."""
        self._closing.enter_context(context)

    def close(self) -> None:
        """Stop the delivery scheduler, finish the scenario sessions and stop the bundled
        reference merchant, if any."""
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            scheduler.stop()
        self._closing.close()
        for session in list(self.plays.values()):
            session.finish()
        with self._lock:
            bundled, self._bundled = self._bundled, None
        if bundled is not None:
            bundled[0].close()
