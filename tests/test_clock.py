"""The marketplace clock (simulator/clock.py): real, scaled and frozen clocks, and durations.

Nothing here sleeps for real: wall-driven clocks get a fake wall whose ``sleep`` only moves
its own time forward, and the frozen clock is advanced explicitly.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from walls import FakeWall

from simulator.clock import (
    FrozenClock,
    RealClock,
    ScaledClock,
    Stamp,
    format_duration,
    isoformat,
    parse_duration,
)

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


# --- real ------------------------------------------------------------------------------------


def test_a_real_clock_tells_wall_time_and_sleeps_the_difference() -> None:
    wall = FakeWall()
    clock = RealClock(wall)
    assert clock.now() == clock.wall() == datetime.fromtimestamp(wall.epoch, UTC)
    assert clock.sleep(timedelta(minutes=2)) is True
    assert sum(wall.sleeps) == pytest.approx(120.0)
    assert clock.now() == datetime.fromtimestamp(wall.epoch + 120, UTC)


def test_waiting_for_a_past_instant_returns_at_once() -> None:
    wall = FakeWall()
    clock = RealClock(wall)
    assert clock.sleep_until(clock.now() - timedelta(hours=1)) is True
    assert wall.sleeps == []


def test_a_wall_timeout_ends_the_wait_before_the_instant() -> None:
    wall = FakeWall()
    clock = RealClock(wall)
    target = clock.now() + timedelta(seconds=10)
    assert clock.sleep_until(target, wall_timeout=2.5) is False
    assert sum(wall.sleeps) == pytest.approx(2.5)
    assert clock.now() < target
    assert clock.sleep_until(target, wall_timeout=60) is True


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_wall_timeout_is_a_number_of_seconds(bad: float) -> None:
    with pytest.raises(ValueError, match="wall_timeout"):
        RealClock(FakeWall()).sleep_until(T0, wall_timeout=bad)


# --- scaled ----------------------------------------------------------------------------------


def test_an_hour_of_marketplace_time_per_wall_second() -> None:
    wall = FakeWall()
    clock = ScaledClock(3600, start=T0, wall=wall)
    assert clock.now() == T0
    assert clock.wall_duration(timedelta(hours=3)) == timedelta(seconds=3)
    assert clock.market_duration(timedelta(milliseconds=500)) == timedelta(minutes=30)
    assert clock.sleep_until(T0 + timedelta(hours=3)) is True
    assert sum(wall.sleeps) == pytest.approx(3.0)
    assert clock.now() == T0 + timedelta(hours=3)
    wall.elapsed += 0.25  # a quarter of a wall second: 15 marketplace minutes
    assert clock.now() == T0 + timedelta(hours=3, minutes=15)


def test_a_scaled_clock_follows_the_monotonic_clock_not_steps_of_the_system_clock() -> None:
    wall = FakeWall()
    clock = ScaledClock(3600, start=T0, wall=wall)
    wall.epoch += 1.0  # the system clock is stepped by a second (NTP): not an hour of market time
    assert clock.now() == T0
    assert clock.wall() == datetime.fromtimestamp(wall.time(), UTC)


def test_a_scaled_clock_starts_at_the_wall_by_default() -> None:
    wall = FakeWall()
    clock = ScaledClock(60, wall=wall)
    assert clock.now() == clock.wall()


@given(
    scale=st.floats(min_value=0.5, max_value=100_000),
    seconds=st.integers(min_value=1, max_value=7 * 24 * 3600),
)
def test_a_scaled_clock_maps_marketplace_durations_to_wall_durations(scale: float, seconds: int) -> None:
    wall = FakeWall()
    clock = ScaledClock(scale, start=T0, wall=wall)
    market = timedelta(seconds=seconds)
    assert clock.sleep(market) is True
    assert sum(wall.sleeps) == pytest.approx(seconds / scale, rel=1e-9, abs=1e-6)
    assert clock.now() - T0 >= market
    overshoot = clock.now() - T0 - market  # at most the last (≥ 1 µs) wall sleep, scaled
    assert overshoot <= timedelta(microseconds=2 * scale + 1)


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf"), True])
def test_a_scale_is_a_positive_number(scale: float) -> None:
    with pytest.raises(ValueError, match="time scale"):
        ScaledClock(scale, wall=FakeWall())


# --- frozen ----------------------------------------------------------------------------------


def test_a_frozen_clock_moves_only_when_advanced() -> None:
    wall = FakeWall()
    clock = FrozenClock(T0, wall=wall)
    wall.elapsed += 3600
    assert clock.now() == T0
    assert clock.advance(timedelta(hours=1)) == T0 + timedelta(hours=1)
    assert clock.advance_to(T0 + timedelta(hours=3)) == T0 + timedelta(hours=3)
    assert clock.advance_to(T0) == T0 + timedelta(hours=3)  # never back
    assert clock.now() == T0 + timedelta(hours=3)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(timedelta(seconds=-1))


def test_a_jumping_frozen_clock_moves_to_what_it_waits_for() -> None:
    wall = FakeWall()
    clock = FrozenClock(T0, waits="jump", wall=wall)
    assert clock.sleep(timedelta(hours=3)) is True
    assert clock.now() == T0 + timedelta(hours=3)
    assert clock.sleep_until(T0) is True  # the past: nothing moves
    assert clock.now() == T0 + timedelta(hours=3)
    assert wall.sleeps == []


def test_a_blocking_frozen_clock_does_not_move_by_itself() -> None:
    clock = FrozenClock(T0)
    assert clock.sleep_until(T0 + timedelta(seconds=1), wall_timeout=0) is False
    assert clock.now() == T0
    assert clock.sleep_until(T0, wall_timeout=0) is True


def test_advancing_wakes_a_waiter() -> None:
    clock = FrozenClock(T0)
    reached: list[bool] = []
    waiter = threading.Thread(
        target=lambda: reached.append(clock.sleep_until(T0 + timedelta(hours=1), wall_timeout=30))
    )
    waiter.start()
    clock.advance(timedelta(minutes=30))
    clock.advance(timedelta(minutes=30))
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert reached == [True]


def test_a_frozen_clock_knows_how_it_waits() -> None:
    with pytest.raises(ValueError, match="'block' or 'jump'"):
        FrozenClock(T0, waits="sleep")  # type: ignore[arg-type]
    assert "moves only when advanced" in FrozenClock(T0).describe()
    assert "2026-11-29T08:00:00.000Z" in FrozenClock(T0, waits="jump").describe()


def test_instants_are_timezone_aware() -> None:
    naive = datetime(2026, 11, 29, 8, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        FrozenClock(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        FrozenClock(T0).advance_to(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        ScaledClock(10, start=naive, wall=FakeWall())
    beijing = timezone(timedelta(hours=8))
    assert FrozenClock(datetime(2026, 11, 29, 16, 0, tzinfo=beijing)).now() == T0


# --- both times, for reports -----------------------------------------------------------------


def test_a_stamp_holds_wall_and_marketplace_time() -> None:
    wall = FakeWall()
    clock = ScaledClock(3600, start=T0, wall=wall)
    wall.elapsed += 2.0
    stamp = clock.stamp()
    assert stamp == Stamp(wall=datetime.fromtimestamp(wall.time(), UTC), market=T0 + timedelta(hours=2))
    assert stamp.as_dict() == {"wall": "2025-11-29T08:00:02.000Z", "market": "2026-11-29T10:00:00.000Z"}
    assert (
        isoformat(datetime(2026, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=8))))
        == "2026-01-01T00:00:00.000Z"
    )


def test_each_clock_describes_itself_in_one_line() -> None:
    assert RealClock(FakeWall()).describe() == "marketplace time: real time"
    assert ScaledClock(3600, wall=FakeWall()).describe() == (
        "marketplace time: scaled ×3600 (1h of marketplace time per wall second)"
    )


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("1h", timedelta(hours=1)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("3d", timedelta(days=3)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d12h", timedelta(days=2, hours=12)),
        (" 5m ", timedelta(minutes=5)),
    ],
)
def test_durations_parse(text: str, duration: timedelta) -> None:
    assert parse_duration(text) == duration


@pytest.mark.parametrize(
    "text", ["", "1", "h", "1.5h", "-1h", "+1h", "1H", "1 h", "1h1h", "30s1m", "1w", "0s", "0h0m", "x" * 500]
)
def test_a_bad_duration_is_one_line_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_duration(text)
    message = str(raised.value)
    assert "\n" not in message
    assert "is not a duration" in message
    assert len(message) < 160


@given(st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=10_000)))
def test_whole_second_durations_round_trip(duration: timedelta) -> None:
    whole = timedelta(days=duration.days, seconds=duration.seconds) or timedelta(seconds=1)
    assert parse_duration(format_duration(whole)) == whole


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=3), "3h"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(minutes=1, milliseconds=500), "1m0.5s"),
        (-timedelta(hours=1), "-1h"),
    ],
)
def test_durations_format_compactly(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text
