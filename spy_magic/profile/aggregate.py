"""The bounded parts of a profile: per distinct stack a count and a weight, and lateness.

A long recording repeats a few stacks: kept per distinct Trace, its memory grows with the
stacks, not with the samples. What a view needs beyond that (how late samples were) is
kept here in bounded form too, exact while small.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..engine.sample import Trace

EXACT_LATENESS = 4096  # late values kept exactly; past this, a histogram
# Histogram buckets: log-spaced, each 1 % wider than the one before, from 0.1 µs. A value is
# read back as its bucket's geometric middle: within 0.5 % of the truth.
_BUCKET_BASE = 1e-7
_BUCKET_RATIO = 1.01
_LOG_RATIO = math.log(_BUCKET_RATIO)


class TraceStats:
    """One distinct stack of a profile: how many samples had it (`count`), and the seconds
    they stand for (`weight`: each sample's gap to the next, summed)."""

    __slots__ = ("count", "keys", "trace", "weight")

    def __init__(self, trace: Trace, count: int = 0, weight: float = 0.0) -> None:
        self.trace = trace
        self.count = count
        self.weight = weight
        self.keys: dict[str, object] = {}  # per view: what it derived from the trace, once

    def __repr__(self) -> str:
        return f"TraceStats({self.trace!r}, count={self.count}, weight={self.weight!r})"


class LatenessSummary:
    """How late samples were, in bounded memory: every late value while there are up to
    EXACT_LATENESS of them, then a log histogram (percentiles within 0.5 %); `max` exact.
    Any other distribution of positive seconds fits it too (the gaps between samples)."""

    __slots__ = ("_buckets", "_exact", "count", "max", "zeros")

    def __init__(self) -> None:
        self.count = 0  # samples that were late (late is not None)
        self.zeros = 0  # of those, how many by exactly 0 s
        self.max = 0.0
        self._exact: list[float] | None = []
        self._buckets: dict[int, int] = {}

    def add(self, late: float) -> None:
        self.count += 1
        if late > self.max:
            self.max = late
        if not late > 0:
            self.zeros += 1
            return
        exact = self._exact
        if exact is not None:
            exact.append(late)
            if len(exact) > EXACT_LATENESS:
                self._exact = None
                for value in exact:
                    self._bucket(value)
            return
        self._bucket(late)

    def _bucket(self, late: float) -> None:
        index = 0
        if late > _BUCKET_BASE:
            index = int(math.log(late / _BUCKET_BASE) / _LOG_RATIO)
        self._buckets[index] = self._buckets.get(index, 0) + 1

    def positive(self) -> list[tuple[float, int]]:
        """(value, how many) for the late values above 0, ascending."""
        if self._exact is not None:
            return [(value, 1) for value in sorted(self._exact)]
        out = []
        for index in sorted(self._buckets):
            middle = _BUCKET_BASE * _BUCKET_RATIO ** (index + 0.5)
            out.append((min(middle, self.max), self._buckets[index]))
        return out

    def percentiles(self, samples: int, qs: Iterable[float]) -> list[float]:
        """Linear-interpolated percentiles over `samples` samples, on-time ones counted as
        0 (as over the sorted list of every sample's lateness)."""
        values = self.positive()
        below = samples - sum(n for _, n in values)  # on time, or late by 0
        out = []
        for q in qs:
            if samples <= 0:
                out.append(0.0)
                continue
            pos = (samples - 1) * q
            lo = math.floor(pos)
            hi = min(lo + 1, samples - 1)
            a, b = _at_rank(values, below, lo), _at_rank(values, below, hi)
            out.append(a + (b - a) * (pos - lo))
        return out

    def merge_into(self, other: LatenessSummary) -> None:
        """Add what this summary holds to `other` (a copy of a profile keeps its lateness)."""
        for value, n in self.positive():
            for _ in range(n):
                other.add(value)
        for _ in range(self.zeros):
            other.add(0.0)
        other.max = max(other.max, self.max)

    def to_json(self) -> dict:
        """What `from_json` restores exactly (the exact values, or the histogram)."""
        out: dict = {"count": self.count, "zeros": self.zeros, "max": self.max}
        if self._exact is not None:
            out["exact"] = list(self._exact)
        else:
            out["buckets"] = sorted(self._buckets.items())
        return out

    @classmethod
    def from_json(cls, data: dict) -> LatenessSummary:
        """The summary `to_json` wrote; ValueError naming what is wrong otherwise."""
        out = cls()
        count, zeros, top = data["count"], data["zeros"], data["max"]
        if not (_is_count(count) and _is_count(zeros) and zeros <= count):
            raise ValueError(f"lateness counts {count!r}, {zeros!r}")
        if type(top) not in (int, float) or not top >= 0:
            raise ValueError(f"lateness max {top!r}")
        out.count, out.zeros, out.max = count, zeros, float(top)
        if "exact" in data:
            exact = [float(v) for v in data["exact"]]
            if len(exact) > EXACT_LATENESS or not all(0 < v <= top for v in exact):
                raise ValueError("exact lateness values out of range")
            out._exact = exact
            positive = len(exact)
        else:
            out._exact = None
            out._buckets = {int(i): int(n) for i, n in data["buckets"]}
            positive = sum(out._buckets.values())
        if zeros + positive != count or min(out._buckets.values(), default=1) < 1:
            raise ValueError(f"lateness holds {zeros + positive} values, counts {count}")
        return out


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


def _at_rank(values: list[tuple[float, int]], below: int, rank: int) -> float:
    if rank < below:
        return 0.0
    rank -= below
    for value, n in values:
        if rank < n:
            return value
        rank -= n
    return values[-1][0] if values else 0.0
