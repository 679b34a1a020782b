"""A profile: one session's samples aggregated as they arrive, plus the views drawn from them.

Samples are aggregated on the way in: per distinct stack (Trace) a count and a summed weight
(each sample's gap to the next), plus bounded summaries (first and last timestamp, lateness,
error counts and the first errors, rate changes, threads, pids). Memory grows with distinct
stacks, not samples, and every view (folded stacks, functions, the flame trees, the summary,
pstats) is computed from the distinct stacks with the filters applied to them.

The samples themselves, in time order, are kept only when asked (`keep_samples=True`, the
default of the Python API): the exports that show time (chrometrace, gecko, speedscope) and
the lossless ones (jsonl, binary) need them. `record` keeps them only for those formats;
the binary recording streams them to disk instead.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from ..engine.sample import RateChange, Sample, SampleError, Trace
from ..reader import Frame
from .aggregate import LatenessSummary, TraceStats
from .flametree import opcode_label
from .samplelog import SampleLog
from .timeline import Timeline

if TYPE_CHECKING:
    from .diff import ProfileDiff

BY_CHOICES = ("line", "function")
MAX_KEPT_ERRORS = 1000  # errors kept with their timestamps; past that only counted
# Trace objects looked up by identity, the engine's shared ones; past this many beyond the
# distinct stacks (objects for stacks seen before, made anew), the identity map is dropped
# and rebuilt, so that it cannot grow with the samples.
_ID_SLACK = 4096
_UNKEYED = object()  # a TraceStats not yet given its timeline key


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
    # by function: the function's first line (from its code object); not part of equality
    first_line: int | None = field(default=None, compare=False)


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


class SamplesNotKept(ValueError):
    """A view or export needs every sample in time order, and the profile kept only its
    aggregates. The message names what needed them and how to keep them."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(
            f"{what} needs every sample in time order, but this profile kept only aggregates "
            "(Profile(keep_samples=False)); record with keep_samples=True, or stream a binary "
            "recording (record --recording FILE, or -f binary) and convert it with "
            f"`spy_magic replay FILE --format ...`"
        )


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 1]) of already sorted values; 0 when empty."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class Profile:
    """One profiling session: samples aggregated per distinct stack as they arrive (and the
    samples themselves when `keep_samples`), with aggregate views over them.

    Safe for one writer (the engine's collector calling `add`) and concurrent readers (a
    live view polling `stack_counts`). A `Collector`: give it to `Sampler.add_collector` and
    it gets rate changes in order too. Treat `samples`, `errors` and the other lists as
    read-only.
    """

    def __init__(self, metadata: dict | None = None, *, keep_samples: bool = True) -> None:
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.keep_samples = bool(keep_samples)
        self._samples: SampleLog | None = SampleLog() if keep_samples else None
        # The timeline, kept as samples arrive (bounded: timeline.py).
        self.timeline: Timeline | None = Timeline()
        self.rate_changes: list[RateChange] = []
        self.errors: list[TimedError] = []  # the first MAX_KEPT_ERRORS, with timestamps
        self._error_counts: Counter[str] = Counter()
        self.trace_count = 0
        self._count = 0
        self._first = 0.0
        self._last = -math.inf
        self._entries: list[TraceStats] = []  # one per distinct Trace, first seen first
        self._by_value: dict[Trace, TraceStats] = {}
        self._by_id: dict[int, TraceStats] = {}
        self._held: list[Trace] = []  # keeps the ids in _by_id valid
        self._pending: list[TraceStats] = []  # the last sample's: weighed by the next one
        self._late = LatenessSummary()
        self._threads: dict[tuple[int, int], str | None] = {}
        self._pids: dict[int, None] = {}
        self._labels: dict[str, dict[Frame, str]] = {by: {} for by in BY_CHOICES}
        self._lock = threading.RLock()

    # -- recording ------------------------------------------------------------------------
    def add(self, sample: Sample) -> None:
        """Take one sample in; samples must arrive in timestamp order."""
        timestamp = sample.timestamp
        with self._lock:
            last = self._last
            if timestamp < last:
                raise ValueError(
                    f"sample at {timestamp} is older than the last one "
                    f"({last}); samples must be added in order"
                )
            if self._count:
                gap = timestamp - last
                for entry in self._pending:
                    entry.weight += gap
            else:
                self._first = timestamp
            by_id = self._by_id
            pending = []
            for trace in sample.traces:
                entry = by_id.get(id(trace))
                if entry is None:
                    entry = self._entry_of(trace)
                entry.count += 1
                pending.append(entry)
            self._pending = pending
            self.trace_count += len(pending)
            timeline = self.timeline
            if timeline is not None:
                keys = []
                for entry in pending:
                    key = entry.keys.get("timeline", _UNKEYED)
                    if key is _UNKEYED:
                        key = entry.keys["timeline"] = timeline.key_of(entry.trace)
                    keys.append(key)
                timeline.count(timestamp, keys)
            if sample.late is not None:
                self._late.add(sample.late)
            if sample.errors:
                self._add_errors(timestamp, sample.errors)
            if self._samples is not None:
                self._samples.append(sample)
            self._last = timestamp
            self._count += 1

    def _entry_of(self, trace: Trace) -> TraceStats:
        """The stats of a Trace not looked up by identity before (a new stack, or a new
        object for a known one)."""
        entry = self._by_value.get(trace)
        if entry is None:
            entry = self._by_value[trace] = TraceStats(trace)
            self._entries.append(entry)
            self._pids.setdefault(trace.pid)
            key = (trace.pid, trace.thread_id)
            if trace.thread_name is not None or key not in self._threads:
                self._threads[key] = trace.thread_name
        elif entry.trace is not trace:
            if len(self._held) > len(self._entries) + _ID_SLACK:
                self._held.clear()
                self._by_id = {id(e.trace): e for e in self._entries}
            self._held.append(trace)
        self._by_id[id(trace)] = entry
        return entry

    def _add_errors(self, timestamp: float, errors: Iterable[SampleError]) -> None:
        for error in errors:
            self._error_counts[error.kind] += 1
            if len(self.errors) < MAX_KEPT_ERRORS:
                self.errors.append(TimedError(timestamp, error))

    def extend(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            self.add(sample)

    def add_rate_change(self, change: RateChange) -> None:
        with self._lock:
            self.rate_changes.append(change)

    def finish(self) -> None:
        """The sampler ended (the Collector protocol): nothing to settle, the last sample's
        weight is worked out when a view asks."""

    # -- plain facts ----------------------------------------------------------------------
    @property
    def samples(self) -> SampleLog:
        """Every sample in order (a Sequence, stored compactly); only with keep_samples."""
        if self._samples is None:
            raise SamplesNotKept("the sample log (Profile.samples)")
        return self._samples

    def require_samples(self, what: str) -> SampleLog:
        """The samples, or SamplesNotKept naming `what` needed them."""
        if self._samples is None:
            raise SamplesNotKept(what)
        return self._samples

    @property
    def sample_count(self) -> int:
        return self._count

    def error_counts(self) -> Counter[str]:
        """How many errors of each kind (the ReaderError class name), all of them counted
        (`errors` keeps only the first MAX_KEPT_ERRORS)."""
        with self._lock:
            return Counter(self._error_counts)

    def threads(self) -> list[ThreadInfo]:
        """Every (pid, thread_id, thread_name) seen, in order of first appearance."""
        with self._lock:
            return [ThreadInfo(pid, tid, name) for (pid, tid), name in self._threads.items()]

    def pids(self) -> list[int]:
        """Every pid seen in a trace, in order of first appearance."""
        with self._lock:
            return list(self._pids)

    def first_timestamp(self) -> float | None:
        return self._first if self._count else None

    def last_timestamp(self) -> float | None:
        return self._last if self._count else None

    @property
    def duration(self) -> float:
        """Seconds from the first sample to the last; metadata's `duration` when that
        span is not measurable (fewer than two samples)."""
        if self._count >= 2:
            return self._last - self._first
        return float(self.metadata.get("duration") or 0.0)

    @property
    def effective_rate(self) -> float:
        """Samples per second actually taken (mean over the gaps); 0 when unmeasurable."""
        n = self._count
        if n < 2:
            return 0.0
        span = self._last - self._first
        return (n - 1) / span if span > 0 else 0.0

    def last_weight(self) -> float:
        """The time the last sample stands for, having no successor: the mean gap (the
        expected gap under the sampler's schedule), or 1/metadata["rate"] for a single
        sample."""
        if self._count >= 2:
            return (self._last - self._first) / (self._count - 1)
        rate = self.metadata.get("rate")
        return 1.0 / rate if isinstance(rate, (int, float)) and rate > 0 else 0.0

    def gaps(self) -> list[float]:
        """Seconds between consecutive samples (needs the samples)."""
        ts = self.require_samples("Profile.gaps").timestamps()
        return [b - a for a, b in zip(ts, ts[1:])]

    def sample_durations(self) -> list[float]:
        """The time each sample stands for: the gap to the next sample (needs the samples).

        The last sample has no successor: it gets `last_weight()`. Summing these weights
        gives real elapsed time even when the rate changed or samples were late, which a
        nominal 1/rate weight would not.
        """
        gaps = self.gaps()
        if not self._count:
            return []
        return [*gaps, self.last_weight()]

    def lateness(self) -> dict[str, float]:
        """How late samples were: `count` of late samples, and `p50`/`p90`/`p99`/`max`
        seconds over all samples (on-time samples count as 0), to judge how far the
        schedule — and so the weights — can be trusted. Exact up to 4096 late samples,
        then within 0.5 % (`aggregate.LatenessSummary`); `max` always exact."""
        with self._lock:
            late = self._late
            p50, p90, p99 = late.percentiles(self._count, (0.50, 0.90, 0.99))
            return {"count": late.count, "p50": p50, "p90": p90, "p99": p99, "max": late.max}

    # -- traces and aggregates ------------------------------------------------------------
    def trace_stats(
        self,
        *,
        pids: Iterable[int] | None = None,
        thread_ids: Iterable[int] | None = None,
        idle: bool = True,
        gil_only: bool = False,
    ) -> list[TraceStats]:
        """Per distinct stack the filters keep: its Trace, sample count and weight in
        seconds (the last sample's share included), first seen first. Copies: a live
        profile goes on counting."""
        flt = TraceFilter.make(pids, thread_ids, idle, gil_only)
        with self._lock:
            extra: dict[int, int] = {}
            for entry in self._pending:
                extra[id(entry)] = extra.get(id(entry), 0) + 1
            last = self.last_weight() if extra else 0.0
            out = []
            for entry in self._entries:
                if not flt.accepts(entry.trace):
                    continue
                copy = TraceStats(entry.trace, entry.count, entry.weight)
                n = extra.get(id(entry))
                if n:
                    copy.weight += n * last
                copy.keys = entry.keys  # derived keys are shared, never changed
                out.append(copy)
            return out

    def iter_traces(
        self,
        *,
        pids: Iterable[int] | None = None,
        thread_ids: Iterable[int] | None = None,
        idle: bool = True,
        gil_only: bool = False,
    ) -> Iterator[tuple[int, Sample, Trace]]:
        """(sample index, sample, trace) for every trace the filters keep, in sample order
        (needs the samples; `trace_stats` gives the same per distinct stack)."""
        flt = TraceFilter.make(pids, thread_ids, idle, gil_only)
        samples = self.require_samples("Profile.iter_traces")
        for index, sample in enumerate(list(samples)):
            for trace in sample.traces:
                if flt.accepts(trace):
                    yield index, sample, trace

    def stack_count(self) -> int:
        """Thread stacks with Python frames: what 100 % of a flame graph is."""
        with self._lock:
            return sum(e.count for e in self._entries if e.trace.frames)

    def label_stack(self, stats: TraceStats, by: str) -> tuple[str, ...]:
        """The trace's frame labels, root first (cached per distinct stack)."""
        key = "labels:" + by
        stack = stats.keys.get(key)
        if stack is None:
            labels = self._labels[by]
            out = []
            for frame in reversed(stats.trace.frames):
                label = labels.get(frame)
                if label is None:
                    label = labels[frame] = frame_label(frame, by)
                out.append(label)
            stack = stats.keys[key] = tuple(out)
        return stack  # type: ignore[return-value]

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
        opcodes: bool = False,
    ) -> dict[tuple[str, ...], int]:
        """Folded stacks, root first, counted once per trace (the lines `collapsed` prints,
        before escaping).

        `threads` adds a `thread "name" (tid)` root per thread; `processes` adds the process
        chain above it (default: only when more than one pid was sampled); `opcodes` ends
        each stack whose innermost instruction is known with its `<opcode NAME>`. Traces
        with no Python frames are skipped.
        """
        check_by(by)
        if processes is None:
            processes = len(self._pids) > 1
        counts: Counter = Counter()
        for stats in self.trace_stats(pids=pids, thread_ids=thread_ids, idle=idle,
                                      gil_only=gil_only):  # fmt: skip
            if not stats.trace.frames:
                continue
            roots: tuple[str, ...] = ()
            if processes:
                roots = process_labels(stats.trace)
            if threads:
                roots = (*roots, thread_label(stats.trace))
            stack = (*roots, *self.label_stack(stats, by))
            if opcodes and stats.trace.opcode is not None:
                stack = (*stack, opcode_label(stats.trace.opcode))
            counts[stack] += stats.count
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
        """Self and total counts per function (or per line), most self time first: the one
        "top" aggregation (the report's table, `top`, the notebook's live view)."""
        check_by(by)
        self_counts: Counter = Counter()
        total_counts: Counter = Counter()
        first_lines: dict[tuple, int] = {}
        key = "functions:" + by
        for stats in self.trace_stats(pids=pids, thread_ids=thread_ids, idle=idle,
                                      gil_only=gil_only):  # fmt: skip
            frames = stats.trace.frames
            if not frames:
                continue
            keys = stats.keys.get(key)
            if keys is None:
                firsts = {frame_key(f, by): f.firstlineno for f in reversed(frames)}
                keys = stats.keys[key] = (frame_key(frames[0], by), tuple(firsts.items()))
            self_counts[keys[0]] += stats.count
            for k, first in keys[1]:
                total_counts[k] += stats.count
                first_lines.setdefault(k, first)
        stats_list = [
            FunctionStats(
                name=k[0],
                filename=k[1],
                line=k[2] if by == "line" else None,
                self_count=self_counts.get(k, 0),
                total_count=total,
                first_line=first_lines.get(k) if by == "function" else None,
            )
            for k, total in total_counts.items()
        ]
        stats_list.sort(
            key=lambda s: (-s.self_count, -s.total_count, s.name, s.filename, s.line or 0)
        )
        return stats_list

    # -- derived profiles -----------------------------------------------------------------
    def map_traces(self, change: Callable[[Trace], Trace | None]) -> Profile:
        """A new profile with every trace replaced by `change(trace)` (None: dropped), the
        samples, timing, lateness, errors and rate changes kept. Each distinct Trace is
        changed once."""
        with self._lock:
            out = Profile(dict(self.metadata), keep_samples=self.keep_samples)
            done: dict[int, Trace | None] = {}

            def mapped(trace: Trace) -> Trace | None:
                key = id(trace)
                if key not in done:
                    done[key] = change(trace)
                return done[key]

            if self._samples is not None:
                for sample in self._samples:
                    traces = [t for t in map(mapped, sample.traces) if t is not None]
                    out.add(Sample(sample.timestamp, traces, sample.late, list(sample.errors)))
            else:
                out.timeline = None  # its stacks are by function, not trace: not mappable
                for entry in self._entries:
                    new = mapped(entry.trace)
                    if new is not None:
                        target = out._entry_of(new)
                        target.count += entry.count
                        target.weight += entry.weight
                        out.trace_count += entry.count
                out._pending = [
                    out._by_value[t] for t in map(mapped, (e.trace for e in self._pending))
                    if t is not None
                ]
                out._count, out._first, out._last = self._count, self._first, self._last
                self._late.merge_into(out._late)
                out._late.count, out._late.zeros = self._late.count, self._late.zeros
                out.errors = list(self.errors)
                out._error_counts = Counter(self._error_counts)
            out.rate_changes = list(self.rate_changes)
            return out

    # -- comparison -----------------------------------------------------------------------
    def diff(self, baseline: Profile) -> ProfileDiff:
        """This profile against `baseline`: each function's change in self share, and
        which changes are within sampling noise (`diff.py`; its `to_html` draws them)."""
        from .diff import diff_profiles

        return diff_profiles(self, baseline)

    def _aggregate_key(self) -> tuple:
        return (
            self._count,
            self._first if self._count else None,
            self._last if self._count else None,
            {e.trace: e.count for e in self._entries},
            self._error_counts,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Profile):
            return NotImplemented
        if self.metadata != other.metadata or self.rate_changes != other.rate_changes:
            return False
        if self._samples is not None and other._samples is not None:
            return self._samples == other._samples
        return self._aggregate_key() == other._aggregate_key()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"<Profile {self.sample_count} samples, {self.trace_count} traces, "
            f"{len(self._entries)} distinct, {sum(self._error_counts.values())} errors, "
            f"{self.duration:.3f}s>"
        )
