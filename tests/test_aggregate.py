"""Aggregating on the way in: bounded memory, the same views as per-sample counting, and
the Collector interface the sampler feeds."""

from __future__ import annotations

import math
import random
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
from conftest import read_line

from spy_magic.engine import BaseSampler, Collector, RateChange, Sample, SampleError, Sampler, Trace
from spy_magic.profile import Profile, write
from spy_magic.profile.aggregate import EXACT_LATENESS, LatenessSummary
from spy_magic.profile.exports import FORMATS, NEEDS_SAMPLES, thread_stack_counts
from spy_magic.profile.model import (
    MAX_KEPT_ERRORS,
    SamplesNotKept,
    TraceFilter,
    frame_key,
    frame_label,
    percentile,
    process_labels,
    thread_label,
)
from spy_magic.profile.pstats_export import pstats_dict
from spy_magic.profile.summary import summarize
from spy_magic.profile.top import top_rows
from spy_magic.reader import Frame

TARGETS = Path(__file__).parent / "targets"


# -- the per-sample computations the aggregate replaced (as they were) --------------------
def old_stack_counts(samples, by, flt, threads, processes):
    counts: Counter = Counter()
    for sample in samples:
        for trace in sample.traces:
            if not trace.frames or not flt.accepts(trace):
                continue
            stack = [frame_label(f, by) for f in reversed(trace.frames)]
            roots: tuple = process_labels(trace) if processes else ()
            if threads:
                roots = (*roots, thread_label(trace))
            counts[(*roots, *stack)] += 1
    return dict(counts)


def old_functions(samples, by, flt):
    self_counts: Counter = Counter()
    total_counts: Counter = Counter()
    for sample in samples:
        for trace in sample.traces:
            if not trace.frames or not flt.accepts(trace):
                continue
            self_counts[frame_key(trace.frames[0], by)] += 1
            total_counts.update({frame_key(f, by) for f in trace.frames})
    return {k: (self_counts.get(k, 0), t) for k, t in total_counts.items()}


def old_thread_counts(samples, by):
    out: dict = {}
    for sample in samples:
        for trace in sample.traces:
            if trace.frames:
                stack = tuple(frame_label(f, by) for f in reversed(trace.frames))
                out.setdefault((trace.pid, trace.thread_id), Counter())[stack] += 1
    return out


def old_pstats_times(samples, durations, flt):
    """(tt, ct) per function key, from per-sample weights."""
    times: dict = {}
    for weight, sample in zip(durations, samples):
        for trace in sample.traces:
            if not trace.frames or not flt.accepts(trace):
                continue
            keys = [(f.filename, f.firstlineno, f.name) for f in trace.frames]
            for depth, key in enumerate(keys):
                entry = times.setdefault(key, [0.0, 0.0])
                if depth == 0:
                    entry[0] += weight
            for key in set(keys):
                times[key][1] += weight
    return times


def old_lateness(samples):
    values = sorted(s.late or 0.0 for s in samples)
    return {
        "count": sum(1 for s in samples if s.late is not None),
        "p50": percentile(values, 0.5),
        "p90": percentile(values, 0.9),
        "p99": percentile(values, 0.99),
        "max": values[-1] if values else 0.0,
    }


@pytest.fixture(scope="module")
def recorded(spawn_module) -> list[Sample]:
    """A real recording: tests/targets/parallel_churn.py (two threads recursing to random
    depths, the main thread waiting), 1.5 s at 500 Hz."""
    proc = spawn_module([sys.executable, TARGETS / "parallel_churn.py"], stdin=-1)
    assert read_line(proc) == "ready"
    samples: list[Sample] = []
    with Sampler(proc.pid, rate=500, duration=1.5, seed=7) as sampler:
        samples.extend(sampler)
    assert len(samples) > 100
    distinct = {t for s in samples for t in s.traces}
    assert len(distinct) > 20, "the target's stacks should vary"
    return samples


FILTERS = [
    {},
    {"idle": False},
    {"gil_only": True},
    {"thread_ids": "first"},
    {"pids": "target"},
]


def _filters(spec: dict, samples: list[Sample]) -> dict:
    out = dict(spec)
    if out.get("thread_ids") == "first":
        out["thread_ids"] = [next(t.thread_id for s in samples for t in s.traces)]
    if out.get("pids") == "target":
        out["pids"] = [next(t.pid for s in samples for t in s.traces)]
    return out


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "aggregates-only"])
def test_every_view_equals_the_per_sample_computation(recorded, keep) -> None:
    profile = Profile({"rate": 500}, keep_samples=keep)
    profile.extend(recorded)
    for spec in FILTERS:
        filters = _filters(spec, recorded)
        flt = TraceFilter.make(**filters)
        for by in ("line", "function"):
            for threads in (False, True):
                for processes in (False, True):
                    got = profile.stack_counts(by=by, threads=threads, processes=processes,
                                               **filters)  # fmt: skip
                    assert got == old_stack_counts(recorded, by, flt, threads, processes)
            got = {
                (s.name, s.filename, *(() if by == "function" else (s.line,))): (
                    s.self_count,
                    s.total_count,
                )
                for s in profile.functions(by=by, **filters)
            }
            assert got == old_functions(recorded, by, flt)
    by_thread = {(pid, tid): dict(c) for (pid, tid, _), c in thread_stack_counts(profile).items()}
    assert by_thread == {k: dict(v) for k, v in old_thread_counts(recorded, "line").items()}

    gaps = [b.timestamp - a.timestamp for a, b in zip(recorded, recorded[1:])]
    durations = [*gaps, sum(gaps) / len(gaps)]
    for spec in FILTERS[:3]:
        filters = _filters(spec, recorded)
        old = old_pstats_times(recorded, durations, TraceFilter.make(**filters))
        new = pstats_dict(profile, **filters)
        assert set(new) == set(old)
        for key, (tt, ct) in old.items():
            assert new[key][2] == pytest.approx(tt, rel=1e-9, abs=1e-12)
            assert new[key][3] == pytest.approx(ct, rel=1e-9, abs=1e-12)

    assert profile.lateness() == pytest.approx(old_lateness(recorded))
    summary = summarize(profile)
    assert summary.stacks == sum(1 for s in recorded for t in s.traces if t.frames)
    assert summary.samples == len(recorded)
    assert summary.duration == pytest.approx(recorded[-1].timestamp - recorded[0].timestamp)
    assert profile.trace_count == sum(len(s.traces) for s in recorded)
    assert [t[:2] for t in profile.threads()] == list(
        dict.fromkeys((t.pid, t.thread_id) for s in recorded for t in s.traces)
    )
    weights = sum(s.weight for s in profile.trace_stats())
    per_sample = sum(d * len(s.traces) for d, s in zip(durations, recorded))
    assert weights == pytest.approx(per_sample)
    # Every export that needs only aggregates writes the same from both kinds of profile.
    kept = Profile({"rate": 500})
    kept.extend(recorded)
    for fmt in ("collapsed", "html"):
        assert FORMATS[fmt](profile) == FORMATS[fmt](kept)


def test_map_traces_gives_the_same_profile_either_way(recorded) -> None:
    """The notebook trims kernel machinery with `map_traces`: with or without the samples,
    the trimmed views agree."""

    def drop_outer(trace: Trace) -> Trace | None:
        if trace.thread_name and trace.thread_name.startswith("churn-0"):
            return None
        return Trace(trace.pid, trace.thread_id, trace.native_id, trace.thread_name,
                     trace.gil, trace.idle, trace.frames[:3])  # fmt: skip

    both = []
    for keep in (True, False):
        profile = Profile({"rate": 500}, keep_samples=keep)
        profile.extend(recorded)
        both.append(profile.map_traces(drop_outer))
    kept, aggregated = both
    assert kept.stack_counts() == aggregated.stack_counts()
    assert kept.lateness() == aggregated.lateness()
    assert kept.sample_count == aggregated.sample_count == len(recorded)
    assert kept.trace_count == aggregated.trace_count
    old, new = pstats_dict(kept), pstats_dict(aggregated)
    assert set(old) == set(new)
    for key, (cc, nc, tt, ct, _callers) in old.items():
        assert new[key][:2] == (cc, nc)
        assert new[key][2:4] == pytest.approx((tt, ct))
    assert summarize(kept).stacks == summarize(aggregated).stacks
    # The timeline too: the aggregate one is mapped stack by stack, not dropped.
    assert aggregated.timeline is not None
    assert timeline_stacks(kept.timeline) == timeline_stacks(aggregated.timeline)
    assert len(timeline_stacks(aggregated.timeline)) >= 2, "two churn threads at least"


def timeline_stacks(timeline) -> dict:
    """Per thread, per bucket, how many times each call path (name, file pairs) was seen."""

    def path(node: int) -> tuple:
        out = []
        while node >= 0:
            out.append((timeline._name[node], timeline._file[node]))
            node = timeline._parent[node]
        return tuple(out)

    return {
        key: {index: Counter({path(leaf): n for leaf, n in counts.items()})
              for index, counts in lane.buckets.items()}
        for key, lane in timeline.lanes.items() if lane.buckets
    }  # fmt: skip


# -- bounded memory -----------------------------------------------------------------------
def _stacks(count: int, depth: int) -> list[Trace]:
    traces = []
    for i in range(count):
        frames = tuple(Frame(f"f{i}_{d}", "/app/work.py", 10 + d, 10) for d in range(depth))
        traces.append(Trace(1, 100 + i % 3, None, f"t{i % 3}", i % 2 == 0, i % 4 == 0, frames))
    return traces


def test_a_long_recording_of_few_stacks_keeps_memory_flat() -> None:
    """2^17 samples over 12 stacks (85 frames): what the aggregate holds after 2^16 samples
    is what it holds after twice as many, within a few KB (each sample late, one in five
    with an error: those summaries are bounded too, and full by then; the timeline's
    buckets, merged pairwise as it doubles its width, fill to the same count at the same
    phase); the sample log, kept, grows."""
    traces = _stacks(12, 85)
    rng = random.Random(3)
    error = SampleError(1, None, "TornStack", "moved")

    def feed(profile: Profile, start: int, stop: int) -> None:
        for i in range(start, stop):
            trace = traces[rng.randrange(len(traces))]
            profile.add(Sample(i * 1e-3, [trace], rng.expovariate(5e3),
                               [error] if i % 5 == 0 else None))  # fmt: skip

    sizes = {}
    for keep in (False, True):
        profile = Profile(keep_samples=keep)
        # The timeline is bounded by its buckets, not flat within KB (buckets fill, then
        # merge): measured apart, below and in test_timeline_heatmap.
        profile.timeline = None
        feed(profile, 0, 1 << 16)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            feed(profile, 1 << 16, 1 << 17)
            sizes[keep] = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert profile.sample_count == 1 << 17
        assert len(profile.errors) == MAX_KEPT_ERRORS
        assert profile.error_counts() == {"TornStack": len(range(0, 1 << 17, 5))}
    assert sizes[False] < 32 * 1024, sizes
    # The timeline alone over as many samples: its buckets stay within their bound.
    profile = Profile(keep_samples=False)
    feed(profile, 0, 1 << 17)
    lanes = profile.timeline.lanes.values()
    assert all(len(lane.buckets) <= profile.timeline.size for lane in lanes)
    assert sum(profile.timeline.samples.values()) == 1 << 17
    assert sizes[True] > 40 * sizes[False] + 1_000_000, sizes  # the log: ~24 bytes a sample


def test_new_objects_for_known_stacks_do_not_grow_the_profile() -> None:
    """The engine remakes a Trace it no longer remembers: an equal object is the same
    distinct stack, and the identity map stays bounded."""
    (template,) = _stacks(1, 20)
    profile = Profile(keep_samples=False)
    tracemalloc.start()
    try:
        for i in range(8_000):  # warm up past the identity map's slack
            fresh = Trace(*(getattr(template, f) for f in Trace.__dataclass_fields__))
            profile.add(Sample(i * 1e-3, [fresh]))
        before = tracemalloc.get_traced_memory()[0]
        for i in range(8_000, 24_000):
            fresh = Trace(*(getattr(template, f) for f in Trace.__dataclass_fields__))
            profile.add(Sample(i * 1e-3, [fresh]))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(profile.trace_stats()) == 1 and profile.trace_stats()[0].count == 24_000
    assert grown < 400_000, grown  # 16,000 kept objects would be several MB


def test_lateness_past_the_exact_limit_stays_within_half_a_percent() -> None:
    rng = random.Random(5)
    values = [rng.lognormvariate(-8, 1.5) for _ in range(EXACT_LATENESS * 10)]
    summary = LatenessSummary()
    for v in values:
        summary.add(v)
    samples = len(values) * 3  # two thirds on time
    exact = sorted([0.0] * (samples - len(values)) + values)
    got = summary.percentiles(samples, (0.5, 0.9, 0.99, 0.999))
    for q, value in zip((0.5, 0.9, 0.99, 0.999), got):
        want = percentile(exact, q)
        assert value == pytest.approx(want, rel=0.006, abs=1e-12), q
    assert summary.max == max(values) and summary.count == len(values)


# -- samples only where asked -------------------------------------------------------------
def test_exports_that_need_samples_say_so_and_nothing_is_lost(tmp_path) -> None:
    traces = _stacks(3, 4)
    profile = Profile({"rate": 100}, keep_samples=False)
    profile.extend(Sample(i * 0.01, [traces[i % 3]]) for i in range(30))
    before = profile.stack_counts()
    for fmt in NEEDS_SAMPLES:
        with pytest.raises(SamplesNotKept) as caught:
            write(profile, tmp_path / f"out.{fmt}", fmt)
        message = str(caught.value)
        assert fmt in message and "keep_samples=True" in message and "replay" in message
    with pytest.raises(SamplesNotKept, match=r"Profile\.samples"):
        profile.samples  # noqa: B018
    for fmt in sorted(set(FORMATS) - set(NEEDS_SAMPLES)):
        write(profile, tmp_path / f"ok.{fmt}", fmt)
        assert (tmp_path / f"ok.{fmt}").stat().st_size > 0
    assert profile.stack_counts() == before and profile.sample_count == 30
    profile.add(Sample(0.5, [traces[0]]))  # still collecting
    assert profile.sample_count == 31


def test_record_keeps_samples_only_for_formats_that_need_them() -> None:
    import argparse

    from spy_magic.cli.record import EXTENSIONS, keeps_samples

    kept = {f for f in EXTENSIONS if keeps_samples(argparse.Namespace(format=f))}
    assert kept == {"speedscope", "chrometrace", "jsonl", "gecko"}  # binary: streamed


# -- the Collector interface --------------------------------------------------------------
class _SlowSampler(BaseSampler):
    """The real sampling loop with a take that costs 3 ms: at 1 kHz the rate must drop."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.trace = _stacks(1, 3)[0]

    def _take(self, traces, errors) -> None:
        time.sleep(0.003)
        traces.append(self.trace)


class _Log:
    """A whole new output: one class, given to add_collector."""

    def __init__(self) -> None:
        self.events: list = []

    def add(self, sample: Sample) -> None:
        self.events.append(sample)

    def add_rate_change(self, change: RateChange) -> None:
        self.events.append(change)

    def finish(self) -> None:
        self.events.append("finish")


def test_a_collector_gets_samples_and_rate_changes_in_order_then_finish() -> None:
    log = _Log()
    profile = Profile()
    assert isinstance(log, Collector) and isinstance(profile, Collector)
    sampler = _SlowSampler(rate=1000, duration=1.5, seed=1)
    sampler.add_collector(log)
    sampler.add_collector(profile)
    sampler.start()
    sampler.join()
    assert log.events[-1] == "finish" and log.events.count("finish") == 1
    changes = [e for e in log.events if isinstance(e, RateChange)]
    assert changes, "a 3 ms take at 1 kHz must lower the rate"
    assert changes == sampler.rate_changes
    assert profile.rate_changes == sampler.rate_changes
    times = [e.timestamp for e in log.events[:-1]]
    assert times == sorted(times), "each change arrives between the samples around it"
    samples = [e for e in log.events if isinstance(e, Sample)]
    assert profile.sample_count == len(samples) == sampler.samples_taken


def test_a_callable_is_still_a_collector_and_a_bad_one_is_refused() -> None:
    seen = []
    sampler = _SlowSampler(rate=50, duration=0.2)
    sampler.add_collector(seen.append)
    with pytest.raises(TypeError, match="add_rate_change"):
        sampler.add_collector(object())
    sampler.start()
    sampler.join()
    assert seen and all(isinstance(s, Sample) for s in seen)


def test_top_rows_are_the_profiles_function_counts() -> None:
    traces = _stacks(3, 4)
    profile = Profile(keep_samples=False)
    profile.extend(Sample(i * 0.01, [traces[i % 3], traces[0]]) for i in range(30))
    rows = top_rows(profile, None)
    stats = profile.functions(by="function")
    assert [(r.name, r.own, r.total) for r in rows] == [
        (s.name, s.self_count, s.total_count) for s in stats
    ]
    assert math.isclose(rows[0].own_pct, 100 * stats[0].self_count / 60)
    assert rows[0].first_line == 10
    by_total = top_rows(profile, 2, sort="total")
    assert [r.total for r in by_total] == sorted((s.total_count for s in stats), reverse=True)[:2]
