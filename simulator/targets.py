"""Turn settings into a :class:`~simulator.transport.Target`, starting the reference merchant
in-process on a free port when no URL is given: every command works out of the box.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from simulator.config import ConfigError, Settings
from simulator.transport import Target


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
