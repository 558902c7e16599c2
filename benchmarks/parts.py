"""Where the per-exchange time goes: each part of koosim's work on one exchange, timed alone.

``bench.py`` measures the whole exchange against a bare loop; on a loaded machine its ratio moves
by ±0.3 between runs. This script sends 200 newInstance calls to the reference merchant (under
waitress, as ``bench.py`` does), keeps the exchanges and the secrets known after each, then times
each part offline, in-process, alternating the parts round by round:

- ``parse``: decoding one answer (``Exchange.response_json``, once per exchange);
- ``judge``: the per-exchange checks (``judge_exchange``), the answer already parsed;
- ``record``: ``exchange_record`` (the one redaction pass), with the secrets the run knew then;
- ``add_exchange``: ``record`` + JSON + the committed SQLite transaction;
- ``remember_order``: the marketplace's copy of the order (its fields redacted, one transaction);
- ``bare transaction``: one committed one-row SQLite transaction (the durability promise's floor).

    python benchmarks/parts.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bench

from simulator.checks import judge_exchange
from simulator.engine.record import exchange_record
from simulator.store import Store

CALLS = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="koosim-parts-") as tmp:
        workdir = Path(tmp)
        with bench.waitress_merchant(workdir) as target:
            sender = bench.ExchangeBench(target, workdir)
            sender.simulator(20)  # warm-up
            target.learned_secrets.clear()
            exchanges, known = [], []
            for _ in range(CALLS):
                exchanges.append(sender.transport.send(sender._fields(), label="newInstance"))
                known.append(target.secrets)
            sender.close()
        writer = Store(workdir / "parts.db").holding()
        writer.history.begin_run("parts", kind="bench", target={"url": target.url})
        floor = Store(workdir / "floor.db").holding()
        with floor.db.write() as db:
            db.execute("CREATE TABLE rows (id TEXT PRIMARY KEY)")
        batch = iter(range(1_000_000))

        def parse() -> None:
            for exchange in exchanges:
                copy = dataclasses.replace(exchange)
                copy.response_body = bytes(exchange.response_body)  # not the cached parse
                copy.response_json  # noqa: B018 - parse it

        def judge() -> None:
            for exchange in exchanges:
                judge_exchange(exchange, target, sender.judges)

        def record() -> None:
            for exchange, secrets in zip(exchanges, known, strict=True):
                exchange_record(exchange, tuple(secrets))

        def add_exchange() -> None:
            number = next(batch)
            for index, (exchange, secrets) in enumerate(zip(exchanges, known, strict=True)):
                copy = dataclasses.replace(exchange, id=f"{number}-{index}")
                writer.history.add_exchange("parts", copy, tuple(secrets))

        def remember_order() -> None:
            number = next(batch)
            for index, (exchange, secrets) in enumerate(zip(exchanges, known, strict=True)):
                fields = dict(exchange.fields, orderId=f"{number}-{index}")
                writer.marketplace.remember_order(fields, "instance", tuple(secrets))

        def bare_transaction() -> None:
            number = next(batch)
            for index in range(CALLS):
                with floor.db.write() as db:
                    db.execute("INSERT INTO rows VALUES (?)", (f"{number}-{index}",))

        parts: dict[str, Callable[[], None]] = {
            "parse": parse,
            "judge": judge,
            "record": record,
            "add_exchange": add_exchange,
            "remember_order": remember_order,
            "bare transaction": bare_transaction,
        }
        timings: dict[str, list[float]] = {name: [] for name in parts}
        for _ in range(rounds):
            for name, part in parts.items():
                gc.collect()
                started = time.perf_counter()
                part()
                timings[name].append((time.perf_counter() - started) / CALLS * 1e6)
        for name, values in timings.items():
            values.sort()
            print(f"{name:18} min {values[0]:7.1f}  median {values[len(values) // 2]:7.1f} µs per exchange")


if __name__ == "__main__":
    main()
