"""A profile: the raw samples of one session, plus the aggregate views drawn from them.

Samples are kept as taken (nothing is folded away on the way in), so every view and export
is computed from the same record and a saved profile can be reloaded losslessly. Aggregates
that live views ask for repeatedly are cached per option set and extended incrementally as
samples arrive, so polling a growing profile costs only the new samples.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ..engine.sample import RateChange, Sample, SampleError, Trace
from ..reader import Frame
from .samplelog import SampleLog

if TYPE_CHECKING:
    from .diff import ProfileDiff

BY_CHOICES = ("line", "function")
_CACHE_LIMIT = 64  # option sets kept; a live view uses a handful


class TimedError(NamedTuple):
    """A SampleError with the timestamp of the sample that met it."""

    timestamp: float
    error: SampleError


class ThreadInfo(NamedTuple):
    """A thread seen in the profile; `thread_name` is the latest name it was seen with."""

    pid: int
    thread_id: int
    thread_name: str | None


@dataclass(frozen=True)
class FunctionStats:
    """Per-function (or per-line) counts: `self_count` traces had it innermost,
    `total_count` traces had it anywhere (once per trace, whatever the recursion depth)."""

    name: str
    filename: str
    line: int | None  # None when aggregated by function
    self_count: int
    total_count: int


@dataclass(frozen=True)
class TraceFilter:
    """Which traces a view counts. Hashable, so it can key the aggregate caches."""

    pids: frozenset[int] | None = None
    thread_ids: frozenset[int] | None = None
    idle: bool = True
    gil_only: bool = False

    @classmethod
    def make(
        cls,
        pids: Iterable[int] | None = None,
        thread_ids: Iterable[int] | None = None,
        idle: bool = True,
        gil_only: bool = False,
    ) -> TraceFilter:
        return cls(
            None if pids is None else frozenset(pids),
            None if thread_ids is None else frozenset(thread_ids),
            bool(idle),
            bool(gil_only),
        )

    def accepts(self, trace: Trace) -> bool:
        if self.pids is not None and trace.pid not in self.pids:
            return False
        if self.thread_ids is not None and trace.thread_id not in self.thread_ids:
            return False
        if not self.idle and trace.idle:
            return False
        return not (self.gil_only and not trace.gil)


def check_by(by: str) -> str:
    if by not in BY_CHOICES:
        raise ValueError(f"by must be one of {BY_CHOICES}, got {by!r}")
    return by


def frame_key(frame: Frame, by: str) -> tuple:
    """What makes two frames the same node: the line matters only when `by == "line"`."""
    if by == "line":
        return (frame.name, frame.filename, frame.line)
    return (frame.name, frame.filename)


def frame_label(frame: Frame, by: str) -> str:
    """`name (filename:line)` by line, `name (filename)` by function."""
    if by == "line":
        return f"{frame.name} ({frame.filename}:{frame.line})"
    return f"{frame.name} ({frame.filename})"


def thread_label(trace: Trace) -> str:
    """The synthetic root frame naming a thread: `thread "name" (thread_id)`."""
    if trace.thread_name is None:
        return f"thread ({trace.thread_id})"
    return f'thread "{trace.thread_name}" ({trace.thread_id})'


def process_labels(trace: Trace) -> tuple[str, ...]:
    """The synthetic root frames naming the process chain, root process first."""
    if trace.processes:
        return tuple(str(p) for p in trace.processes)
    return (f"pid {trace.pid}",)


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 1]) of already sorted values; 0 when empty."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class Profile:
    """The samples of one profiling session, in order, with aggregate views over them.

    Safe for one writer (the engine's collector calling `add`) and concurrent readers (a
    live view polling `stack_counts`). Treat `samples` and the other lists as read-only:
    the caches assume samples are only ever appended through `add`.
    """

    def __init__(self, metadata: dict | None = None) -> None:
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.samples = SampleLog()  # a Sequence of Samples, stored compactly
        self.rate_changes: list[RateChange] = []
        self.errors: list[TimedError] = []
        self.trace_count = 0
        self._threads: dict[tuple[int, int], str | None] = {}
        self._pids: dict[int, None] = {}
        self._labels: dict[str, dict[Frame, str]] = {by: {} for by in BY_CHOICES}
        self._cache: dict[tuple, list] = {}
        self._lock = threading.RLock()

    # -- recording ------------------------------------------------------------------------
    def add(self, sample: Sample) -> None:
        """Append one sample; samples must arrive in timestamp order."""
        with self._lock:
            samples = self.samples
            if samples and sample.timestamp < samples.timestamp(-1):
                raise ValueError(
                    f"sample at {sample.timestamp} is older than the last one "
                    f"({samples.timestamp(-1)}); samples must be added in order"
                )
            self.samples.append(sample)
            self.trace_count += len(sample.traces)
            for trace in sample.traces:
                self._pids.setdefault(trace.pid)
                key = (trace.pid, trace.thread_id)
                if trace.thread_name is not None or key not in self._threads:
                    self._threads[key] = trace.thread_name
            self.errors.extend(TimedError(sample.timestamp, e) for e in sample.errors)

    def extend(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            self.add(sample)

    def add_rate_change(self, change: RateChange) -> None:
        with self._lock:
            self.rate_changes.append(change)

    # -- plain facts ----------------------------------------------------------------------
    @property
    def sample_count(self) -> int:
        return len(self.samples)

    def error_counts(self) -> Counter[str]:
        """How many errors of each kind (the ReaderError class name)."""
        return Counter(e.error.kind for e in self.errors)

    def threads(self) -> list[ThreadInfo]:
        """Every (pid, thread_id, thread_name) seen, in order of first appearance."""
        with self._lock:
            return [ThreadInfo(pid, tid, name) for (pid, tid), name in self._threads.items()]

    def pids(self) -> list[int]:
        """Every pid seen in a trace, in order of first appearance."""
        with self._lock:
            return list(self._pids)

    @property
    def duration(self) -> float:
        """Seconds from the first sample to the last; metadata's `duration` when that
        span is not measurable (fewer than two samples)."""
        if len(self.samples) >= 2:
            return self.samples.timestamp(-1) - self.samples.timestamp(0)
        return float(self.metadata.get("duration") or 0.0)

    @property
    def effective_rate(self) -> float:
        """Samples per second actually taken (mean over the gaps); 0 when unmeasurable."""
        n = len(self.samples)
        if n < 2:
            return 0.0
        span = self.samples.timestamp(n - 1) - self.samples.timestamp(0)
        return (n - 1) / span if span > 0 else 0.0

    def gaps(self) -> list[float]:
        """Seconds between consecutive samples."""
        ts = self.samples.timestamps()
        return [b - a for a, b in zip(ts, ts[1:])]

    def sample_durations(self) -> list[float]:
        """The time each sample stands for: the gap to the next sample.

        The last sample has no successor; it gets the mean gap (the expected gap under the
        sampler's schedule), or 1/metadata["rate"] when there is a single sample. Summing
        these weights gives real elapsed time even when the rate changed or samples were late,
        which a nominal 1/rate weight would not.
        """
        gaps = self.gaps()
        if not self.samples:
            return []
        if gaps:
            last = sum(gaps) / len(gaps)
        else:
            rate = self.metadata.get("rate")
            last = 1.0 / rate if isinstance(rate, (int, float)) and rate > 0 else 0.0
        return [*gaps, last]

    def lateness(self) -> dict[str, float]:
        """How late samples were: `count` of late samples, and `p50`/`p90`/`p99`/`max`
        seconds over all samples (on-time samples count as 0), to judge how far the
        schedule — and so the weights — can be trusted."""
        lates = self.samples.lates()
        values = sorted(late or 0.0 for late in lates)
        return {
            "count": sum(1 for late in lates if late is not None),
            "p50": percentile(values, 0.50),
            "p90": percentile(values, 0.90),
            "p99": percentile(values, 0.99),
            "max": values[-1] if values else 0.0,
        }

    # -- traces and aggregates ------------------------------------------------------------
    def iter_traces(
        self,
        *,
        pids: Iterable[int] | None = None,
        thread_ids: Iterable[int] | None = None,
        idle: bool = True,
        gil_only: bool = False,
    ) -> Iterator[tuple[int, Sample, Trace]]:
        """(sample index, sample, trace) for every trace the filters keep, in sample order."""
        flt = TraceFilter.make(pids, thread_ids, idle, gil_only)
        for index, sample in enumerate(list(self.samples)):
            for trace in sample.traces:
                if flt.accepts(trace):
                    yield index, sample, trace

    def stack_counts(
        self,
        *,
        by: str = "line",
        pids: Iterable[int] | None = None,
        thread_ids: Iterable[int] | None = None,
        idle: bool = True,
        gil_only: bool = False,
        threads: bool = False,
        processes: bool | None = None,
    ) -> dict[tuple[str, ...], int]:
        """Folded stacks, root first, counted once per trace (the lines `collapsed` prints,
        before escaping).

        `threads` adds a `thread "name" (tid)` root per thread; `processes` adds the process
        chain above it (default: only when more than one pid was sampled). Traces with no
        Python frames are skipped.
        """
        labels = self._labels[check_by(by)]
        if processes is None:
            processes = len(self._pids) > 1
        flt = TraceFilter.make(pids, thread_ids, idle, gil_only)
        with self._lock:
            entry = self._cache_entry(("stacks", by, flt, threads, processes), Counter)
            counts: Counter = entry[1]
            for sample in self.samples[entry[0] :]:
                for trace in sample.traces:
                    if not trace.frames or not flt.accepts(trace):
                        continue
                    stack = []
                    for frame in reversed(trace.frames):
                        label = labels.get(frame)
                        if label is None:
                            label = labels[frame] = frame_label(frame, by)
                        stack.append(label)
                    roots: tuple[str, ...] = ()
                    if processes:
                        roots = process_labels(trace)
                    if threads:
                        roots = (*roots, thread_label(trace))
                    counts[(*roots, *stack)] += 1
            entry[0] = len(self.samples)
            return dict(counts)

    def functions(
        self,
        *,
        by: str = "line",
        pids: Iterable[int] | None = None,
        thread_ids: Iterable[int] | None = None,
        idle: bool = True,
        gil_only: bool = False,
    ) -> list[FunctionStats]:
        """Self and total counts per function (or per line), most self time first."""
        check_by(by)
        flt = TraceFilter.make(pids, thread_ids, idle, gil_only)
        with self._lock:
            entry = self._cache_entry(("functions", by, flt), lambda: (Counter(), Counter()))
            self_counts, total_counts = entry[1]
            for sample in self.samples[entry[0] :]:
                for trace in sample.traces:
                    if not trace.frames or not flt.accepts(trace):
                        continue
                    self_counts[frame_key(trace.frames[0], by)] += 1
                    total_counts.update({frame_key(f, by) for f in trace.frames})
            entry[0] = len(self.samples)
            stats = [
                FunctionStats(
                    name=key[0],
                    filename=key[1],
                    line=key[2] if by == "line" else None,
                    self_count=self_counts.get(key, 0),
                    total_count=total,
                )
                for key, total in total_counts.items()
            ]
        stats.sort(key=lambda s: (-s.self_count, -s.total_count, s.name, s.filename, s.line or 0))
        return stats

    def _cache_entry(self, key: tuple, factory) -> list:
        """[samples already folded in, aggregate state] for one option set."""
        entry = self._cache.get(key)
        if entry is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            entry = self._cache[key] = [0, factory()]
        return entry

    # -- comparison -----------------------------------------------------------------------
    def diff(self, baseline: Profile) -> ProfileDiff:
        """This profile against `baseline`: each function's change in self share, and
        which changes are within sampling noise (`diff.py`; its `to_html` draws them)."""
        from .diff import diff_profiles

        return diff_profiles(self, baseline)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Profile):
            return NotImplemented
        return (
            self.metadata == other.metadata
            and self.samples == other.samples
            and self.rate_changes == other.rate_changes
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"<Profile {self.sample_count} samples, {self.trace_count} traces, "
            f"{len(self.errors)} errors, {self.duration:.3f}s>"
        )
