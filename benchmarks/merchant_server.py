"""Serve the bundled reference merchant with waitress on 127.0.0.1 and an ephemeral port.

Run as ``python benchmarks/merchant_server.py PUBLIC_KEY_FILE``: it writes the merchant's RSA
public key to PUBLIC_KEY_FILE, prints ``http://127.0.0.1:PORT`` on one line once it listens, and
serves until killed. Keys come from KOOSIM_ACCESS_KEY / KOOSIM_SYNC_KEY.

A separate process, and a production WSGI server, so that neither the GIL of the benchmark nor
werkzeug's development server is what the numbers measure.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from waitress import create_server

from simulator.reference import MerchantConfig, create_app, public_key_pem

THREADS = 8
"""More than the 5 copies a check sends at once, so that none of them waits in waitress' queue."""


def main() -> None:
    config = MerchantConfig(
        access_key=os.environ["KOOSIM_ACCESS_KEY"], sync_key=os.environ["KOOSIM_SYNC_KEY"]
    )
    Path(sys.argv[1]).write_bytes(public_key_pem(config.rsa_private_key))
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth" is not news here
    server = create_server(create_app(config), host="127.0.0.1", port=0, threads=THREADS)
    print(f"http://127.0.0.1:{server.effective_port}", flush=True)
    server.run()


if __name__ == "__main__":
    main()
