"""Writing a Profile in the formats other tools read, and the lossless jsonl round trip.

- `collapsed`: `root;...;leaf count` lines for flamegraph.pl, inferno and speedscope.
- `speedscope`: speedscope's JSON file format, one "sampled" profile per thread, each sample
  weighted by the time it really stands for (see `Profile.sample_durations`).
- `chrometrace`: Trace Event Format JSON (chrome://tracing, Perfetto): per thread, runs of
  samples sharing a stack become nested B/E events at the real sample times.
- `jsonl`: every sample as taken, one JSON object per line; `read_jsonl` restores it.
- `html`: one offline page with the interactive flame graph (`html.py`, `flametree.py`).

JSON outputs are ASCII-escaped: names read from a target may hold lone surrogates, which a
UTF-8 encoder would reject but a `\\uXXXX` escape carries through.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import IO, Any, Callable, Union

from ..engine.sample import ProcessLabel, RateChange, Sample, SampleError, Trace
from ..reader import Frame
from .model import (
    Profile,
    TraceFilter,
    check_by,
    frame_key,
    frame_label,
    process_labels,
    thread_label,
)

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
JSONL_FORMAT = "spy_magic.profile"
JSONL_VERSION = 2  # 2: traces defined once, samples refer to them
EXPORTER = "spy_magic"

PathOrFile = Union[str, "os.PathLike[str]", IO[str], IO[bytes]]

# A `;` would split a label into two frames in the collapsed format, which has no escape
# syntax; the fullwidth semicolon reads the same. Line breaks would end the record.
_COLLAPSED_ESCAPES = str.maketrans({";": "\uff1b", "\n": "\\n", "\r": "\\r"})


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), default=str)


def _profile_name(profile: Profile) -> str:
    meta = profile.metadata
    for key in ("name", "command", "target"):
        if meta.get(key):
            value = meta[key]
            return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    if meta.get("pid") is not None:
        return f"pid {meta['pid']}"
    return "spy_magic profile"


def _sample_ends(profile: Profile) -> list[float]:
    """When each sample's time slice ends: the next sample's timestamp, exactly."""
    samples = profile.samples
    durations = profile.sample_durations()
    ends = [s.timestamp for s in samples[1:]]
    if samples:
        ends.append(samples[-1].timestamp + durations[-1])
    return ends


# -- collapsed ------------------------------------------------------------------------------
def escape_collapsed(label: str) -> str:
    """A label made safe for one collapsed-stack field: `;` becomes `；` (U+FF1B),
    CR/LF become the two-character escapes `\\r`/`\\n`."""
    return label.translate(_COLLAPSED_ESCAPES)


def to_collapsed(
    profile: Profile,
    *,
    by: str = "line",
    pids: Iterable[int] | None = None,
    thread_ids: Iterable[int] | None = None,
    idle: bool = True,
    gil_only: bool = False,
    threads: bool = False,
    processes: bool | None = None,
) -> str:
    """`frame;frame;frame count` lines, root first, sorted; the counts of `stack_counts`."""
    counts = profile.stack_counts(
        by=by,
        pids=pids,
        thread_ids=thread_ids,
        idle=idle,
        gil_only=gil_only,
        threads=threads,
        processes=processes,
    )
    lines = [
        ";".join(escape_collapsed(label) for label in stack) + f" {count}"
        for stack, count in sorted(counts.items())
    ]
    return "".join(line + "\n" for line in lines)


# -- speedscope -----------------------------------------------------------------------------
def _thread_profile_name(trace: Trace, multi_process: bool) -> str:
    label = thread_label(trace)
    if multi_process:
        label = " > ".join((*process_labels(trace), label))
    return label


def to_speedscope(
    profile: Profile,
    *,
    by: str = "line",
    pids: Iterable[int] | None = None,
    thread_ids: Iterable[int] | None = None,
    idle: bool = True,
    gil_only: bool = False,
) -> str:
    """speedscope JSON: a "sampled" profile per thread, weights in seconds.

    Each sample's weight is the gap to the next sample, so speedscope's totals are real
    time even under a Poisson schedule, rate changes or late samples. Frames are shared
    across threads; `by="function"` gives each function one frame (line = its first line).
    """
    check_by(by)
    flt = TraceFilter.make(pids, thread_ids, idle, gil_only)
    durations = profile.sample_durations()
    multi_process = len(profile.pids()) > 1

    frames: list[dict[str, Any]] = []
    frame_index: dict[tuple, int] = {}
    threads: dict[tuple[int, int], dict[str, Any]] = {}
    for i, sample in enumerate(profile.samples):
        for trace in sample.traces:
            if not trace.frames or not flt.accepts(trace):
                continue
            stack = []
            for frame in reversed(trace.frames):
                key = frame_key(frame, by)
                index = frame_index.get(key)
                if index is None:
                    index = frame_index[key] = len(frames)
                    line = frame.line if by == "line" else frame.firstlineno
                    entry: dict[str, Any] = {"name": frame.name, "file": frame.filename}
                    if isinstance(line, int) and line > 0:
                        entry["line"] = line
                    frames.append(entry)
                stack.append(index)
            thread = threads.get((trace.pid, trace.thread_id))
            if thread is None:
                thread = threads[(trace.pid, trace.thread_id)] = {
                    "type": "sampled",
                    "name": _thread_profile_name(trace, multi_process),
                    "unit": "seconds",
                    "startValue": 0.0,
                    "endValue": 0.0,
                    "samples": [],
                    "weights": [],
                }
            thread["samples"].append(stack)
            thread["weights"].append(durations[i])

    start = profile.samples[0].timestamp if profile.samples else 0.0
    ends = _sample_ends(profile)
    end = ends[-1] if ends else start
    profiles = list(threads.values())
    for p in profiles:
        p["startValue"] = start
        p["endValue"] = end
    active = max(range(len(profiles)), key=lambda k: sum(profiles[k]["weights"]), default=0)
    document = {
        "$schema": SPEEDSCOPE_SCHEMA,
        "version": "0.0.1",
        "name": _profile_name(profile),
        "exporter": EXPORTER,
        "activeProfileIndex": active,
        "shared": {"frames": frames},
        "profiles": profiles,
    }
    return _dumps(document)


# -- chrometrace ----------------------------------------------------------------------------
def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)


def to_chrometrace(
    profile: Profile,
    *,
    by: str = "function",
    pids: Iterable[int] | None = None,
    thread_ids: Iterable[int] | None = None,
    idle: bool = True,
    gil_only: bool = False,
) -> str:
    """Trace Event Format JSON: nested B/E events per thread at the real sample times.

    A frame stays open across consecutive samples of its thread for as long as the stack
    below it is unchanged, and closes when the thread's stack diverges or the thread is
    missing (or filtered out) from a sample. Defaults to `by="function"` so that moving
    between lines of a function does not split its bar. Events come in non-decreasing time
    order, closes before opens at equal times; pid/tid are the target's (tid = the native
    thread id when known).
    """
    check_by(by)
    flt = TraceFilter.make(pids, thread_ids, idle, gil_only)
    ends = _sample_ends(profile)

    meta_events: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    named_pids: set[int] = set()
    tids: dict[tuple[int, int], int] = {}
    # per thread: the open frames, root first, as (key, name, args)
    open_stacks: dict[tuple[int, int], list[tuple[tuple, str, dict]]] = {}

    def close(thread: tuple[int, int], depth: int, ts: float) -> None:
        stack = open_stacks[thread]
        while len(stack) > depth:
            _, name, _ = stack.pop()
            events.append(
                {
                    "ph": "E",
                    "name": name,
                    "cat": "python",
                    "pid": thread[0],
                    "tid": tids[thread],
                    "ts": ts,
                }
            )

    for sample in profile.samples:
        ts = _us(sample.timestamp)
        present: dict[tuple[int, int], Trace] = {}
        for trace in sample.traces:
            if flt.accepts(trace):
                present.setdefault((trace.pid, trace.thread_id), trace)
        for thread in open_stacks:
            if thread not in present:
                close(thread, 0, ts)
        for thread, trace in present.items():
            if thread not in tids:
                pid = trace.pid
                tids[thread] = trace.native_id if trace.native_id is not None else trace.thread_id
                meta_events.append(
                    {
                        "ph": "M",
                        "name": "thread_name",
                        "pid": pid,
                        "tid": tids[thread],
                        "args": {"name": trace.thread_name or f"thread {trace.thread_id}"},
                    }
                )
                if pid not in named_pids:
                    named_pids.add(pid)
                    command = trace.processes[-1].command if trace.processes else f"pid {pid}"
                    meta_events.append(
                        {
                            "ph": "M",
                            "name": "process_name",
                            "pid": pid,
                            "tid": 0,
                            "args": {"name": command},
                        }
                    )
            stack = open_stacks.setdefault(thread, [])
            new = [
                (
                    frame_key(frame, by),
                    frame.name,
                    {
                        "file": frame.filename,
                        "line": frame.line if by == "line" else frame.firstlineno,
                    },
                )
                for frame in reversed(trace.frames)
            ]
            common = 0
            while common < min(len(stack), len(new)) and stack[common][0] == new[common][0]:
                common += 1
            close(thread, common, ts)
            for entry in new[common:]:
                stack.append(entry)
                events.append(
                    {
                        "ph": "B",
                        "name": entry[1],
                        "cat": "python",
                        "pid": thread[0],
                        "tid": tids[thread],
                        "ts": ts,
                        "args": entry[2],
                    }
                )
    if profile.samples:
        final = _us(ends[-1])
        for thread in open_stacks:
            close(thread, 0, final)

    document = {
        "traceEvents": meta_events + events,
        "displayTimeUnit": "ms",
        "otherData": {"exporter": EXPORTER, "name": _profile_name(profile)},
    }
    return _dumps(document)


# -- jsonl ----------------------------------------------------------------------------------
def _trace_to_json(trace: Trace) -> dict[str, Any]:
    return {
        "pid": trace.pid,
        "thread_id": trace.thread_id,
        "native_id": trace.native_id,
        "thread_name": trace.thread_name,
        "gil": trace.gil,
        "idle": trace.idle,
        "frames": [[f.name, f.filename, f.line, f.firstlineno] for f in trace.frames],
        "processes": [[p.pid, p.command] for p in trace.processes],
    }


def _trace_from_json(d: dict[str, Any], frames: dict[tuple, Frame]) -> Trace:
    """A Trace from its JSON form; `frames` interns equal frames (saves time and memory:
    a profile repeats the same few frames millions of times)."""
    stack = []
    for f in d["frames"]:
        key = tuple(f)
        frame = frames.get(key)
        if frame is None:
            frame = frames[key] = Frame(*f)
        stack.append(frame)
    return Trace(
        pid=d["pid"],
        thread_id=d["thread_id"],
        native_id=d["native_id"],
        thread_name=d["thread_name"],
        gil=d["gil"],
        idle=d["idle"],
        frames=tuple(stack),
        processes=tuple(ProcessLabel(*p) for p in d.get("processes", ())),
    )


def _error_to_json(e: SampleError) -> dict[str, Any]:
    return {"pid": e.pid, "thread_id": e.thread_id, "kind": e.kind, "message": e.message}


def _rate_change_to_json(c: RateChange) -> dict[str, Any]:
    return {
        "timestamp": c.timestamp,
        "old_rate": c.old_rate,
        "new_rate": c.new_rate,
        "reason": c.reason,
    }


class SampleEncoder:
    """Samples as compact JSON records (no newlines): jsonl files and sample streams.

    Each distinct trace is sent once, as a `trace` record with an id, before the first
    sample that uses it; samples then list trace ids. The engine shares one Trace object
    per repeated stack, so a long recording of a steady program costs a few dozen bytes a
    sample instead of every frame every time.
    """

    def __init__(self) -> None:
        # id(trace) -> (its number, the trace itself: kept so the id is never reused)
        self._numbers: dict[int, tuple[int, Trace]] = {}

    def encode(self, sample: Sample) -> list[str]:
        records = []
        numbers = []
        for trace in sample.traces:
            known = self._numbers.get(id(trace))
            if known is None:
                known = self._numbers[id(trace)] = (len(self._numbers), trace)
                records.append(_dumps({"type": "trace", "id": known[0], **_trace_to_json(trace)}))
            numbers.append(known[0])
        records.append(
            _dumps(
                {
                    "type": "sample",
                    "timestamp": sample.timestamp,
                    "late": sample.late,
                    "traces": numbers,
                    "errors": [_error_to_json(e) for e in sample.errors],
                }
            )
        )
        return records


def encode_rate_change(change: RateChange) -> str:
    return _dumps({"type": "rate_change", **_rate_change_to_json(change)})


def decode_rate_change(record: dict[str, Any]) -> RateChange:
    return RateChange(record["timestamp"], record["old_rate"], record["new_rate"], record["reason"])


class SampleDecoder:
    """Turns `SampleEncoder` records back into Samples, sharing one Trace per trace record
    and equal Frames between them (a profile repeats the same few frames millions of
    times). Version 1 records, with every trace written out in full, read too."""

    def __init__(self) -> None:
        self._frames: dict[tuple, Frame] = {}
        self._traces: dict[int, Trace] = {}

    def define(self, record: dict[str, Any]) -> None:
        """Learn a `trace` record."""
        self._traces[record["id"]] = _trace_from_json(record, self._frames)

    def decode(self, record: dict[str, Any]) -> Sample:
        traces = []
        for t in record["traces"]:
            if isinstance(t, int):
                trace = self._traces.get(t)
                if trace is None:
                    raise ValueError(f"sample refers to trace {t}, which was never defined")
                traces.append(trace)
            else:
                traces.append(_trace_from_json(t, self._frames))
        return Sample(
            timestamp=record["timestamp"],
            traces=traces,
            late=record["late"],
            errors=[SampleError(**e) for e in record["errors"]],
        )


def jsonl_lines(profile: Profile) -> Iterator[str]:
    """The jsonl records without newlines: a header, then one line per sample."""
    yield _dumps(
        {
            "type": "header",
            "format": JSONL_FORMAT,
            "version": JSONL_VERSION,
            "metadata": profile.metadata,
            "rate_changes": [_rate_change_to_json(c) for c in profile.rate_changes],
        }
    )
    encoder = SampleEncoder()
    for sample in profile.samples:
        yield from encoder.encode(sample)


def to_jsonl(profile: Profile) -> str:
    """Every sample, lossless (no filters: this is the record, not a view)."""
    return "".join(line + "\n" for line in jsonl_lines(profile))


def _read_lines(source: PathOrFile | Iterable[str]) -> Iterator[str]:
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8") as f:
            yield from f
        return
    for line in source:
        yield line.decode("utf-8") if isinstance(line, bytes) else line


def read_jsonl(source: PathOrFile | Iterable[str]) -> Profile:
    """A Profile from `to_jsonl` output: a path, a text or binary file, or lines.

    Metadata comes back as JSON gives it (tuples as lists, non-JSON values as strings).
    """
    profile: Profile | None = None
    decoder = SampleDecoder()
    for number, raw in enumerate(_read_lines(source), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"line {number}: not JSON ({exc})") from None
        if profile is None:
            if record.get("format") != JSONL_FORMAT or record.get("type") != "header":
                raise ValueError(f"not a {JSONL_FORMAT} jsonl file (line {number})")
            if record.get("version", 0) > JSONL_VERSION:
                raise ValueError(
                    f"jsonl version {record['version']} is newer than supported ({JSONL_VERSION})"
                )
            profile = Profile(record.get("metadata") or {})
            for c in record.get("rate_changes", ()):
                profile.add_rate_change(decode_rate_change(c))
            continue
        kind = record.get("type")
        try:
            if kind == "trace":
                decoder.define(record)
                continue
            if kind != "sample":
                raise ValueError(f"unknown record type {kind!r}")
            profile.add(decoder.decode(record))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"line {number}: {exc}") from None
    if profile is None:
        raise ValueError("empty jsonl: no header")
    return profile


# -- writing --------------------------------------------------------------------------------
def thread_stack_counts(
    profile: Profile, *, by: str = "line", **filters: Any
) -> dict[tuple[int, int, str | None], Counter]:
    """{(pid, thread_id, thread_name): {root-first label stack: count}}: the flame tree input.

    A thread is one entry even if its name was learnt midway (threads get their names once
    `threading` has run): the last name seen labels it.
    """
    check_by(by)
    labels: dict[Frame, str] = {}
    by_thread: dict[tuple[int, int], Counter] = {}
    names: dict[tuple[int, int], str | None] = {}
    for _, _sample, trace in profile.iter_traces(**filters):
        if not trace.frames:
            continue
        stack = []
        for frame in reversed(trace.frames):
            label = labels.get(frame)
            if label is None:
                label = labels[frame] = frame_label(frame, by)
            stack.append(label)
        key = (trace.pid, trace.thread_id)
        if trace.thread_name is not None or key not in names:
            names[key] = trace.thread_name
        counts = by_thread.get(key)
        if counts is None:
            counts = by_thread[key] = Counter()
        counts[tuple(stack)] += 1
    return {(pid, tid, names[(pid, tid)]): counts for (pid, tid), counts in by_thread.items()}


def flame_views(
    profile: Profile,
    *,
    by: str = "line",
    min_fraction: float | None = None,
    pids: Iterable[int] | None = None,
    thread_ids: Iterable[int] | None = None,
    idle: bool = True,
    gil_only: bool = False,
) -> dict[str, Any]:
    """What the flame graph shows of a profile: both trees (by line and by function), the
    exact own/total per function, and the time a sample stands for (`build_views`).
    `by` is the view shown first; `min_fraction` the pruning (flametree's default)."""
    from .flametree import DEFAULT_MIN_FRACTION, build_views
    from .summary import summarize

    check_by(by)
    filters = {"pids": pids, "thread_ids": thread_ids, "idle": idle, "gil_only": gil_only}
    counts = thread_stack_counts(profile, **filters)
    names: dict[int, str] = {}
    for _, _sample, trace in profile.iter_traces(pids=pids):
        if trace.pid not in names and trace.processes:
            names[trace.pid] = str(trace.processes[-1])
    functions = [
        (stat.name, stat.filename, stat.self_count, stat.total_count)
        for stat in profile.functions(by="function", **filters)
    ]
    return build_views(
        counts,
        functions,
        by=by,
        min_fraction=DEFAULT_MIN_FRACTION if min_fraction is None else min_fraction,
        process_names=names,
        seconds_per_sample=summarize(profile).seconds_per_sample,
    )


def to_html(
    profile: Profile,
    *,
    by: str = "line",
    pids: Iterable[int] | None = None,
    thread_ids: Iterable[int] | None = None,
    idle: bool = True,
    gil_only: bool = False,
    title: str | None = None,
) -> str:
    """One offline page with the interactive flame graph (threads and processes filterable,
    by line or by function, `by` first), the summary of the recording and the function
    table."""
    from .html import render_html
    from .summary import summarize

    views = flame_views(profile, by=by, pids=pids, thread_ids=thread_ids, idle=idle,
                        gil_only=gil_only)  # fmt: skip
    summary = summarize(profile)
    return render_html(
        views,
        title=title or _profile_name(profile),
        metadata=summary.header_metadata(profile.metadata),
        verdict=summary.verdict,
        kept_up=summary.kept_up,
    )


FORMATS: dict[str, Callable[..., str]] = {
    "collapsed": to_collapsed,
    "speedscope": to_speedscope,
    "chrometrace": to_chrometrace,
    "jsonl": to_jsonl,
    "html": to_html,
}


def _is_binary(f: Any) -> bool:
    if isinstance(f, (io.RawIOBase, io.BufferedIOBase)):
        return True
    if isinstance(f, io.TextIOBase):
        return False
    return "b" in getattr(f, "mode", "")


def write(profile: Profile, path_or_file: PathOrFile, format: str, **options: Any) -> None:
    """Write `profile` as `format` (a key of FORMATS) to a path or an open text/binary file.

    Text goes out as UTF-8; characters UTF-8 cannot carry (lone surrogates, only possible
    in collapsed output) become backslash escapes rather than failing the write.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {sorted(FORMATS)}")
    if format == "jsonl":
        if options:
            raise TypeError(f"jsonl is lossless and takes no options: {sorted(options)}")
        chunks: Iterable[str] = (line + "\n" for line in jsonl_lines(profile))
    else:
        chunks = (FORMATS[format](profile, **options),)
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.writelines(chunks)
        return
    binary = _is_binary(path_or_file)
    for chunk in chunks:
        if binary:
            path_or_file.write(chunk.encode("utf-8", "backslashreplace"))  # type: ignore[arg-type]
        else:
            path_or_file.write(chunk)  # type: ignore[arg-type]
