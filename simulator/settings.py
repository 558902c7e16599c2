"""Where the target and its keys come from: command-line flags, then ``KOOSIM_*`` variables,
then ``koosim.toml`` in the working directory. Keys never need to be on the command line.

:func:`open_target` turns settings into a :class:`~simulator.transport.Target`, starting the
reference merchant in-process on a free port when no URL is given: every command works out of
the box.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from simulator.protocol import load_rsa_public_key
from simulator.transport import DEFAULT_TIMEOUT, Target

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
}
NUMERIC_SETTINGS: dict[str, tuple[type, ...]] = {"timeout": (int, float)}


MAX_TIMEOUT = 300.0


def parse_timeout(value: object) -> float:
    """A per-call deadline in seconds: a finite number in (0, 300]; ValueError says what is wrong."""
    if isinstance(value, bool):
        raise ValueError("timeout must be a number of seconds")
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError("timeout must be a number of seconds") from None
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT:
        raise ValueError(f"timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds, not {value!r}")
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


class ConfigError(Exception):
    """A setting is missing or malformed; the message names where it came from."""


@dataclass(frozen=True)
class Settings:
    url: str | None = None
    protocol: str = PROTOCOLS[0]
    access_key: str | None = None
    sync_url: str | None = None
    sync_key: str | None = None
    rsa_public_key: bytes | None = None
    timeout: float = DEFAULT_TIMEOUT


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
    resolved: dict[str, tuple[Any, str]] = {}
    for name, variable in SETTINGS.items():
        if flags.get(name) is not None:
            resolved[name] = (flags[name], f"--{name.replace('_', '-')}")
        elif environ.get(variable):
            resolved[name] = (environ[variable], variable)
        elif from_file.get(name) is not None:
            resolved[name] = (from_file[name], f"{config_path} ({name})")

    def value(name: str) -> Any:
        return resolved[name][0] if name in resolved else None

    protocol = str(value("protocol") or "v2")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{resolved['protocol'][1]}: protocol must be v2 or v1, not {protocol!r}")
    try:
        timeout = DEFAULT_TIMEOUT if value("timeout") is None else parse_timeout(value("timeout"))
    except ValueError as exc:
        raise ConfigError(f"{resolved['timeout'][1]}: {exc}") from None
    for name in ("url", "sync_url"):
        if value(name) is not None and (problem := url_problem(value(name))) is not None:
            raise ConfigError(f"{resolved[name][1]}: {problem}")
    rsa_path = value("rsa_public_key")
    rsa_public_key = None
    if rsa_path:
        try:
            rsa_public_key = _read_key_file(Path(rsa_path))
            load_rsa_public_key(rsa_public_key)
        except OSError as exc:
            raise ConfigError(
                f"{resolved['rsa_public_key'][1]}: cannot read {rsa_path}: {exc.strerror}"
            ) from exc
        except ValueError as exc:
            raise ConfigError(
                f"{resolved['rsa_public_key'][1]}: {rsa_path} is not a PEM RSA public key ({exc})"
            ) from None
    return Settings(
        url=value("url"),
        protocol=protocol,
        access_key=value("access_key"),
        sync_url=value("sync_url"),
        sync_key=value("sync_key"),
        rsa_public_key=rsa_public_key,
        timeout=timeout,
    )


def remote_target(settings: Settings) -> Target:
    """The merchant ``settings.url`` names, with its keys (the caller has checked both are set)."""
    assert settings.url is not None and settings.access_key is not None
    return Target(
        url=settings.url,
        access_key=settings.access_key,
        protocol=settings.protocol,
        sync_url=settings.sync_url,
        sync_key=settings.sync_key,
        rsa_public_key=settings.rsa_public_key,
        timeout=settings.timeout,
    )


@contextmanager
def open_target(settings: Settings) -> Iterator[Target]:
    """Yield the target the settings name, or a freshly started reference merchant."""
    if settings.url is not None:
        if not settings.access_key:
            raise ConfigError(
                "no access key for the target: set KOOSIM_ACCESS_KEY or access_key in koosim.toml"
            )
        yield remote_target(settings)
        return
    # imported here: a run against a merchant's URL needs neither Flask nor the reference merchant
    from simulator.reference import PRODUCE_PATH, MerchantConfig, create_app, public_key_pem
    from simulator.serving import BackgroundServer

    config = MerchantConfig()
    for name in ("access_key", "sync_key"):
        if getattr(settings, name):
            setattr(config, name, getattr(settings, name))
    with BackgroundServer(create_app(config)) as server:
        yield Target(
            url=server.base_url + PRODUCE_PATH,
            access_key=config.access_key,
            protocol=settings.protocol,
            sync_key=config.sync_key,
            rsa_public_key=public_key_pem(config.rsa_private_key),
            timeout=settings.timeout,
        )
