"""``koosim merchant``: the bundled reference merchant as a server of its own."""

from __future__ import annotations

from pathlib import Path

import click

from simulator.cli.common import EXIT_USAGE, fail


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
    "--write-public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the merchant's RSA public key here (for KOOSIM_RSA_PUBLIC_KEY).",
)
def merchant(
    host: str, port: int, protocol: str, db: str, rsa_key: Path | None, write_public_key: Path | None
) -> None:
    """Run the bundled reference merchant, a model of a correct server.

    Keys come from KOOSIM_ACCESS_KEY and KOOSIM_SYNC_KEY; without them it uses the published
    demo keys, which are fine for a laptop and wrong for anything else.
    """
    import os

    from rich.console import Console
    from werkzeug.serving import make_server

    from simulator.reference import PRODUCE_PATH, MerchantConfig, create_app, public_key_pem
    from simulator.serving import serve_until_interrupted

    config = MerchantConfig(
        database=db,
        protocols=frozenset({"v1", "v2"} if protocol == "both" else {protocol}),
    )
    notes = []
    for name, variable in (("access_key", "KOOSIM_ACCESS_KEY"), ("sync_key", "KOOSIM_SYNC_KEY")):
        if os.environ.get(variable):
            setattr(config, name, os.environ[variable])
            notes.append(f"{name.replace('_', ' ')} from {variable}")
        else:
            notes.append(f"{name.replace('_', ' ')}: the published demo key (set {variable} for your own)")
    try:
        if rsa_key is not None:
            config.rsa_private_key = rsa_key.read_bytes()
            public_key_pem(config.rsa_private_key)  # fail now, not on the first applicationSync
        if write_public_key is not None:
            write_public_key.write_bytes(public_key_pem(config.rsa_private_key))
            notes.append(f"RSA public key written to {write_public_key}")
        server = make_server(host, port, create_app(config), threaded=True)
    except (OSError, ValueError, TypeError) as exc:
        fail(f"cannot start the reference merchant: {exc}", EXIT_USAGE)
    console = Console()
    console.print(
        f"reference merchant: http://{host}:{server.port}{PRODUCE_PATH} ({protocol})", highlight=False
    )
    for note in notes:
        console.print(f"  {note}", highlight=False)
    console.print("  Ctrl+C stops it", highlight=False)
    serve_until_interrupted(server)
