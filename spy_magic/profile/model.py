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

`to_json`/`from_json` carry a profile's aggregates (and, only when asked, its samples) to
another process as one JSON-able dict: how the notebook's helper hands its finished profile
to the kernel, at a size that grows with the distinct stacks, not the samples.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from ..engine.sample import ProcessLabel, RateChange, Sample, SampleError, Trace
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
        self._gaps: LatenessSummary | None = None  # carried by from_json without samples
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
                timeline.count(timestamp, keys, sample.late)
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

    def late_values(self) -> list[tuple[float, int]]:
        """(seconds, how many samples) of the samples late by more than 0, ascending: exact
        up to 4096 of them, then 1 %-wide buckets (`aggregate.LatenessSummary`)."""
        with self._lock:
            return self._late.positive()

    def gap_summary(self) -> LatenessSummary:
        """The gaps between consecutive samples as a bounded distribution (the lag plot's
        test of the Poisson schedule): from the samples when kept, else the one a profile
        restored by `from_json` carries; SamplesNotKept when neither."""
        if self._samples is None:
            if self._gaps is None:
                raise SamplesNotKept("the gaps between samples")
            return self._gaps
        gaps = LatenessSummary()
        for gap in self.gaps():
            gaps.add(gap)
        return gaps

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
                timeline = self.timeline
                out.timeline = None if timeline is None else timeline.map_stacks(change)
                for entry in self._entries:
                    new = mapped(entry.trace)
                    if new is not None:
                        target = out._entry_of(new)
                        target.count += entry.count
                        target.weight += entry.weight
                        out.trace_count += entry.count
                out._pending = [
                    out._by_value[t]
                    for t in map(mapped, (e.trace for e in self._pending))
                    if t is not None
                ]
                out._count, out._first, out._last = self._count, self._first, self._last
                self._late.merge_into(out._late)
                out._late.count, out._late.zeros = self._late.count, self._late.zeros
                out.errors = list(self.errors)
                out._error_counts = Counter(self._error_counts)
                out._gaps = self._gaps
            out.rate_changes = list(self.rate_changes)
            return out

    # -- to another process ---------------------------------------------------------------
    def to_json(self, *, samples: bool = False) -> dict[str, Any]:
        """This profile as a JSON-able dict for `from_json`: each distinct string, frame and
        trace once, per trace its count and weight, and the bounded summaries (lateness,
        gaps, kept errors and every error's count, rate changes, threads, the timeline),
        so its size grows with the distinct stacks, not the samples. `samples=True` adds
        the samples in order (a few numbers each; needs `keep_samples`)."""
        with self._lock:
            table = _TraceTable()
            number = {id(entry): table.trace(entry.trace) for entry in self._entries}
            timeline = self.timeline
            out: dict[str, Any] = {
                "format": JSON_FORMAT,
                "version": JSON_VERSION,
                "metadata": json.loads(json.dumps(self.metadata, default=str)),
                "sample_count": self._count,
                "trace_count": self.trace_count,
                "first": self._first if self._count else None,
                "last": self._last if self._count else None,
                "counts": [e.count for e in self._entries],
                "weights": [e.weight for e in self._entries],
                "pending": [number[id(e)] for e in self._pending],
                "threads": [
                    [pid, tid, -1 if name is None else table.string(name)]
                    for (pid, tid), name in self._threads.items()
                ],
                "pids": list(self._pids),
                "lateness": self._late.to_json(),
                "gaps": None,
                "errors": [[e.timestamp, *table.error(e.error)] for e in self.errors],
                "error_counts": dict(self._error_counts),
                "rate_changes": [
                    [c.timestamp, c.old_rate, c.new_rate, c.reason] for c in self.rate_changes
                ],
                "timeline": None if timeline is None else timeline.to_state(table.string),
            }
            if self._samples is not None or self._gaps is not None:
                out["gaps"] = self.gap_summary().to_json()
            if samples:
                out["samples"] = _samples_to_json(
                    self.require_samples("Profile.to_json(samples=True)"), table,
                    lambda trace: number[id(self._by_value[trace])],
                )  # fmt: skip
            out.update(table.to_json())
            return out

    @classmethod
    def from_json(cls, data: Any) -> Profile:
        """The profile `to_json` wrote: its aggregates as they were (every view draws the
        same), its samples only when they were sent (else `keep_samples` is False).
        ProfileJsonError naming what is wrong when `data` is not one."""
        if type(data) is not dict or data.get("format") != JSON_FORMAT:
            raise ProfileJsonError(f"not a spy_magic profile: format {_shown(data, 'format')}")
        if data.get("version") != JSON_VERSION:
            raise ProfileJsonError(
                f"profile JSON version {_shown(data, 'version')}, this side reads {JSON_VERSION}"
            )
        try:
            return cls._from_json(data)
        except ProfileJsonError:
            raise
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise ProfileJsonError(f"a broken profile: {type(exc).__name__}: {exc}") from None

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> Profile:
        strings, traces = _TraceTable.from_json(data)
        sent = data.get("samples")
        metadata = data["metadata"]
        if type(metadata) is not dict:
            raise ValueError("metadata must be an object")
        out = cls(metadata, keep_samples=sent is not None)
        counts, weights = data["counts"], data["weights"]
        if not len(counts) == len(weights) == len(traces):
            raise ValueError(f"{len(traces)} traces, {len(counts)} counts, {len(weights)} weights")
        for trace, count, weight in zip(traces, counts, weights):
            if type(count) is not int or count < 1 or type(weight) not in (int, float):
                raise ValueError(f"trace count {count!r}, weight {weight!r}")
            entry = out._entry_of(trace)
            if entry.count:
                raise ValueError("a trace listed twice")
            entry.count, entry.weight = count, float(weight)
        out._pending = [_item(out._entries, i, "pending trace") for i in data["pending"]]
        n, first, last = data["sample_count"], data["first"], data["last"]
        if type(n) is not int or n < 0:
            raise ValueError(f"sample count {n!r}")
        if n:
            if type(first) not in (int, float) or type(last) not in (int, float) or first > last:
                raise ValueError(f"first sample at {first!r}, last at {last!r}")
            out._first, out._last = float(first), float(last)
        out._count = n
        out.trace_count = data["trace_count"]
        if out.trace_count != sum(counts):
            raise ValueError(f"trace count {out.trace_count!r}, the traces' counts {sum(counts)}")
        out._threads = {(pid, tid): None if name < 0 else strings[name]
                        for pid, tid, name in data["threads"]}  # fmt: skip
        out._pids = dict.fromkeys(int(p) for p in data["pids"])
        out._late = LatenessSummary.from_json(data["lateness"])
        if data["gaps"] is not None:
            out._gaps = LatenessSummary.from_json(data["gaps"])
        out.errors = [TimedError(float(t), SampleError(pid, tid, str(kind), str(message)))
                      for t, pid, tid, kind, message in data["errors"]]  # fmt: skip
        out._error_counts = Counter({str(k): int(v) for k, v in data["error_counts"].items()})
        out.rate_changes = [RateChange(float(t), float(a), float(b), str(why))
                            for t, a, b, why in data["rate_changes"]]  # fmt: skip
        state = data["timeline"]
        out.timeline = None if state is None else Timeline.from_state(state, strings)
        if sent is not None:
            out._samples = _samples_from_json(sent, out._entries)
            if len(out._samples) != n:
                raise ValueError(f"{len(out._samples)} samples sent, {n} counted")
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


# -- the JSON of Profile.to_json -----------------------------------------------------------

JSON_FORMAT = "spy_magic.aggregate"
JSON_VERSION = 1


class ProfileJsonError(ValueError):
    """Data that `Profile.from_json` cannot read; the message says what is wrong."""


def _shown(data: Any, key: str) -> str:
    value = data.get(key) if type(data) is dict else None
    return repr(value) if value is not None else f"missing ({type(data).__name__})"


class _TraceTable:
    """Strings, frames and traces numbered as first met: each shipped once."""

    def __init__(self) -> None:
        self.strings: dict[str, int] = {}
        self.frames: dict[Frame, int] = {}
        self.frame_rows: list[int] = []
        self.traces: list[list] = []

    def string(self, text: str) -> int:
        number = self.strings.get(text)
        if number is None:
            number = self.strings[text] = len(self.strings)
        return number

    def frame(self, f: Frame) -> int:
        number = self.frames.get(f)
        if number is None:
            number = self.frames[f] = len(self.frames)
            self.frame_rows.extend((self.string(f.name), self.string(f.filename), f.line,
                                    f.firstlineno))  # fmt: skip
        return number

    def trace(self, t: Trace) -> int:
        """A trace's number (call it once per distinct trace)."""
        self.traces.append([
            t.pid, t.thread_id, t.native_id,
            -1 if t.thread_name is None else self.string(t.thread_name),
            t.gil, t.idle, [self.frame(f) for f in t.frames],
            [[p.pid, self.string(p.command)] for p in t.processes],
            -1 if t.opcode is None else self.string(t.opcode),  # --opcodes
        ])  # fmt: skip
        return len(self.traces) - 1

    def error(self, e: SampleError) -> list:
        return [e.pid, e.thread_id, e.kind, e.message]

    def to_json(self) -> dict[str, list]:
        return {"strings": list(self.strings), "frames": self.frame_rows, "traces": self.traces}

    @staticmethod
    def from_json(data: dict[str, Any]) -> tuple[list[str], list[Trace]]:
        strings = data["strings"]
        if type(strings) is not list or not all(type(s) is str for s in strings):
            raise ValueError("strings must be a list of strings")
        flat = data["frames"]
        if len(flat) % 4:
            raise ValueError("frames must be 4 numbers each")
        frames = [
            Frame(_item(strings, flat[i], "string"), _item(strings, flat[i + 1], "string"),
                  int(flat[i + 2]), int(flat[i + 3]))
            for i in range(0, len(flat), 4)
        ]  # fmt: skip
        traces = [
            Trace(
                pid, tid, native, None if name < 0 else strings[name], gil, idle,
                tuple(_item(frames, f, "frame") for f in frame_ids),
                tuple(ProcessLabel(p, strings[c]) for p, c in processes),
                opcode=None if opcode < 0 else strings[opcode],
            )
            for pid, tid, native, name, gil, idle, frame_ids, processes, opcode in data["traces"]
        ]  # fmt: skip
        return strings, traces


def _samples_to_json(samples: SampleLog, table: _TraceTable, number: Callable[[Trace], int]
                     ) -> dict[str, list]:  # fmt: skip
    """The samples as columns, each distinct combination of traces once."""
    combos: dict[tuple[int, ...], int] = {}
    times, lates, sample_combos, errors = [], [], [], []
    known: dict[int, tuple[Trace, int]] = {}  # id(trace) -> (trace: keeps the id valid, number)
    for index, sample in enumerate(samples):
        key = []
        for trace in sample.traces:
            seen = known.get(id(trace))
            if seen is None:
                seen = known[id(trace)] = (trace, number(trace))
            key.append(seen[1])
        combo = combos.setdefault(tuple(key), len(combos))
        times.append(sample.timestamp)
        lates.append(sample.late)
        sample_combos.append(combo)
        errors.extend([index, *table.error(e)] for e in sample.errors)
    return {"times": times, "lates": lates, "combos": [list(c) for c in combos],
            "combo": sample_combos, "errors": errors}  # fmt: skip


def _samples_from_json(data: dict[str, list], entries: list[TraceStats]) -> SampleLog:
    combos = [[_item(entries, t, "sampled trace").trace for t in combo] for combo in data["combos"]]
    errors: dict[int, list[SampleError]] = {}
    for index, pid, tid, kind, message in data["errors"]:
        errors.setdefault(index, []).append(SampleError(pid, tid, kind, message))
    log = SampleLog()
    if not len(data["times"]) == len(data["lates"]) == len(data["combo"]):
        raise ValueError("sample columns of unequal length")
    for index, (timestamp, late, combo) in enumerate(
        zip(data["times"], data["lates"], data["combo"])
    ):
        if late is not None and not math.isfinite(late):
            late = None
        traces = list(_item(combos, combo, "combination"))
        log.append(Sample(float(timestamp), traces, late, errors.get(index, [])))
    return log


def _item(items: list, index: Any, what: str) -> Any:
    """items[index], refusing what a list would read from its end (a negative number)."""
    if type(index) is not int or not 0 <= index < len(items):
        raise ValueError(f"{what} {index!r} of {len(items)}")
    return items[index]
