"""When to take the next sample: exponential (Poisson) gaps, deadlines counted from the start.

Random gaps keep the sampler from locking onto a program's own period (a loop that runs
every 10 ms sampled every 10 ms would look frozen). Deadlines accumulate from the start
rather than from the last sample, so the time spent sampling is absorbed instead of slowing
the rate. When a deadline has already passed, the sample is taken at once and the lateness
is reported; deadlines missed by more than `stale_after` are skipped (their data would be
stale) and counted.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

DEFAULT_RATE = 100.0
STALE_PERIODS = 10  # deadlines missed by this many mean periods are skipped


@dataclass
class Tick:
    """One scheduled sample: its deadline, and how late we got to it (None if on time)."""

    deadline: float  # seconds since the timer started
    late: float | None
    skipped: int  # stale deadlines skipped just before this one


class PoissonTimer:
    """Yields ticks at exponentially distributed gaps with mean 1/rate."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        stop_event: threading.Event | None = None,
        stale_periods: float = STALE_PERIODS,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"sampling rate must be positive, got {rate}")
        self.rate = float(rate)
        self._rng = random.Random(seed)
        self._clock = clock
        self._stop = stop_event or threading.Event()
        self._stale_periods = stale_periods
        self.start = clock()
        self._deadline = 0.0
        self.skipped = 0

    def elapsed(self) -> float:
        return self._clock() - self.start

    def set_rate(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"sampling rate must be positive, got {rate}")
        self.rate = float(rate)

    def restart_schedule(self) -> None:
        """Count the next deadlines from now: what ran until now was not sampling's pace
        (the first, cold read), so it should neither make samples late nor skip any."""
        self._deadline = self.elapsed()

    def next_gap(self) -> float:
        return self._rng.expovariate(self.rate)

    def wait(self, end: float | None = None) -> Tick | None:
        """Sleep until the next deadline; None when stopped, or when it lies past `end`.

        With `end` (seconds since start) the wait never runs past it: a schedule that ends at
        10 s ends at 10 s, not at the first deadline after it.
        """
        self._deadline += self.next_gap()
        if end is not None and self._deadline > end:
            remaining = end - self.elapsed()
            if remaining > 0:
                self._stop.wait(remaining)
            return None
        now = self.elapsed()
        skipped = 0
        stale = self._stale_periods / self.rate
        while now - self._deadline > stale:
            # Far behind: taking every missed sample now would record the same moment many
            # times. Skip the stale deadlines instead (counted), keep the schedule's shape.
            self._deadline += self.next_gap()
            skipped += 1
        self.skipped += skipped
        if self._deadline > now:
            if self._stop.wait(self._deadline - now):
                return None
            return Tick(self._deadline, None, skipped)
        if self._stop.is_set():
            return None
        return Tick(self._deadline, now - self._deadline, skipped)

    def __iter__(self):
        while True:
            tick = self.wait()
            if tick is None:
                return
            yield tick
