"""The sampler's clock, injectable: the system clock, and a manual one tests drive.

With :class:`ManualClock` time moves only when a test calls ``advance()``, which returns once
the sampler thread has done every tick that became due and is waiting again: ticks are driven
directly, never waited for with ``sleep()``.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "ManualClock", "next_tick_ns"]


def next_tick_ns(now_ns: int, interval_ns: int) -> int:
    """The first multiple of ``interval_ns`` strictly after ``now_ns`` (ticks align to the wall clock)."""
    return (now_ns // interval_ns + 1) * interval_ns


class Clock(Protocol):
    def time_ns(self) -> int:
        """Wall-clock time, ns since the epoch."""

    def wait(self, timeout_s: float, stop: threading.Event) -> bool:
        """Wait up to ``timeout_s`` (or until time moves, for a manual clock); True when ``stop`` is set."""


class SystemClock:
    def time_ns(self) -> int:
        return time.time_ns()

    def wait(self, timeout_s: float, stop: threading.Event) -> bool:
        return stop.wait(max(0.0, timeout_s))


class ManualClock:
    """Time that moves only by :meth:`advance`."""

    def __init__(self, start_ns: int = 1_700_000_000 * 10**9) -> None:
        self._now = start_ns
        self._cv = threading.Condition()
        self._generation = 0
        self._parked = -1  # the generation at which the waiting thread last parked

    def time_ns(self) -> int:
        with self._cv:
            return self._now

    def wait(self, timeout_s: float, stop: threading.Event) -> bool:
        with self._cv:
            gen = self._parked = self._generation
            self._cv.notify_all()
            while self._generation == gen and not stop.is_set():
                self._cv.wait(0.01)  # wakes on advance(); the short timeout only notices ``stop``
        return stop.is_set()

    def set(self, now_ns: int, settle_timeout_s: float = 10.0) -> None:
        """Jump to ``now_ns`` (backwards too: a wall-clock step) and wait for the sampler to settle."""
        with self._cv:
            self._now = now_ns
            self._generation += 1
            target = self._generation
            self._cv.notify_all()
            if not self._cv.wait_for(lambda: self._parked >= target, settle_timeout_s):
                raise TimeoutError("the sampler did not come back to wait on the clock")

    def advance(self, seconds: float, settle_timeout_s: float = 10.0) -> None:
        """Move time forward; returns when the waiting thread has caught up and waits again."""
        self.set(self.time_ns() + round(seconds * 1e9), settle_timeout_s)

    def wait_parked(self, timeout_s: float = 10.0) -> None:
        """Wait until a thread waits on this clock (the sampler has started its loop)."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._parked >= self._generation, timeout_s):
                raise TimeoutError("nothing waits on the clock")
