"""The marketplace's clock: the one notion of "now" every command uses (docs/protocol.md §10).

The marketplace's time behaviour (resend schedules of up to three hours, dial tests twice a
day, five failing days before a product is frozen, a monthly count of failed orders) must be
playable in a test that takes milliseconds, in CI that takes seconds, and in ``serve`` in real
time. So nothing in koosim reads the wall clock to decide *marketplace* time; it asks a
:class:`Clock`:

- :class:`RealClock` — marketplace time is wall time (``serve``'s default);
- :class:`ScaledClock` — marketplace time runs ``scale`` times faster than the wall
  (``scale=3600``: an hour of marketplace time per wall second), so a 3-hour schedule plays in
  3 s of wall time;
- :class:`FrozenClock` — marketplace time stands still until something advances it
  explicitly (a test, a scenario step ``advance: 1h``, the console, the JSON API), like
  Stripe's test clocks. Waiting on it never sleeps: it either blocks until another thread
  advances the clock, or (``waits="jump"``) the wait itself moves the clock to the instant it
  waits for — a discrete-event simulation, deterministic and instantaneous, for tests.

Every clock also reads the wall, so a report can show both times (:class:`Stamp`).
Marketplace instants are timezone-aware UTC :class:`~datetime.datetime` objects; durations
are :class:`~datetime.timedelta`. :func:`parse_duration` reads ``90s``, ``30m``, ``12h``,
``3d`` (and ``1h30m``) wherever a user writes a duration.

This module is at the bottom of the package: it imports nothing from it.
"""

from __future__ import annotations

import math
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

# --- the wall --------------------------------------------------------------------------------


class Wall(Protocol):
    """Where a clock reads wall time and how it waits on it; tests pass a fake one."""

    def time(self) -> float:
        """Seconds since the epoch (for wall *instants*)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (for wall *durations*)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of wall time."""
        ...


class SystemWall:
    """The machine's wall: :func:`time.time`, :func:`time.monotonic`, :func:`time.sleep`."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_WALL = SystemWall()
DEFAULT_TIME_SCALE = 3600.0
"""Marketplace time ×3600 (an hour per wall second): the clock of verify, play, explore and load
unless ``--time-scale`` says otherwise, so the published 3-hour schedules (V1 newInstance
60 × 3 min, order notifications) play in 3 s and a 3-minute gap takes 50 ms. ``serve`` runs in
real time."""
EARLIEST_MARKET_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_MARKET_TIME = datetime(9000, 1, 1, tzinfo=UTC)
"""The span of marketplace time koosim accepts from a user (``--at``, ``--every`` schedules, a
clock advance): far from datetime's limits, so no date arithmetic on it (a time zone, a month
ahead, a year of dial tests) overflows."""
MIN_WALL_SLEEP = 1e-6
"""The shortest wall sleep a wall-driven clock takes (it may overshoot by ``scale`` µs)."""


@dataclass(frozen=True)
class Stamp:
    """One moment seen on both clocks, for reports: when it was on the wall and in the marketplace."""

    wall: datetime
    market: datetime

    def as_dict(self) -> dict[str, str]:
        return {"wall": isoformat(self.wall), "market": isoformat(self.market)}


def isoformat(instant: datetime) -> str:
    """``2026-11-29T22:15:00.250Z``: UTC, milliseconds, the ``Z`` reports and JSON use."""
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc(instant: datetime, name: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, not the naive {instant.isoformat()}")
    return instant.astimezone(UTC)


# --- the clocks ------------------------------------------------------------------------------


class Clock(ABC):
    """Marketplace time, and waiting for a marketplace instant.

    ``sleep_until(instant, wall_timeout=…)`` returns True once marketplace time has reached
    ``instant``, or False when ``wall_timeout`` wall seconds passed first: a scheduler thread
    waits in slices so that it can notice a stop request or an earlier delivery added meanwhile.
    """

    def __init__(self, wall: Wall) -> None:
        self.wall_source = wall

    @abstractmethod
    def now(self) -> datetime:
        """The marketplace's current instant (aware, UTC)."""

    @abstractmethod
    def sleep_until(self, instant: datetime, *, wall_timeout: float | None = None) -> bool:
        """Wait until marketplace time reaches ``instant``; see the class docstring."""

    @abstractmethod
    def describe(self) -> str:
        """One line for a run header: which clock, and how it maps to the wall."""

    def wall(self) -> datetime:
        """The wall's current instant (aware, UTC), whatever the marketplace time is."""
        return datetime.fromtimestamp(self.wall_source.time(), UTC)

    def stamp(self) -> Stamp:
        """Now, on both clocks."""
        return Stamp(wall=self.wall(), market=self.now())

    def sleep(self, duration: timedelta, *, wall_timeout: float | None = None) -> bool:
        """Wait ``duration`` of marketplace time (see :meth:`sleep_until`)."""
        return self.sleep_until(self.now() + duration, wall_timeout=wall_timeout)


class _WallDrivenClock(Clock):
    """A clock whose marketplace time follows the wall at a fixed rate."""

    scale: float

    def wall_duration(self, market: timedelta) -> timedelta:
        """How long ``market`` of marketplace time takes on the wall."""
        return market / self.scale

    def market_duration(self, wall: timedelta) -> timedelta:
        """How much marketplace time passes during ``wall`` of wall time."""
        return wall * self.scale

    def sleep_until(self, instant: datetime, *, wall_timeout: float | None = None) -> bool:
        instant = _utc(instant, "the instant to wait for")
        if wall_timeout is not None and not (math.isfinite(wall_timeout) and wall_timeout >= 0):
            raise ValueError(f"wall_timeout must be a number of seconds >= 0, not {wall_timeout}")
        started = self.wall_source.monotonic()
        while True:
            remaining = instant - self.now()
            if remaining <= timedelta(0):
                return True
            # At least a microsecond: a shorter sleep may not move a float wall clock at all.
            wait = max(self.wall_duration(remaining).total_seconds(), MIN_WALL_SLEEP)
            if wall_timeout is not None:
                left = wall_timeout - (self.wall_source.monotonic() - started)
                if left <= 0:
                    return False
                wait = min(wait, left)
            # A sleep may end early, or the float maths land a microsecond short: loop.
            self.wall_source.sleep(wait)


class RealClock(_WallDrivenClock):
    """Marketplace time is wall time."""

    scale = 1.0

    def __init__(self, wall: Wall = SYSTEM_WALL) -> None:
        super().__init__(wall)

    def now(self) -> datetime:
        return self.wall()

    def describe(self) -> str:
        return "marketplace time: real time"


class ScaledClock(_WallDrivenClock):
    """Marketplace time runs ``scale`` times as fast as the wall, from ``start`` (default: now).

    Elapsed time is read from the wall's monotonic clock, so a step of the system clock does
    not become ``scale`` times that step in the marketplace.
    """

    def __init__(self, scale: float, *, start: datetime | None = None, wall: Wall = SYSTEM_WALL) -> None:
        if isinstance(scale, bool) or not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"the time scale must be a number > 0, not {scale!r}")
        super().__init__(wall)
        self.scale = float(scale)
        self.origin = _utc(start, "start") if start is not None else self.wall()
        self._origin_monotonic = wall.monotonic()

    def now(self) -> datetime:
        elapsed = self.wall_source.monotonic() - self._origin_monotonic
        return self.origin + timedelta(seconds=elapsed * self.scale)

    def describe(self) -> str:
        per_second = format_duration(timedelta(seconds=self.scale))
        return f"marketplace time: scaled ×{self.scale:g} ({per_second} of marketplace time per wall second)"


Waits = Literal["block", "jump"]


class FrozenClock(Clock):
    """Marketplace time that moves only when advanced (:meth:`advance`, :meth:`advance_to`).

    ``waits`` decides what :meth:`sleep_until` does when the instant is still ahead:

    - ``"block"`` (``serve``, the console, the JSON API): wait — without polling — until another
      thread advances the clock far enough, or ``wall_timeout`` wall seconds pass;
    - ``"jump"`` (tests, scenario runs): move the clock to the instant at once and return, as a
      discrete-event simulation does. Nothing ever sleeps, and every run is the same run.

    Thread-safe: advancing wakes every waiter.
    """

    def __init__(self, start: datetime, *, waits: Waits = "block", wall: Wall = SYSTEM_WALL) -> None:
        if waits not in ("block", "jump"):
            raise ValueError(f"waits must be 'block' or 'jump', not {waits!r}")
        super().__init__(wall)
        self.waits: Waits = waits
        self._now = _utc(start, "start")
        self._changed = threading.Condition()

    def now(self) -> datetime:
        with self._changed:
            return self._now

    def advance(self, duration: timedelta) -> datetime:
        """Move marketplace time forward by ``duration`` (never back); returns the new now."""
        if duration < timedelta(0):
            raise ValueError(f"a clock only moves forward, not by {format_duration(duration)}")
        with self._changed:
            self._now += duration
            self._changed.notify_all()
            return self._now

    def advance_to(self, instant: datetime) -> datetime:
        """Move marketplace time forward to ``instant`` (a no-op when it is not ahead)."""
        instant = _utc(instant, "the instant to advance to")
        with self._changed:
            if instant > self._now:
                self._now = instant
                self._changed.notify_all()
            return self._now

    def sleep_until(self, instant: datetime, *, wall_timeout: float | None = None) -> bool:
        instant = _utc(instant, "the instant to wait for")
        if self.waits == "jump":
            self.advance_to(instant)
            return True
        with self._changed:
            return self._changed.wait_for(lambda: self._now >= instant, timeout=wall_timeout)

    def describe(self) -> str:
        how = "advanced by each wait" if self.waits == "jump" else "moves only when advanced"
        return f"marketplace time: frozen at {isoformat(self.now())} ({how})"


# --- durations -------------------------------------------------------------------------------

_UNITS = {
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
}
_DURATION = re.compile(r"(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,6})s)?")
_EXAMPLES = "a whole number and a unit s, m, h or d, e.g. 90s, 30m, 12h, 3d, 1h30m"


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"12h"``, ``"3d"``, ``"1h30m"`` → a positive :class:`timedelta`.

    Units go from the largest to the smallest, each at most once. Raises :class:`ValueError`
    with a one-line message for anything else (no unit, an unknown or upper-case unit, a
    fraction, a sign, a space inside, zero).
    """
    compact = text.strip() if isinstance(text, str) else ""
    match = _DURATION.fullmatch(compact)
    shown = repr(text if not isinstance(text, str) or len(text) <= 40 else text[:40] + "…")
    if not compact or match is None:
        raise ValueError(f"{shown} is not a duration: write {_EXAMPLES}")
    duration = sum(
        (int(number) * size for number, size in zip(match.groups(), _UNITS.values(), strict=True) if number),
        start=timedelta(0),
    )
    if duration <= timedelta(0):
        raise ValueError(f"{shown} is not a duration: it must be longer than zero")
    return duration


def format_duration(duration: timedelta) -> str:
    """The compact form :func:`parse_duration` reads: ``1h30m``, ``3d``, ``90s`` → ``1m30s``.

    Sub-second parts print as decimal seconds (``1.5s``, ``250ms`` for less than a second),
    which only reports need; a negative duration gets a leading ``-``.
    """
    if duration < timedelta(0):
        return "-" + format_duration(-duration)
    whole = timedelta(days=duration.days, seconds=duration.seconds)
    micros = duration.microseconds
    if not whole and micros:
        return f"{micros / 1000:g}ms"
    parts: list[str] = []
    rest = whole
    for unit, size in _UNITS.items():
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    if micros:
        seconds = (whole.seconds % 60) + micros / 1_000_000
        if parts and parts[-1].endswith("s"):
            parts.pop()
        parts.append(f"{seconds:g}s")
    return "".join(parts) or "0s"
