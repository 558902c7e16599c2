"""Where the target and its keys come from: command-line flags, then ``KOOSIM_*`` variables,
then ``koosim.toml`` in the working directory. Keys never need to be on the command line.

One validator (:data:`VALIDATORS`) checks every setting's value, whoever supplies it: the
command line, the environment, koosim.toml (:func:`load_settings`) or the console and the JSON
API of ``koosim serve`` (:meth:`simulator.server.state.MarketState.configure`).

:func:`build_target` is the one place a :class:`~simulator.transport.Target` is made from
settings; :func:`open_target` yields it, starting the reference merchant in-process on a free
port when no URL is given (every command works out of the box), and :func:`probe` tells an
unreachable address before the first call.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from simulator.clock import DEFAULT_TIME_SCALE, Clock, FrozenClock, RealClock, ScaledClock, parse_duration
from simulator.delivery import MAX_POLICY_RESENDS, DeliveryOverride
from simulator.errors import ConfigError, TargetUnreachable, TimeBudget
from simulator.protocol import EncryptType, load_rsa_public_key
from simulator.protocol.profiles import (
    DEFAULT_PROFILE,
    Profile,
    parse_billing,
    parse_license_call,
    parse_optional,
    parse_product,
)
from simulator.redaction import secret_problem
from simulator.transport import DEFAULT_ENCRYPT_TYPE, DEFAULT_TIMEOUT, ENCRYPT_TYPES, Target

CONFIG_FILE = "koosim.toml"
PROTOCOLS = ("v2", "v1")

# setting -> environment variable; the same names, lower-case, are the keys of koosim.toml
SETTINGS = {
    "url": "KOOSIM_URL",
    "protocol": "KOOSIM_PROTOCOL",
    "access_key": "KOOSIM_ACCESS_KEY",
    "sync_url": "KOOSIM_SYNC_URL",
    "sync_key": "KOOSIM_SYNC_KEY",
    "rsa_public_key": "KOOSIM_RSA_PUBLIC_KEY",
    "timeout": "KOOSIM_TIMEOUT",
    "encrypt_type": "KOOSIM_ENCRYPT_TYPE",
    "max_time": "KOOSIM_MAX_TIME",
    # --- the marketplace clock and delivery policies (issue 15; docs/protocol.md §10) ---
    "time_scale": "KOOSIM_TIME_SCALE",
    "delivery_resends": "KOOSIM_DELIVERY_RESENDS",
    "delivery_interval": "KOOSIM_DELIVERY_INTERVAL",
    "resends": "KOOSIM_RESENDS",  # deprecated: delivery_resends
    "backoff": "KOOSIM_BACKOFF",  # deprecated: delivery_interval
    # ---
    "product": "KOOSIM_PRODUCT",
    "billing": "KOOSIM_BILLING",
    "optional": "KOOSIM_OPTIONAL",
    "license_call": "KOOSIM_LICENSE_CALL",
    "market_port": "KOOSIM_MARKET_PORT",
    "market_ak": "KOOSIM_MARKET_AK",
    "market_sk": "KOOSIM_MARKET_SK",
    "market_tls": "KOOSIM_MARKET_TLS",
}
BOOLEAN_SETTINGS = frozenset({"optional", "market_tls"})
PROFILE_SETTINGS = ("product", "billing", "optional", "license_call")
"""The product profile (docs/protocol.md §1.2): which interfaces the merchant must implement."""
NUMERIC_SETTINGS: dict[str, tuple[type, ...]] = {
    "timeout": (int, float),
    "max_time": (int, float),
    "resends": (int,),
    "backoff": (int, float),
    "market_port": (int,),
    "delivery_resends": (int,),
    "time_scale": (int, float, str),
}

MAX_TIMEOUT = 300.0
DEFAULT_MAX_TIME = 600.0
"""The whole-run time budget of verify, play and explore: generous, yet a merchant that never
answers costs ten minutes, not every call's deadline over and over."""
MAX_MAX_TIME = 24 * 3600.0


# --- the one validator: each takes what a user gave and returns the value, or raises ValueError --


def _seconds(value: object, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of seconds")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of seconds") from None


def parse_timeout(value: object) -> float:
    """A per-call deadline in seconds: a finite number in (0, 300]."""
    seconds = _seconds(value, "timeout")
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT:
        raise ValueError(f"timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds, not {value!r}")
    return seconds


def parse_max_time(value: object) -> float:
    """A whole-run time budget in seconds: a finite number in (0, 1 day]."""
    seconds = _seconds(value, "max_time")
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_MAX_TIME:
        raise ValueError(f"max_time must be more than 0 and at most {MAX_MAX_TIME:g} seconds, not {value!r}")
    return seconds


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a merchant's address, or None when it can."""
    if not url.isprintable() or any(char.isspace() for char in url):  # ESC, CR, bidi overrides, ...
        return "the URL holds control, invisible or space characters: it would be sent and shown as it is"
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "http://[::1": an unclosed IPv6 address
        return f"{url!r} is not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL with a host"
    try:
        parts.port  # noqa: B018 - raises for a port out of range or not a number
    except ValueError:
        return f"{url!r} has an invalid port"
    return None


MAX_KEY_FILE_BYTES = 64 * 1024
"""A PEM public key is under 1 KB; /dev/zero must not be read to the end."""


def _read_key_file(path: Path) -> bytes:
    """A key file's bytes: a regular file (a FIFO would block, a device never end) under the cap."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = file.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_KEY_FILE_BYTES // 1024} KB")
    return data


def parse_url(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if (problem := url_problem(value)) is not None:
        raise ValueError(problem)
    return value


def parse_protocol(value: object) -> str:
    if value not in PROTOCOLS:
        raise ValueError(f"protocol must be {' or '.join(PROTOCOLS)}, not {value!r}")
    return str(value)


def parse_rsa_public_key(value: object) -> bytes:
    """PEM text or bytes of an RSA public key (an EC key, say, would fail every applicationSync)."""
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        pem = value.encode("ascii") if isinstance(value, str) else value
        if not isinstance(pem, bytes):
            raise TypeError("a PEM string")
        load_rsa_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"is not a PEM RSA public key ({exc})") from None
    return pem


# --- the marketplace clock and delivery policies (issue 15) -----------------------------------

MAX_TIME_SCALE = 1_000_000.0
FROZEN = "frozen"
"""``--time-scale frozen``: marketplace time moves only when advanced (docs/protocol.md §10)."""
DEPRECATED = {
    "resends": "delivery_resends",
    "backoff": "delivery_interval",
}
"""Old setting -> the one that replaced it (KOOSIM_RESENDS/KOOSIM_BACKOFF, issue 15)."""


def parse_time_scale(value: object) -> float | str:
    """``frozen``, ``real`` (= 1), or how many times faster than the wall marketplace time runs."""
    if isinstance(value, str) and value.strip().lower() in (FROZEN, "real"):
        return FROZEN if value.strip().lower() == FROZEN else 1.0
    if isinstance(value, bool):
        raise ValueError(f"time_scale must be a number, real or frozen, not {value!r}")
    try:
        scale = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(
            f"time_scale must be a number > 0 (3600: an hour per second), real or frozen, not {value!r}"
        ) from None
    if not (math.isfinite(scale) and 0 < scale <= MAX_TIME_SCALE):
        raise ValueError(f"time_scale must be more than 0 and at most {MAX_TIME_SCALE:g}, not {value!r}")
    return scale


def parse_resends(value: object) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"a whole number of resends, not {value!r}")
    try:
        resends = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"a whole number of resends, not {value!r}") from None
    if not 0 <= resends <= MAX_POLICY_RESENDS:
        raise ValueError(f"resends must be between 0 and {MAX_POLICY_RESENDS}, not {resends}")
    return resends


def parse_interval(value: object) -> timedelta:
    """The first gap between deliveries: a duration (``90s``, ``3m``, ``1h``) of marketplace time."""
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ValueError("delivery_interval must be longer than zero")
        return value
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"delivery_interval must be a duration such as 90s, 3m or 1h, not {value!r}")


def parse_backoff(value: object) -> timedelta:
    """The deprecated KOOSIM_BACKOFF: seconds before the first resend (now delivery_interval)."""
    seconds = _seconds(value, "backoff")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"backoff must be a number of seconds >= 0, not {value!r}")
    return timedelta(seconds=seconds)


def parse_encrypt_type(value: object) -> str:
    """The seller's encryption choice: ``1`` (AES-256) or ``2`` (AES-128) (docs/protocol.md §2.7, U20)."""
    text = str(value).strip()
    if text not in ENCRYPT_TYPES:
        raise ValueError(f"encrypt_type must be 1 (AES-256) or 2 (AES-128), not {value!r}")
    return text


def parse_key(value: object) -> str:
    """A shared key: long enough that redacting it from every report garbles nothing else."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if (problem := secret_problem(value)) is not None:
        raise ValueError(problem)
    return value


def parse_market_port(value: object) -> int:
    """The port of the marketplace open API a command serves: 0 (a free port) to 65535."""
    if isinstance(value, bool):
        raise ValueError("market_port must be a port number, 0 to 65535")
    try:
        port = int(str(value).strip())
    except ValueError:
        raise ValueError(f"market_port must be a port number, 0 to 65535, not {value!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"market_port must be 0 (a free port) to 65535, not {port}")
    return port


def parse_market_ak(value: object) -> str:
    """The AK a merchant signs its open-API calls with (protocol.md §2.5): a key, and printable
    ASCII without a space or a comma, as the ``Authorization`` header carries it."""
    key = parse_key(value)
    if any(not "\x21" <= char <= "\x7e" or char == "," for char in key):
        raise ValueError("market_ak must be printable ASCII without spaces or commas")
    return key


def parse_market_tls(value: object) -> bool:
    try:
        return parse_optional(value)
    except ValueError:
        raise ValueError(f"market_tls must be true or false, not {value!r}") from None


VALIDATORS: dict[str, Callable[[object], Any]] = {
    "access_key": parse_key,
    "sync_key": parse_key,
    "url": parse_url,
    "sync_url": parse_url,
    "notification_url": parse_url,
    "protocol": parse_protocol,
    "timeout": parse_timeout,
    "encrypt_type": parse_encrypt_type,
    "max_time": parse_max_time,
    "rsa_public_key": parse_rsa_public_key,
    "time_scale": parse_time_scale,
    "delivery_resends": parse_resends,
    "delivery_interval": parse_interval,
    "resends": parse_resends,
    "backoff": parse_backoff,
    "product": parse_product,
    "billing": parse_billing,
    "optional": parse_optional,
    "license_call": parse_license_call,
    "market_port": parse_market_port,
    "market_ak": parse_market_ak,
    "market_sk": parse_key,
    "market_tls": parse_market_tls,
}


def validate(name: str, value: object) -> Any:
    """``value`` as setting ``name`` holds it; ValueError saying what is wrong (unnamed keys pass)."""
    validator = VALIDATORS.get(name)
    return value if validator is None else validator(value)


def named(name: str, problem: str) -> str:
    """A validator's message with the setting's name in front, once."""
    if problem.startswith(name):
        return problem
    return f"{name} {problem}" if problem.startswith("is ") else f"{name}: {problem}"


# --- resolving ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    url: str | None = None
    protocol: str = PROTOCOLS[0]
    access_key: str | None = None
    sync_url: str | None = None
    sync_key: str | None = None
    rsa_public_key: bytes | None = None
    timeout: float = DEFAULT_TIMEOUT
    encrypt_type: str = DEFAULT_ENCRYPT_TYPE
    """The seller's encryption choice for v1 e-mail/mobile values: 1 AES-256, 2 AES-128 (U20)."""
    max_time: float = DEFAULT_MAX_TIME
    """The whole-run time budget of verify, play and explore, in seconds."""
    profile: Profile = DEFAULT_PROFILE
    """The product profile (product / billing / optional / license_call, §1.2, A41): which
    interfaces are exercised."""
    market_port: int = 0
    """Where the marketplace open API of a command listens on 127.0.0.1; 0: a free port."""
    market_ak: str | None = None
    market_sk: str | None = None
    """The AK/SK a merchant signs its open-API calls with (protocol.md §2.5); without them every
    call is refused with APIGW.0303."""
    market_tls: bool = False
    """Serve the open API over HTTPS with a certificate from koosim's own CA
    (``.koosim/market-ca/ca.pem``), for a merchant that validates certificates strictly (§8.1)."""
    # --- the marketplace clock and delivery policies (issue 15) ---
    time_scale: float | str | None = None
    """``--time-scale``: a number (×scale), ``frozen``, or None for the command's default."""
    delivery: DeliveryOverride | None = None
    """The user's change to every delivery policy (delivery_resends / delivery_interval), or None:
    the published schedules (docs/protocol.md §10.1). Read here once, passed down."""
    deprecations: tuple[str, ...] = ()
    """One line per deprecated setting used (KOOSIM_RESENDS, KOOSIM_BACKOFF), for the command to print."""

    def clock(self, *, live: bool = False, start: datetime | None = None) -> Clock:
        """The one place a marketplace clock is built from settings.

        ``live`` is ``serve``: real time unless ``time_scale`` says otherwise, and a frozen clock
        waits until someone advances it (console, JSON API). Otherwise (verify, play, explore,
        load): ×:data:`DEFAULT_TIME_SCALE` by default, and a frozen clock is advanced by each wait
        (and by scenario ``advance`` steps) — a discrete-event run that never sleeps.
        """
        scale = self.time_scale if self.time_scale is not None else (1.0 if live else DEFAULT_TIME_SCALE)
        if scale == FROZEN:
            return FrozenClock(start or datetime.now(UTC), waits="block" if live else "jump")
        assert isinstance(scale, float)
        if scale == 1.0:
            return RealClock()
        return ScaledClock(scale, start=start)

    # ---


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    table = data.get("koosim", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [koosim] must be a table of settings")
    unknown = sorted(set(table) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    for name, value in table.items():
        if name in BOOLEAN_SETTINGS:
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: {name} must be true or false, not {value!r}")
            continue
        expected = NUMERIC_SETTINGS.get(name, str)
        if isinstance(value, bool) or not isinstance(value, expected):
            kind = "a number" if name in NUMERIC_SETTINGS else "a string"
            raise ConfigError(f"{path}: {name} must be {kind}, not {value!r}")
    if "rsa_public_key" in table:  # a relative path in the file is relative to the file
        table["rsa_public_key"] = str(path.parent / table["rsa_public_key"])
    return table


def load_settings(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Settings:
    """Resolve every setting: a flag wins over the environment, which wins over koosim.toml."""
    environ = os.environ if environ is None else environ
    config_path = (cwd or Path.cwd()) / CONFIG_FILE
    from_file = _read_file(config_path)
    values: dict[str, Any] = {}
    for name, variable in SETTINGS.items():
        if flags.get(name) is not None:
            raw, source = flags[name], f"--{name.replace('_', '-')}"
        elif environ.get(variable):
            raw, source = environ[variable], variable
        elif from_file.get(name) is not None:
            raw, source = from_file[name], f"{config_path} ({name})"
        else:
            continue
        if name == "rsa_public_key":  # the setting names a file; the validator judges its content
            path = raw
            try:
                raw = _read_key_file(Path(path))
            except OSError as exc:
                raise ConfigError(f"{source}: cannot read {path}: {exc.strerror}") from exc
            source = f"{source}: {path}"
        try:
            values[name] = validate(name, raw)
        except ValueError as exc:
            joiner = " " if str(exc).startswith("is ") else ": "
            raise ConfigError(f"{source}{joiner}{exc}") from None
    delivery, deprecations = _delivery_override(values)
    chosen = {name: values.pop(name) for name in PROFILE_SETTINGS if name in values}
    profile = replace(DEFAULT_PROFILE, **chosen)
    return Settings(**values, profile=profile, delivery=delivery, deprecations=deprecations)


def _delivery_override(values: dict[str, Any]) -> tuple[DeliveryOverride | None, tuple[str, ...]]:
    """Pop the delivery settings (and the deprecated ones, which the new names win over)."""
    deprecations = []
    for old, new in DEPRECATED.items():
        if old in values:
            value = values.pop(old)
            deprecations.append(
                f"{SETTINGS[old]} ({old} in {CONFIG_FILE}) is deprecated: use {SETTINGS[new]} ({new}); "
                + (
                    "it sets the resends of every delivery policy"
                    if old == "resends"
                    else "it sets the first gap between deliveries, in marketplace time"
                )
            )
            values.setdefault(new, value)
    resends, interval = values.pop("delivery_resends", None), values.pop("delivery_interval", None)
    if resends is None and interval is None:
        return None, tuple(deprecations)
    try:
        return DeliveryOverride(resends=resends, first_gap=interval), tuple(deprecations)
    except ValueError as exc:
        raise ConfigError(f"{SETTINGS['delivery_resends']}/{SETTINGS['delivery_interval']}: {exc}") from None


# --- the target -----------------------------------------------------------------------------------


def build_target(settings: Settings, *, budget: TimeBudget | None = None, **overrides: Any) -> Target:
    """The one place a :class:`Target` is made from settings; ``overrides`` replace their fields
    (the bundled merchant's URL and keys, a load worker's demo key)."""
    fields: dict[str, Any] = {
        "url": settings.url,
        "access_key": settings.access_key,
        "protocol": settings.protocol,
        "sync_url": settings.sync_url,
        "sync_key": settings.sync_key,
        "rsa_public_key": settings.rsa_public_key,
        "timeout": settings.timeout,
        "encrypt_type": settings.encrypt_type,
        "profile": settings.profile,
        "budget": budget,
        **overrides,
    }
    if "clock" not in fields:
        fields["clock"] = settings.clock()
    return Target(**fields)


def remote_target(settings: Settings, *, budget: TimeBudget | None = None) -> Target:
    """The merchant ``settings.url`` names, with its keys; ConfigError without an access key."""
    if not settings.url:
        raise ConfigError("no target URL: pass --url, set KOOSIM_URL or url in koosim.toml")
    if not settings.access_key:
        raise ConfigError(
            "no access key for the target: set KOOSIM_ACCESS_KEY or access_key in koosim.toml"
            + _demo_key_hint(settings.url)
        )
    return build_target(settings, budget=budget)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def _demo_key_hint(url: str) -> str:
    """On a local URL, most likely ``koosim merchant``: the export line of its public demo keys."""
    if urlsplit(url).hostname not in LOOPBACK_HOSTS:
        return ""
    from simulator.reference import DEMO_ACCESS_KEY, DEMO_SYNC_KEY

    return (
        f" (for `koosim merchant` and its public demo keys: export KOOSIM_ACCESS_KEY={DEMO_ACCESS_KEY} "
        f"KOOSIM_SYNC_KEY={DEMO_SYNC_KEY})"
    )


@contextmanager
def open_target(settings: Settings, *, budget: TimeBudget | None = None) -> Iterator[Target]:
    """Yield the target the settings name, or a freshly started reference merchant."""
    if settings.url is not None:
        yield remote_target(settings, budget=budget)
        return
    # imported here: a run against a merchant's URL needs neither Flask nor the reference merchant
    from simulator.reference import PRODUCE_PATH, MerchantConfig, create_app, public_key_pem
    from simulator.serving import BackgroundServer

    config = MerchantConfig(encrypt_type=EncryptType(settings.encrypt_type))  # the seller's choice (U20)
    for name in ("access_key", "sync_key"):
        if getattr(settings, name):
            setattr(config, name, getattr(settings, name))
    with BackgroundServer(create_app(config)) as server:
        yield build_target(
            settings,
            budget=budget,
            url=server.base_url + PRODUCE_PATH,
            access_key=config.access_key,
            sync_url=None,
            sync_key=config.sync_key,
            rsa_public_key=public_key_pem(config.rsa_private_key),
        )


@contextmanager
def reach_target(settings: Settings, *, budget: TimeBudget | None = None) -> Iterator[Target]:
    """The preamble of everything that talks to a merchant: open the target, probe it, yield it.

    Raises :class:`ConfigError` (no key) or :class:`TargetUnreachable`; the command line, the
    pytest plugin and the load engine each turn those into their one-line message once.
    """
    with open_target(settings, budget=budget) as target:
        probe(target)
        yield target


def probe(target: Target) -> None:
    """Raise :class:`TargetUnreachable` unless a TCP connection to the target can be opened."""
    parts = urlsplit(target.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetUnreachable(f"{target.url!r} is not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=target.connect_timeout):
            pass
    except OSError as exc:
        raise TargetUnreachable(f"cannot connect to {parts.hostname}:{port}: {exc.strerror or exc}") from exc
