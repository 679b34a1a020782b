"""When to take the next sample: exponential (Poisson) gaps, deadlines counted from the start.

Random gaps keep the sampler from locking onto a program's own period (a loop that runs
every 10 ms sampled every 10 ms would look frozen). Deadlines accumulate from the start
rather than from the last sample, so the time spent sampling is absorbed instead of slowing
the rate. When a deadline has already passed, the sample is taken at once and the lateness
is reported; deadlines missed by more than `stale_periods` mean periods are skipped (their
data would be stale) and counted. Skipping costs the same however far behind the timer is
(one jump and one random count, not one draw per missed deadline), so no rate, however
high, can keep a wait from returning or from seeing a stop or the end of its duration.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

DEFAULT_RATE = 100.0
# The most samples a second the engine will schedule. One sample reads every sampled process
# (two scatter copies and a frame walk): 100-250 µs of CPU here even on a shallow stack, so a
# sampling thread tops out near 5 kHz (measured: 4.7-4.8 kHz asked 10-50 kHz, adaptation off,
# on a sleeping target; 4984 of 5000 Hz at depth 85 in benchmarks/). Twice that leaves room
# for a faster machine; above it a period is shorter than any read.
MAX_RATE = 10_000.0
WOKE_LATE_AFTER = 100e-6  # seconds past its deadline a sleeper may wake and still be on time
STALE_PERIODS = 10  # deadlines missed by this many mean periods are skipped
# A backlog whose expected count is this large is counted with the normal approximation.
_EXACT_COUNT_BELOW = 30.0


def check_rate(rate: float) -> float:
    """`rate` as a float, or ValueError when it is not a positive, finite number."""
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"sampling rate must be a positive, finite number, got {rate}")
    return float(rate)


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
        self.rate = check_rate(rate)
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
        self.rate = check_rate(rate)

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
        now = self.elapsed()
        skipped = 0
        stale = self._stale_periods / self.rate
        if now - self._deadline > stale:
            # Far behind: taking every missed sample now would record the same moment many
            # times. Skip the stale deadlines instead (counted), keep the schedule's shape:
            # gaps are memoryless, so the first deadline after `now - stale` is that instant
            # plus one gap, and the deadlines skipped before it are a Poisson count.
            horizon = now - stale
            skipped = 1 + self._poisson(self.rate * (horizon - self._deadline))
            self._deadline = horizon + self.next_gap()
        self.skipped += skipped
        if end is not None and self._deadline > end:
            remaining = end - now
            if remaining > 0:
                self._stop.wait(remaining)
            return None
        if self._deadline > now:
            if self._stop.wait(self._deadline - now):
                return None
            # A sleep that overran (the machine ran something else) is late too; a wake-up
            # within WOKE_LATE_AFTER is the timer's own jitter: on time.
            overslept = self.elapsed() - self._deadline
            return Tick(self._deadline, overslept if overslept > WOKE_LATE_AFTER else None, skipped)
        if self._stop.is_set():
            return None
        return Tick(self._deadline, now - self._deadline, skipped)

    def _poisson(self, mean: float) -> int:
        """A Poisson(mean) count in a few draws (about mean + 1 below 30, else one)."""
        if mean < _EXACT_COUNT_BELOW:
            # Knuth: count uniform draws until their product falls under e^-mean.
            limit, product, count = math.exp(-mean), self._rng.random(), 0
            while product > limit:
                product *= self._rng.random()
                count += 1
            return count
        return max(0, round(self._rng.gauss(mean, math.sqrt(mean))))

    def __iter__(self):
        while True:
            tick = self.wait()
            if tick is None:
                return
            yield tick
