"""A fake wall clock for the clock tests: it moves only when slept on, so nothing sleeps for real."""

from __future__ import annotations


class FakeWall:
    """A wall clock that moves only when slept on; records every sleep."""

    def __init__(self, epoch: float = 1_764_403_200.0) -> None:  # 2025-11-29T08:00:00Z
        self.epoch = epoch
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.epoch + self.elapsed

    def monotonic(self) -> float:
        return 1000.0 + self.elapsed

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.elapsed += seconds
