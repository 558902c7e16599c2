"""What ``koosim serve``'s delivery scheduler costs (issue 15 item 3): one idle pass over many stored
deliveries (what it does every 0.2 s), and claiming, sending, judging and recording due attempts
against a local merchant. Absolute times on this machine, printed; nothing asserts them.

    python benchmarks/deliveries.py            # 10 000 stored deliveries, 500 due attempts
    python benchmarks/deliveries.py --stored 100000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask import Flask

from simulator.clock import FrozenClock
from simulator.server import create_app, market_state
from simulator.server.deliveries import run_due
from simulator.serving import BackgroundServer
from simulator.store import Store

START = datetime(2026, 11, 30, tzinfo=UTC)


def merchant() -> Flask:
    app = Flask("bench-merchant")

    @app.route("/produceAPI", methods=["GET", "POST"])
    def accept() -> dict[str, object]:
        return {"resultCode": "000000", "instanceId": "i-1", "appInfo": {"frontEndUrl": "https://m.example"}}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=10_000, help="deliveries in the history")
    parser.add_argument("--due", type=int, default=500, help="attempts to send")
    args = parser.parse_args()
    with BackgroundServer(merchant()) as server, tempfile.TemporaryDirectory() as folder:
        url = server.base_url + "/produceAPI"
        store = Store(Path(folder) / "koosim.db")
        clock = FrozenClock(START, waits="block")
        market = market_state(create_app(store, clock=clock))
        market.configure({"url": url, "access_key": "bench-access-key-0001"})
        first = START.timestamp() + 3600
        with store.db.write() as db:
            db.executemany(
                "INSERT INTO deliveries (created_at, updated_at, kind, interface, protocol, activity, label,"
                " target_url, body, policy, state, first_due, next_due, attempts) VALUES"
                " (0, 0, 'call', 'produce', 'v2', 'newInstance', 'bench', ?, ?, 'v2 newInstance',"
                " 'pending', ?, ?, '[]')",
                [
                    (url, f'{{"activity":"newInstance","orderId":"o{n}"}}', first + n, first + n)
                    for n in range(args.stored)
                ],
            )
        passes = 50
        started = time.perf_counter()
        for _ in range(passes):
            run_due(market)
        idle = (time.perf_counter() - started) / passes
        print(f"{args.stored} stored deliveries, none due: one scheduler pass {idle * 1000:.2f} ms")
        clock.advance(timedelta(hours=1, seconds=args.due - 1))
        started, sent = time.perf_counter(), 0
        while sent < args.due and (batch := run_due(market)):
            sent += batch
        took = time.perf_counter() - started
        print(
            f"{sent} due attempts claimed, sent, judged and recorded: {took:.2f} s, "
            f"{took / max(sent, 1) * 1000:.1f} ms each"
        )
        market.close()


if __name__ == "__main__":
    main()
