"""``koosim merchant``: the bundled reference merchant as a server of its own."""

from __future__ import annotations

from pathlib import Path

import click

from simulator.cli.common import EXIT_USAGE, check_listen_address, fail, make_console


def _url_host(host: str) -> str:
    """How a URL names the listening address: 0.0.0.0 is reached as 127.0.0.1, IPv6 in brackets."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@click.command()
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
    "--billing",
    type=click.Choice(["period", "one-time", "on-demand"]),
    default="period",
    show_default=True,
    help="The product's billing mode; on-demand (pay-per-use) reports usage in queryInstance answers.",
)
@click.option(
    "--write-public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the merchant's RSA public key here (for KOOSIM_RSA_PUBLIC_KEY).",
)
@click.option(
    "--market-url",
    metavar="URL",
    help="The marketplace's open-API base URL (koosim's, printed by verify/play/serve): newInstance "
    "then asks Querying an Order what was bought, and pay-per-use usage is pushed there. The AK/SK "
    "come from KOOSIM_MARKET_AK / KOOSIM_MARKET_SK.",
)
@click.option(
    "--async-provisioning",
    is_flag=True,
    help="Answer newInstance at once and report the instance on a later queryInstance (§4.1-c).",
)
def merchant(
    host: str,
    port: int,
    protocol: str,
    db: str,
    rsa_key: Path | None,
    billing: str,
    write_public_key: Path | None,
    market_url: str | None,
    async_provisioning: bool,
) -> None:
    """Run the bundled reference merchant, a model of a correct server.

    Keys come from KOOSIM_ACCESS_KEY and KOOSIM_SYNC_KEY; without them it uses the published
    demo keys, which are fine for a laptop and wrong for anything else. With --market-url it
    calls the marketplace back (docs/merchant-side.md).
    """
    import os

    from werkzeug.serving import make_server

    from simulator.reference import PRODUCE_PATH, MerchantConfig, create_app, public_key_pem
    from simulator.serving import serve_until_interrupted

    config = MerchantConfig(
        database=db,
        protocols=frozenset({"v1", "v2"} if protocol == "both" else {protocol}),
        async_provisioning=async_provisioning,
        billing=billing,
    )
    notes = []
    if market_url is not None:
        config.market_url = _market_url(market_url)
        config.market_ak = os.environ.get("KOOSIM_MARKET_AK", "")
        config.market_sk = os.environ.get("KOOSIM_MARKET_SK", "")
        if not (config.market_ak and config.market_sk):
            fail(
                "--market-url needs KOOSIM_MARKET_AK and KOOSIM_MARKET_SK (the open APIs' AK/SK)", EXIT_USAGE
            )
        notes.append(f"open APIs at {config.market_url} (AK/SK from KOOSIM_MARKET_AK / KOOSIM_MARKET_SK)")
    if async_provisioning:
        notes.append("provisioning asynchronously: a new instance is reported on a later queryInstance")
    exports = []
    for name, variable in (("access_key", "KOOSIM_ACCESS_KEY"), ("sync_key", "KOOSIM_SYNC_KEY")):
        if os.environ.get(variable):
            setattr(config, name, os.environ[variable])
            notes.append(f"{name.replace('_', ' ')} from {variable}")
        else:  # public demo values: printing them is what makes a second terminal work
            value = getattr(config, name)
            label = name.replace("_", " ")
            notes.append(f"{label}: the public demo key {value} (set {variable} for your own)")
            exports.append(f"{variable}={value}")
    try:
        if rsa_key is not None:
            config.rsa_private_key = rsa_key.read_bytes()
            public_key_pem(config.rsa_private_key)  # fail now, not on the first applicationSync
        if write_public_key is not None:
            write_public_key.write_bytes(public_key_pem(config.rsa_private_key))
            notes.append(f"RSA public key written to {write_public_key}")
        check_listen_address(host, port, "reference merchant")
        server = make_server(host, port, create_app(config), threaded=True)
    except (OSError, ValueError, TypeError) as exc:
        where = f" on {host}:{port}" if isinstance(exc, OSError) else ""
        fail(f"cannot start the reference merchant{where}: {_reason(exc)}", EXIT_USAGE)
    console = make_console()
    url = f"http://{_url_host(host)}:{server.port}{PRODUCE_PATH}"
    console.print(f"reference merchant: {url} ({protocol})", highlight=False, markup=False)
    for note in notes:
        console.print(f"  {note}", highlight=False, markup=False)
    if exports:
        console.print("  verify it from another terminal:", highlight=False)
        console.print(f"    export {' '.join(exports)}", highlight=False, markup=False)
    console.print(f"    koosim verify --url {url}", highlight=False, markup=False)
    console.print("  Ctrl+C stops it", highlight=False)
    serve_until_interrupted(server)


def _market_url(url: str) -> str:
    """The open-API base URL, checked: http(s)://host[:port][/path], no query, no credentials."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        fail(f"--market-url {url!r}: not a URL", EXIT_USAGE)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.username:
        fail(f"--market-url {url!r}: give http(s)://host[:port], without query or credentials", EXIT_USAGE)
    return url.rstrip("/")


def _reason(exc: BaseException) -> str:
    """An OSError's words without its errno prefix (``Address already in use``)."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
