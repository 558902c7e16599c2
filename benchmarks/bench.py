"""koosim's own cost against the floor, as ratios measured in one run on one machine (issue 9).

Run it with ``tox -e bench`` (or ``python benchmarks/bench.py --output results.json``). It starts
the reference merchant under waitress in a separate process, then measures, each against a
baseline taken in the same run:

1. ``per-exchange``: sign, send through :class:`~simulator.transport.Transport`, judge with every
   per-exchange check (the contract checks) and record through
   :class:`~simulator.store.RunRecorder`, against a bare ``requests.Session`` loop sending the
   same kind of request, pre-signed.
2. ``verify``: the wall time of ``koosim verify --url …`` against the number of exchanges it
   sent times the bare per-call time, plus the start-up of ``python -c "import requests"``.
3. ``explore``: ``koosim explore``'s marginal call rate against the bare request rate.
4. ``start-up``: ``koosim --help`` against ``flask --help``.
5. ``growth``: the cost per exchange of a run whose every active check runs 1, 10 and 100 times,
   and the history at 10,000 exchanges: its size and the ``koosim runs`` query.

Absolute times on a shared machine are noise; only the ratios are compared with goals. Each
figure is a median over repeats, taken after a warm-up; A and B alternate so that a slow patch
of the machine hits both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from simulator.checks import catalog, judge_exchange
from simulator.engine.run import Run, run_checks
from simulator.model import OrderFactory, fresh_seed
from simulator.protocol import sign_v2
from simulator.store import RunRecorder, Store
from simulator.transport import Exchange, LearnedSecrets, Target, Transport, json_bytes, new_nonce, now_ms

HERE = Path(__file__).resolve().parent
ACCESS_KEY = "bench-access-key-4f1c9a7e"
SYNC_KEY = "bench-sync-key-8d2b6e0f"
JSON_HEADERS = {"Content-Type": "application/json;charset=UTF-8"}
BIN = Path(sys.executable).parent


@dataclass
class Sizes:
    """How much each measurement repeats; ``--quick`` shrinks everything for a smoke run."""

    batch: int = 200
    rounds: int = 7
    verify_runs: int = 5
    startup_runs: int = 11
    help_runs: int = 15
    explore_small: int = 10
    explore_big: int = 100
    explore_runs: int = 3
    growth: tuple[int, ...] = (1, 10, 100)
    growth_base_runs: int = 5
    history_exchanges: int = 10_000
    history_per_run: int = 100
    history_page: int = 20
    """Runs `koosim runs` lists: the baseline history holds just that many."""
    query_runs: int = 21


QUICK = Sizes(
    batch=40,
    rounds=3,
    verify_runs=2,
    startup_runs=3,
    help_runs=3,
    explore_small=5,
    explore_big=20,
    explore_runs=1,
    growth=(1, 3),
    growth_base_runs=2,
    history_exchanges=2_000,
    history_per_run=50,
    query_runs=5,
)


@dataclass
class Line:
    """One row of the table: a ratio, its goal, and the figures it came from."""

    name: str
    ratio: float
    goal: str
    met: bool | None
    what: str
    figures: dict[str, Any] = field(default_factory=dict)


def median(values: list[float]) -> float:
    return statistics.median(values)


def at_most(limit: float) -> Callable[[float], bool]:
    return lambda ratio: ratio <= limit


def at_least(limit: float) -> Callable[[float], bool]:
    return lambda ratio: ratio >= limit


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "nproc": usable,
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
    } | {name: version(name) for name in ("requests", "flask", "waitress", "jsonschema", "hypothesis")}


# --- the merchant ---------------------------------------------------------------------------------


@contextmanager
def waitress_merchant(workdir: Path) -> Iterator[Target]:
    """The reference merchant served by waitress in its own process; yields the target."""
    public_key = workdir / "merchant-public.pem"
    server = subprocess.Popen(
        [sys.executable, str(HERE / "merchant_server.py"), str(public_key)],
        stdout=subprocess.PIPE,
        env=koosim_env(),
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        if not base_url.startswith("http://"):
            raise SystemExit(f"the merchant did not start (exit {server.poll()})")
        yield Target(
            url=base_url + "/produceAPI",
            access_key=ACCESS_KEY,
            sync_key=SYNC_KEY,
            rsa_public_key=public_key.read_bytes(),
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


def koosim_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("KOOSIM_", "FLASK_"))}
    return env | {"KOOSIM_ACCESS_KEY": ACCESS_KEY, "KOOSIM_SYNC_KEY": SYNC_KEY} | extra


def timed_command(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall time of one command, and what it printed. Any exit but 0 is fatal: against the
    reference merchant every check passes, and a run that failed would time something else."""
    started = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout + done.stderr


# --- 1. one exchange ---------------------------------------------------------------------------


class ExchangeBench:
    """The simulator's path for one call against the bare floor, on the same merchant."""

    def __init__(self, target: Target, workdir: Path) -> None:
        self.target = target
        self.orders = OrderFactory(fresh_seed())
        self.session = requests.Session()
        self.judges = [check for check in catalog() if check.per_exchange]
        self.recorder = RunRecorder(Store(workdir / "per-exchange.db"), kind="bench")
        self.run = Run(target=target, seed=0)
        self.recorder.begin(self.run)
        self.transport = Transport(target, on_exchange=self.recorder.exchange)

    def close(self) -> None:
        self.session.close()
        self.transport.close()

    def _fields(self) -> dict[str, Any]:
        return self.orders.order().new_instance_fields(self.orders.business_id())

    def bare(self, count: int) -> float:
        """Seconds per call of a requests.Session loop over pre-signed newInstance calls."""
        signed = []
        for _ in range(count):
            fields, timestamp, nonce = self._fields(), str(now_ms()), new_nonce()
            query = {
                "signature": sign_v2(fields, self.target.access_key, timestamp, nonce),
                "timestamp": timestamp,
                "nonce": nonce,
            }
            signed.append((f"{self.target.url}?{urlencode(query)}", json_bytes(fields)))
        started = time.perf_counter()
        for url, body in signed:
            self.session.post(url, data=body, headers=JSON_HEADERS).content  # noqa: B018 - read it all
        return (time.perf_counter() - started) / count

    def simulator(self, count: int) -> float:
        """Seconds per call of sign + send + judge + record, as ``koosim verify`` does each call.

        Each batch starts with no learned secret, as a run does: the transport learns the appInfo
        password of every newInstance answer, and every later record is redacted of it.
        """
        self.target.learned_secrets.clear()
        calls = [self._fields() for _ in range(count)]
        started = time.perf_counter()
        for fields in calls:
            exchange = self.transport.send(fields, label="newInstance")
            self.run.exchanges.append(exchange)
            judge_exchange(exchange, self.target, self.judges)
        return (time.perf_counter() - started) / count


def measure_exchange(target: Target, workdir: Path, sizes: Sizes) -> tuple[Line, float]:
    bench = ExchangeBench(target, workdir)
    try:
        bench.bare(30), bench.simulator(30)  # warm-up: connections, validators, the store file
        bare, simulated, ratios = [], [], []
        for round_number in range(sizes.rounds):
            order = (bench.bare, bench.simulator) if round_number % 2 == 0 else (bench.simulator, bench.bare)
            timings = {function.__name__: function(sizes.batch) for function in order}
            bare.append(timings["bare"])
            simulated.append(timings["simulator"])
            ratios.append(timings["simulator"] / timings["bare"])
    finally:
        bench.close()
    ratio = median(ratios)
    line = Line(
        "1 per exchange",
        ratio,
        "<= 1.15",
        at_most(1.15)(ratio),
        f"simulator {median(simulated) * 1e3:.2f} ms vs bare requests {median(bare) * 1e3:.2f} ms per call",
        {
            "simulator_s": median(simulated),
            "bare_s": median(bare),
            "round_ratios": ratios,
            "calls_per_round": sizes.batch,
        },
    )
    return line, median(bare)


# --- 2. koosim verify --------------------------------------------------------------------------


def measure_startup(workdir: Path, sizes: Sizes) -> float:
    """The floor of any Python program that sends HTTP: the interpreter and requests, imported."""
    args = [sys.executable, "-c", "import requests"]
    timed_command(args, workdir)
    return median([timed_command(args, workdir)[0] for _ in range(sizes.startup_runs)])


def designed_waits(target: Target, workdir: Path) -> float:
    """Seconds the checks sleep on purpose in one run, measured in-process: the delivery policy
    ``idempotency.converges-after-failures`` plays on the ×3600 marketplace clock (V2's 1 s + 2 s
    of marketplace time: under a millisecond of wall time). A bare client that
    plays the same protocol waits as long, so the floor of ``koosim verify`` includes it."""
    slept: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    time.sleep = sleep
    try:
        verify_in_process(target, workdir / "waits.db", 1)
    finally:
        time.sleep = real_sleep
    return sum(slept)


def measure_verify(target: Target, workdir: Path, sizes: Sizes, bare_call: float, startup: float) -> Line:
    env = koosim_env(KOOSIM_RSA_PUBLIC_KEY=str(workdir / "merchant-public.pem"))
    db = workdir / "verify.db"
    args = [str(BIN / "koosim"), "verify", "--url", target.url, "--db", str(db)]
    timed_command(args, workdir, env)  # warm-up: the file system cache, the .pyc files
    walls = [timed_command(args, workdir, env)[0] for _ in range(sizes.verify_runs)]
    runs = Store(db).history.runs(limit=sizes.verify_runs)
    exchanges = median([run["exchange_count"] for run in runs])
    waits = designed_waits(target, workdir)
    floor = exchanges * bare_call + startup + waits
    ratio = median(walls) / floor
    return Line(
        "2 koosim verify",
        ratio,
        "<= 1.5",
        at_most(1.5)(ratio),
        f"{median(walls):.2f} s for {exchanges:g} exchanges vs {exchanges:g} x {bare_call * 1e3:.2f} ms"
        f" + {startup:.2f} s start-up + {waits:.2f} s of designed waits"
        f" ({median(walls) / (floor - waits):.2f} without the waits)",
        {
            "wall_s": median(walls),
            "walls_s": walls,
            "exchanges": exchanges,
            "startup_s": startup,
            "designed_waits_s": waits,
            "floor_s": floor,
            "ratio_without_waits": median(walls) / (floor - waits),
        },
    )


# --- 3. koosim explore -------------------------------------------------------------------------

_CALLS = re.compile(r"\((\d+) calls")


def measure_explore(target: Target, workdir: Path, sizes: Sizes, bare_call: float) -> Line:
    """The marginal rate between a short and a long exploration: start-up cancels out."""
    env = koosim_env()

    def explore(examples: int) -> tuple[float, int]:
        cwd = Path(tempfile.mkdtemp(dir=workdir))  # no example database carried over
        args = [str(BIN / "koosim"), "explore", "--url", target.url, "--max-examples", str(examples)]
        elapsed, output = timed_command([*args, "--seed", "1"], cwd, env)
        found = _CALLS.findall(output)
        if not found:
            raise SystemExit(f"koosim explore printed no call count:\n{output}")
        return elapsed, int(found[-1])

    explore(sizes.explore_small)  # warm-up
    small, big = [], []
    for _ in range(sizes.explore_runs):
        small.append(explore(sizes.explore_small))
        big.append(explore(sizes.explore_big))
    calls = median([c for _, c in big]) - median([c for _, c in small])
    seconds = median([t for t, _ in big]) - median([t for t, _ in small])
    rate = calls / seconds
    ratio = rate * bare_call
    return Line(
        "3 koosim explore",
        ratio,
        ">= 0.75",
        at_least(0.75)(ratio),
        f"{rate:.0f} calls/s vs bare {1 / bare_call:.0f} requests/s",
        {"calls_per_s": rate, "bare_per_s": 1 / bare_call, "small": small, "big": big},
    )


# --- 4. start-up -----------------------------------------------------------------------------


def measure_help(workdir: Path, sizes: Sizes) -> Line:
    """Both console scripts, alternating; flask runs in an empty folder, so it finds no app."""
    env = koosim_env()
    koosim, flask = [str(BIN / "koosim"), "--help"], [str(BIN / "flask"), "--help"]
    for args in (koosim, flask):
        timed_command(args, workdir, env)
    ours, theirs = [], []
    for _ in range(sizes.help_runs):
        ours.append(timed_command(koosim, workdir, env)[0])
        theirs.append(timed_command(flask, workdir, env)[0])
    ratio = median(ours) / median(theirs)
    return Line(
        "4 koosim --help",
        ratio,
        "<= 0.75",
        at_most(0.75)(ratio),
        f"{median(ours) * 1e3:.0f} ms vs flask --help {median(theirs) * 1e3:.0f} ms",
        {"koosim_s": median(ours), "flask_s": median(theirs)},
    )


# --- 5. growth ---------------------------------------------------------------------------------


def verify_in_process(target: Target, db: Path, repeat: int) -> tuple[float, Run]:
    """A run whose every active check runs ``repeat`` times (``repeat`` orders per check).

    Benchmark-only: ``koosim verify`` has no such knob. It goes through ``run_checks`` with the
    run history wired as the command wires it; only the console progress is left out.
    """
    target = dataclasses.replace(target, learned_secrets=LearnedSecrets())  # a run starts knowing no secret
    checks = catalog()
    active = [check for check in checks if not check.per_exchange]
    judges = [check for check in checks if check.per_exchange]
    recorder = RunRecorder(Store(db), kind="bench", planned=len(active) * repeat + len(judges))
    started = time.perf_counter()
    run = run_checks(
        target,
        active * repeat + judges,
        seed=fresh_seed(),
        on_begin=recorder.begin,
        on_exchange=recorder.exchange,
        on_result=recorder.result,
    )
    recorder.finish(run)
    return time.perf_counter() - started, run


def measure_growth(target: Target, workdir: Path, sizes: Sizes) -> tuple[list[Line], Run]:
    db = workdir / "growth.db"
    verify_in_process(target, db, 1)  # warm-up
    per_exchange: dict[int, float] = {}
    sample: Run | None = None
    for repeat in sizes.growth:
        runs = sizes.growth_base_runs if repeat == 1 else 1
        costs = []
        for _ in range(runs):
            seconds, run = verify_in_process(target, db, repeat)
            costs.append(seconds / len(run.exchanges))
            sample = sample or run
        per_exchange[repeat] = median(costs)
    base = per_exchange[sizes.growth[0]]
    lines = [
        Line(
            f"5 growth: {repeat} orders/check",
            cost / base,
            "<= 1.25",
            at_most(1.25)(cost / base),
            f"{cost * 1e3:.2f} ms per exchange vs {base * 1e3:.2f} ms at 1 order/check",
            {"per_exchange_s": cost},
        )
        for repeat, cost in per_exchange.items()
        if repeat != sizes.growth[0]
    ]
    assert sample is not None
    return lines, sample


def fill_history(db: Path, sample: Run, exchanges: int, per_run: int) -> int:
    """Write ``exchanges`` exchanges through the Store API, ``per_run`` per run, copied from a real
    run; returns the bytes of JSON their records hold."""
    store = Store(db)
    secrets = sample.target.secrets
    target = {"url": sample.target.url, "protocol": sample.target.protocol}
    payload = 0
    for number in range(exchanges // per_run):
        run_id = f"bench-{number:05d}-{uuid.uuid4().hex[:6]}"
        store.history.begin_run(
            run_id, kind="verify", target=target, secrets=secrets, planned=len(sample.results)
        )
        for index in range(per_run):
            template = sample.exchanges[index % len(sample.exchanges)]
            copy: Exchange = dataclasses.replace(template, id=uuid.uuid4().hex[:12])
            record = store.history.add_exchange(run_id, copy, secrets)
            payload += len(json.dumps(record, ensure_ascii=False))
        for position, result in enumerate(sample.results):
            store.history.add_check_result(run_id, position, result, secrets)
        store.history.finish_run(run_id, exit_code=0)
    return payload


def measure_history(workdir: Path, sizes: Sizes, sample: Run) -> list[Line]:
    small_db, big_db = workdir / "history-small.db", workdir / "history-big.db"
    baseline = sizes.history_per_run * sizes.history_page
    fill_history(small_db, sample, baseline, sizes.history_per_run)
    payload = fill_history(big_db, sample, sizes.history_exchanges, sizes.history_per_run)
    with sqlite3.connect(big_db) as db:  # fold the write-ahead log in: the size a user sees at rest
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = sum(path.stat().st_size for path in workdir.glob("history-big.db*"))

    def query(db: Path) -> float:
        store = Store(db)
        store.history.runs(limit=20)
        timings = []
        for _ in range(sizes.query_runs):
            started = time.perf_counter()
            store.history.runs(limit=20)  # what `koosim runs` asks
            timings.append(time.perf_counter() - started)
        return median(timings)

    def command(db: Path) -> float:
        args = [str(BIN / "koosim"), "runs", "--db", str(db)]
        timed_command(args, workdir)
        return median([timed_command(args, workdir)[0] for _ in range(max(3, sizes.query_runs // 4))])

    small_query, big_query = query(small_db), query(big_db)
    small_command, big_command = command(small_db), command(big_db)
    count = sizes.history_exchanges
    return [
        Line(
            f"5 history size, {count} exch.",
            size / payload,
            "<= 2 (ours)",
            at_most(2)(size / payload),
            f"{size / 1e6:.1f} MB on disk for {payload / 1e6:.1f} MB of exchange records"
            f" ({size / count / 1e3:.1f} kB per exchange)",
            {"bytes": size, "record_bytes": payload, "exchanges": count},
        ),
        Line(
            f"5 runs query, {count} exch.",
            big_query / small_query,
            "<= 1.25 (ours)",
            at_most(1.25)(big_query / small_query),
            f"History.runs(limit=20) {big_query * 1e3:.2f} ms vs {small_query * 1e3:.2f} ms with {baseline}",
            {"query_s": big_query, "baseline_query_s": small_query},
        ),
        Line(
            f"5 koosim runs, {count} exch.",
            big_command / small_command,
            "<= 1.25 (ours)",
            at_most(1.25)(big_command / small_command),
            f"{big_command * 1e3:.0f} ms vs {small_command * 1e3:.0f} ms with {baseline}",
            {"command_s": big_command, "baseline_command_s": small_command},
        ),
    ]


# --- the report --------------------------------------------------------------------------------


def print_table(lines: list[Line], info: dict[str, Any], seconds: float) -> None:
    print(
        f"\nkoosim benchmarks: {info['cpu']}, {info['nproc']} CPU(s), Python {info['python']},"
        f" SQLite {info['sqlite']} ({seconds:.0f} s)\n"
    )
    width = max(len(line.name) for line in lines)
    print(f"{'measurement':<{width}}  {'ratio':>7}  {'goal':<15} {'met':<4} figures")
    for line in lines:
        met = "-" if line.met is None else ("yes" if line.met else "NO")
        print(f"{line.name:<{width}}  {line.ratio:>7.2f}  {line.goal:<15} {met:<4} {line.what}")


MEASUREMENTS = ("exchange", "verify", "explore", "help", "growth")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, help="Write the results as JSON here.")
    parser.add_argument("--quick", action="store_true", help="Fewer repeats: a smoke run, not numbers.")
    parser.add_argument(
        "--only", action="append", choices=MEASUREMENTS, help="Run only these measurements (repeatable)."
    )
    options = parser.parse_args(argv)
    sizes = QUICK if options.quick else Sizes()
    chosen = set(options.only or MEASUREMENTS)
    info = machine()
    began = time.perf_counter()
    lines: list[Line] = []
    with tempfile.TemporaryDirectory(prefix="koosim-bench-") as tmp:
        workdir = Path(tmp)
        with waitress_merchant(workdir) as target:
            exchange_line, bare_call = measure_exchange(target, workdir, sizes)
            if "exchange" in chosen:
                lines.append(exchange_line)
            if "verify" in chosen:
                lines.append(
                    measure_verify(target, workdir, sizes, bare_call, measure_startup(workdir, sizes))
                )
            if "explore" in chosen:
                lines.append(measure_explore(target, workdir, sizes, bare_call))
            if "growth" in chosen:
                growth, sample = measure_growth(target, workdir, sizes)
                lines += growth
                lines += measure_history(workdir, sizes, sample)
        if "help" in chosen:
            lines.append(measure_help(workdir, sizes))
    seconds = time.perf_counter() - began
    lines.sort(key=lambda line: line.name.split()[0])  # by the numbering; stable within
    print_table(lines, info, seconds)
    if options.output is not None:
        options.output.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "machine": info,
            "seconds": seconds,
            "quick": options.quick,
            "command": [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])],
            "results": [dataclasses.asdict(line) for line in lines],
        }
        options.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"\nresults: {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
