"""Writing a Profile in the formats other tools read, and the lossless jsonl round trip.

- `collapsed`: `root;...;leaf count` lines for flamegraph.pl, inferno and speedscope.
- `speedscope`: speedscope's JSON file format, one "sampled" profile per thread, each sample
  weighted by the time it really stands for (see `Profile.sample_durations`).
- `chrometrace`: Trace Event Format JSON (chrome://tracing, Perfetto): per thread, runs of
  samples sharing a stack become nested B/E events at the real sample times.
- `jsonl`: every sample as taken, one JSON object per line; `read_jsonl` restores it.
- `html`: one offline page with the interactive flame graph and the timeline (`html.py`,
  `flametree.py`, `timeline.py`); with `baseline=` a diff flame graph (`diff.py`).
- `heatmap`: one offline page, every sampled line's share beside its source (`heatmap.py`).
- `pstats` (`pstats_export.py`), `gecko` (`gecko.py`, the Firefox Profiler) and `binary`
  (`recording.py`: the recording `record -f binary` streams) live in their own modules;
  FORMATS below is the one registry of them all.

Names read from a target may hold lone surrogates (a file name's bytes that are not UTF-8,
`reader.decode_name`), which UTF-8 cannot carry. JSON outputs are ASCII-escaped, so they
travel as `\\udcff` and jsonl reads back the exact name; text outputs (collapsed, the html
page's text) show each as U+FFFD (`reader.printable`). Every output is valid UTF-8.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, Callable, Union

from ..engine.sample import ProcessLabel, RateChange, Sample, SampleError, Trace
from ..reader import Frame, printable
from .flametree import opcode_label
from .model import (
    Profile,
    TraceFilter,
    check_by,
    frame_key,
    process_labels,
    thread_label,
)

if TYPE_CHECKING:
    from .diff import ProfileDiff

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
    samples = profile.require_samples("_sample_ends")
    durations = profile.sample_durations()
    ends = [s.timestamp for s in samples[1:]]
    if samples:
        ends.append(samples[-1].timestamp + durations[-1])
    return ends


# -- collapsed ------------------------------------------------------------------------------
def escape_collapsed(label: str) -> str:
    """A label made safe for one collapsed-stack field: `;` becomes `；` (U+FF1B),
    CR/LF become the two-character escapes `\\r`/`\\n`, an undecodable byte U+FFFD."""
    return printable(label).translate(_COLLAPSED_ESCAPES)


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
    opcodes: bool | None = None,
) -> str:
    """`frame;frame;frame count` lines, root first, sorted; the counts of `stack_counts`.

    `opcodes` (default: when the profile was sampled with them) ends each stack whose
    innermost instruction is known with an `<opcode NAME>` frame."""
    if opcodes is None:
        opcodes = bool(profile.metadata.get("opcodes"))
    filters = {"pids": pids, "thread_ids": thread_ids, "idle": idle, "gil_only": gil_only}
    counts = profile.stack_counts(
        by=by, threads=threads, processes=processes, opcodes=opcodes, **filters
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
    samples = profile.require_samples("the speedscope export (its samples in time order)")
    durations = profile.sample_durations()
    multi_process = len(profile.pids()) > 1

    frames: list[dict[str, Any]] = []
    frame_index: dict[tuple, int] = {}
    threads: dict[tuple[int, int], dict[str, Any]] = {}
    for i, sample in enumerate(samples):
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

    start = samples[0].timestamp if samples else 0.0
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
    samples = profile.require_samples("the chrometrace export (events at the sample times)")
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

    for sample in samples:
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
    if samples:
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
    out = {
        "pid": trace.pid,
        "thread_id": trace.thread_id,
        "native_id": trace.native_id,
        "thread_name": trace.thread_name,
        "gil": trace.gil,
        "idle": trace.idle,
        "frames": [[f.name, f.filename, f.line, f.firstlineno] for f in trace.frames],
        "processes": [[p.pid, p.command] for p in trace.processes],
    }
    if trace.opcode is not None:
        out["opcode"] = trace.opcode  # only when sampled with opcodes: older readers skip it
    return out


class JsonlError(ValueError):
    """A jsonl profile that cannot be read. The message names the file (when it has a
    name), the line, and what was expected there; `reason`, `line`, `source` give the parts."""

    def __init__(self, reason: str, line: int | None = None, source: str | None = None) -> None:
        self.reason, self.line, self.source = reason, line, source
        where = ", ".join(p for p in (source, None if line is None else f"line {line}") if p)
        super().__init__(f"{where}: {reason}" if where else reason)


class JsonlTruncatedWarning(UserWarning):
    """A jsonl profile ends in lines that are not whole records (its writer was cut off):
    the samples before them were read; `lines_lost` lines at the end were not."""

    def __init__(self, message: str, lines_lost: int, samples: int) -> None:
        super().__init__(message)
        self.lines_lost = lines_lost
        self.samples = samples


_NONE = type(None)
_NUMBER = frozenset((int, float))
_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               _NONE: "null", list: "a list", dict: "an object"}  # fmt: skip


def _is(value: Any, kind: type) -> bool:
    if kind is float:  # any finite JSON number (bool is an int in Python, not here)
        return type(value) in (int, float) and math.isfinite(value)
    return type(value) is kind


def _shown(value: Any) -> str:
    text = _dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field(record: dict, key: str, what: str, *kinds: type) -> Any:
    """`record[key]` if it is one of `kinds`; else a JsonlError saying what was expected."""
    if key not in record:
        raise JsonlError(f"{what} has no {key!r}")
    value = record[key]
    if not any(_is(value, kind) for kind in kinds):
        expected = " or ".join(_KIND_NAMES[kind] for kind in kinds)
        raise JsonlError(f"{what}: {key!r} must be {expected}, got {_shown(value)}")
    return value


def _items(value: list, what: str, shape: str, *kinds: type) -> list:
    """`value` if each item is a list of `kinds` in order, else a JsonlError about `shape`."""
    for item in value:
        if (
            type(item) is not list
            or len(item) != len(kinds)
            or not all(_is(v, k) for v, k in zip(item, kinds))
        ):
            raise JsonlError(f"{what}: each item must be {shape}, got {_shown(item)}")
    return value


def _trace_from_json(d: dict[str, Any], frames: dict[tuple, Frame]) -> Trace:
    """A Trace from its JSON form, every field checked; `frames` interns equal frames (saves
    time and memory: a profile repeats the same few frames millions of times)."""
    stack = []
    frame_lists = _field(d, "frames", "trace", list)
    _items(frame_lists, "trace 'frames'", "[name, filename, line, firstlineno]", str, str, int, int)
    for f in frame_lists:
        key = tuple(f)
        frame = frames.get(key)
        if frame is None:
            frame = frames[key] = Frame(*f)
        stack.append(frame)
    processes = d.get("processes", [])
    if type(processes) is not list:
        raise JsonlError(f"trace: 'processes' must be a list, got {_shown(processes)}")
    _items(processes, "trace 'processes'", "[pid, command]", int, str)
    return Trace(
        pid=_field(d, "pid", "trace", int),
        thread_id=_field(d, "thread_id", "trace", int),
        native_id=_field(d, "native_id", "trace", int, _NONE),
        thread_name=_field(d, "thread_name", "trace", str, _NONE),
        gil=_field(d, "gil", "trace", bool),
        idle=_field(d, "idle", "trace", bool, _NONE),
        frames=tuple(stack),
        processes=tuple(ProcessLabel(*p) for p in processes),
        opcode=_field(d, "opcode", "trace", str, _NONE) if "opcode" in d else None,
    )


def _error_from_json(e: Any) -> SampleError:
    if type(e) is not dict:
        raise JsonlError(f"sample: each of 'errors' must be an object, got {_shown(e)}")
    return SampleError(
        pid=_field(e, "pid", "sample error", int),
        thread_id=_field(e, "thread_id", "sample error", int, _NONE),
        kind=_field(e, "kind", "sample error", str),
        message=_field(e, "message", "sample error", str),
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


def decode_rate_change(record: Any) -> RateChange:
    what = "rate change"
    if type(record) is not dict:
        raise JsonlError(f"each rate change must be an object, got {_shown(record)}")
    return RateChange(
        _field(record, "timestamp", what, float),
        _field(record, "old_rate", what, float),
        _field(record, "new_rate", what, float),
        _field(record, "reason", what, str),
    )


class SampleDecoder:
    """Turns `SampleEncoder` records back into Samples, sharing one Trace per trace record
    and equal Frames between them (a profile repeats the same few frames millions of
    times). Version 1 records, with every trace written out in full, read too."""

    def __init__(self) -> None:
        self._frames: dict[tuple, Frame] = {}
        self._traces: dict[int, Trace] = {}

    def define(self, record: dict[str, Any]) -> None:
        """Learn a `trace` record."""
        number = _field(record, "id", "trace", int)
        self._traces[number] = _trace_from_json(record, self._frames)

    def decode(self, record: dict[str, Any]) -> Sample:
        """A `sample` record as a Sample; a JsonlError if any field is not what it should be."""
        # The common record (known trace ids, no errors) checked inline: a long recording
        # has millions; anything else takes the checked path, which also words the error.
        try:
            timestamp, late = record["timestamp"], record["late"]
            refs, errors = record["traces"], record["errors"]
            if (
                not errors
                and type(errors) is list
                and type(refs) is list
                and type(timestamp) in _NUMBER
                and timestamp - timestamp == 0  # finite
                and (late is None or (type(late) in _NUMBER and late - late == 0))
            ):
                known = self._traces
                traces = [known[t] for t in refs if type(t) is int]
                if len(traces) == len(refs):
                    return Sample(timestamp, traces, late)
        except (KeyError, TypeError):
            pass
        return self._decode_checked(record)

    def _decode_checked(self, record: dict[str, Any]) -> Sample:
        timestamp = _field(record, "timestamp", "sample", float)
        late = _field(record, "late", "sample", float, _NONE)
        traces = []
        for t in _field(record, "traces", "sample", list):
            if type(t) is int:
                trace = self._traces.get(t)
                if trace is None:
                    raise JsonlError(f"sample refers to trace {t}, which was never defined")
                traces.append(trace)
            elif type(t) is dict:  # version 1: the trace written out in full
                traces.append(_trace_from_json(t, self._frames))
            else:
                raise JsonlError(
                    f"sample: each of 'traces' must be a trace id (an integer), got {_shown(t)}"
                )
        errors = _field(record, "errors", "sample", list)
        return Sample(
            timestamp=timestamp,
            traces=traces,
            late=late,
            errors=[_error_from_json(e) for e in errors] if errors else [],
        )


def jsonl_lines(profile: Profile) -> Iterator[str]:
    """The jsonl records without newlines: a header, then one line per sample."""
    samples = profile.require_samples("the jsonl export (every sample, lossless)")
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
    for sample in samples:
        yield from encoder.encode(sample)


def to_jsonl(profile: Profile) -> str:
    """Every sample, lossless (no filters: this is the record, not a view)."""
    return "".join(line + "\n" for line in jsonl_lines(profile))


def _source_name(source: Any) -> str | None:
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else None


def _read_lines(source: PathOrFile | Iterable[str]) -> Iterator[str]:
    """The lines of `source` as text; bytes that are not UTF-8 come through as lone
    surrogates (`surrogateescape`), which `_parse` refuses, so a binary file is one more
    file that is not a profile rather than a UnicodeDecodeError."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            for raw in f:
                yield raw.decode("utf-8", "surrogateescape")
        return
    for line in source:
        yield line.decode("utf-8", "surrogateescape") if isinstance(line, bytes) else line


_SURROGATES = re.compile("[\ud800-\udfff]")
_COLLAPSED_LINE = re.compile(r".*\S \d+$")


def _parse(text: str) -> tuple[Any, str | None]:
    """(the line's JSON value, None), or (None, why it is not JSON)."""
    if not text.isascii() and _SURROGATES.search(text):
        return None, "not UTF-8 text"
    try:
        return json.loads(text), None
    except RecursionError:
        return None, "JSON nested deeper than it can be parsed"
    except ValueError as exc:
        return None, f"not JSON ({exc})"


def _what_it_is(text: str) -> str:
    """What a first line that is not a profile header looks like, for the error."""
    head = text.lstrip()[:300]
    if head.startswith("\udc89PNG"):
        return " (it is a PNG image)"
    if head.lower().startswith(("<!doctype html", "<html")):
        return " (it is an HTML page: an html export?)"
    if head.startswith("{") and "speedscope" in head:
        return " (it is a speedscope file)"
    if head.startswith("{") and '"traceEvents"' in head:
        return " (it is a Chrome trace)"
    if _COLLAPSED_LINE.match(text.strip()):
        return " (it looks like collapsed stacks)"
    return ""


def _profile_from_header(record: Any, text: str) -> Profile:
    is_header = type(record) is dict and record.get("type") == "header"
    if not is_header or record.get("format") != JSONL_FORMAT:
        raise JsonlError(
            f"not a spy_magic jsonl profile: the first line is not its header{_what_it_is(text)}"
        )
    version = record.get("version", 0)
    if not _is(version, int):
        raise JsonlError(f"header: 'version' must be an integer, got {_shown(version)}")
    if version > JSONL_VERSION:
        raise JsonlError(f"jsonl version {version} is newer than supported ({JSONL_VERSION})")
    metadata = record.get("metadata")
    if metadata is not None and type(metadata) is not dict:
        raise JsonlError(f"header: 'metadata' must be an object, got {_shown(metadata)}")
    changes = record.get("rate_changes", [])
    if type(changes) is not list:
        raise JsonlError(f"header: 'rate_changes' must be a list, got {_shown(changes)}")
    profile = Profile(metadata or {})
    for change in changes:
        profile.add_rate_change(decode_rate_change(change))
    return profile


def read_jsonl(source: PathOrFile | Iterable[str]) -> Profile:
    """A Profile from `to_jsonl` output: a path, a text or binary file, or lines.

    Metadata comes back as JSON gives it (tuples as lists, non-JSON values as strings).
    A file cut off in the middle of its last line (its writer was stopped) gives the
    samples before the cut, with a `JsonlTruncatedWarning` saying how many lines were lost.
    Anything else that is not a profile raises `JsonlError`, naming the line and what was
    expected there.
    """
    name = _source_name(source)
    profile: Profile | None = None
    decoder = SampleDecoder()
    cut: tuple[int, str] | None = None  # an unreadable last line, unless more lines follow
    number = 0
    try:
        for number, raw in enumerate(_read_lines(source), 1):
            if not raw.strip():
                continue
            if cut is not None:
                raise JsonlError(f"{cut[1]}, and more lines follow it", cut[0])
            try:  # the common line inline: a long recording has millions
                record, why = (json.loads(raw), None) if raw.isascii() else _parse(raw)
            except (ValueError, RecursionError):
                record, why = _parse(raw)
            if why is not None:
                if profile is None:
                    raise JsonlError(f"not a spy_magic jsonl profile: {why}{_what_it_is(raw)}")
                if raw.endswith(("\n", "\r")) or why.startswith("JSON nested"):
                    raise JsonlError(why)  # a whole line that is not a record
                cut = (number, why)  # no line end: cut off here, if it is the last line
                continue
            if profile is None:
                profile = _profile_from_header(record, raw)
            elif type(record) is not dict:
                raise JsonlError(f"a record must be a JSON object, got {_shown(record)}")
            elif record.get("type") == "sample":
                profile.add(decoder.decode(record))
            elif record.get("type") == "trace":
                decoder.define(record)
            else:
                raise JsonlError(
                    f"unknown record type {_shown(record.get('type'))} (expected trace or sample)"
                )
    except JsonlError as exc:
        if exc.source is not None:
            raise
        raise JsonlError(exc.reason, number if exc.line is None else exc.line, name) from None
    except UnicodeDecodeError as exc:  # a text-mode file, which decodes a chunk ahead
        after = f" after line {number}" if number else ""
        raise JsonlError(f"not UTF-8 text{after} ({exc.reason})", None, name) from None
    except ValueError as exc:  # Profile.add: a sample older than the one before it
        raise JsonlError(str(exc), number, name) from None
    if profile is None:
        raise JsonlError("empty: no spy_magic jsonl header", None, name)
    if cut is not None:
        warnings.warn(
            JsonlTruncatedWarning(
                f"{name or 'jsonl profile'}: cut off in line {cut[0]} ({cut[1]}): 1 line lost; "
                f"{profile.sample_count} samples read before it",
                lines_lost=1,
                samples=profile.sample_count,
            ),
            stacklevel=2,
        )
    return profile


# -- writing --------------------------------------------------------------------------------
def thread_stack_counts(
    profile: Profile, *, by: str = "line", opcodes: bool = False, **filters: Any
) -> dict[tuple[int, int, str | None], Counter]:
    """{(pid, thread_id, thread_name): {root-first label stack: count}}: the flame tree input.
    `opcodes` ends each stack whose innermost instruction is known with its `<opcode NAME>`.

    A thread is one entry even if its name was learnt midway (threads get their names once
    `threading` has run): the last name seen labels it.
    """
    check_by(by)
    by_thread: dict[tuple[int, int], Counter] = {}
    names: dict[tuple[int, int], str | None] = {}
    for stats in profile.trace_stats(**filters):
        trace = stats.trace
        if not trace.frames:
            continue
        key = (trace.pid, trace.thread_id)
        if trace.thread_name is not None or key not in names:
            names[key] = trace.thread_name
        counts = by_thread.get(key)
        if counts is None:
            counts = by_thread[key] = Counter()
        stack = profile.label_stack(stats, by)
        if opcodes and trace.opcode is not None:
            stack = (*stack, opcode_label(trace.opcode))
        counts[stack] += stats.count
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
    timeline: int | None = None,
) -> dict[str, Any]:
    """What the flame graph shows of a profile: both trees (by line and by function), the
    exact own/total per function, and the time a sample stands for (`build_views`).
    `by` is the view shown first; `min_fraction` the pruning (flametree's default);
    `timeline` adds a timeline of that many buckets (`timeline.py`)."""
    from .flametree import DEFAULT_MIN_FRACTION, StringTable, build_views
    from .summary import summarize
    from .timeline import timeline_json

    check_by(by)
    filters = {"pids": pids, "thread_ids": thread_ids, "idle": idle, "gil_only": gil_only}
    opcodes = bool(profile.metadata.get("opcodes"))
    counts = thread_stack_counts(profile, opcodes=opcodes, **filters)
    names: dict[int, str] = {}
    for stats in profile.trace_stats(pids=pids):
        trace = stats.trace
        if trace.pid not in names and trace.processes:
            names[trace.pid] = str(trace.processes[-1])
    functions = [
        (stat.name, stat.filename, stat.self_count, stat.total_count)
        for stat in profile.functions(by="function", **filters)
    ]
    views = build_views(
        counts,
        functions,
        by=by,
        min_fraction=DEFAULT_MIN_FRACTION if min_fraction is None else min_fraction,
        process_names=names,
        seconds_per_sample=summarize(profile).seconds_per_sample,
    )
    if timeline and (profile.keep_samples or profile.timeline is not None):
        strings = StringTable()
        strings.table = views["strings"]
        strings.index = {text: i for i, text in enumerate(strings.table)}
        views["timeline"] = timeline_json(profile, strings, timeline, **filters)
    return views


def to_html(
    profile: Profile,
    *,
    by: str = "line",
    pids: Iterable[int] | None = None,
    thread_ids: Iterable[int] | None = None,
    idle: bool = True,
    gil_only: bool = False,
    title: str | None = None,
    baseline: Profile | ProfileDiff | None = None,
) -> str:
    """One offline page with the interactive flame graph (threads and processes filterable,
    by line or by function, `by` first), the summary of the recording, the function table
    and the timeline. With a `baseline` (a Profile, or its `Profile.diff` already made) the
    graph is coloured by each function's change in own share (`diff.py`), under a table
    of the largest changes."""
    from .diff import ProfileDiff
    from .html import render_html
    from .summary import summarize
    from .timeline import BUCKETS

    views = flame_views(profile, by=by, pids=pids, thread_ids=thread_ids, idle=idle,
                        gil_only=gil_only, timeline=BUCKETS)  # fmt: skip
    summary = summarize(profile)
    sections = []
    name = title or _profile_name(profile)
    if baseline is not None:
        diff = baseline if isinstance(baseline, ProfileDiff) else profile.diff(baseline)
        views["diff"] = diff.payload(views["strings"])
        sections.append(diff.table_html())
        if title is None:
            name = f"{name} against {_profile_name(diff.base)}"
    return render_html(
        views,
        title=name,
        metadata=summary.header_metadata(profile.metadata),
        verdict=summary.verdict,
        kept_up=summary.kept_up,
        sections=sections,
    )


def to_heatmap(profile: Profile, *, by: str = "line", title: str | None = None) -> str:
    """One offline page: every sampled line's share beside its source, a section per file
    (`heatmap.py`). Lines are its unit whatever `by` (taken so that every view format is
    called alike)."""
    from .heatmap import to_heatmap as heatmap_page

    check_by(by)
    return heatmap_page(profile, title=title)


def to_binary(profile: Profile, *, compression: str = "auto") -> bytes:
    """The whole profile as a binary recording, the file `record -f binary` streams
    (`recording.py`; read it back with `read_recording`)."""
    from .recording import to_recording  # recording imports this module

    return to_recording(profile, compression=compression)


def to_pstats(profile: Profile, **options: Any) -> bytes:
    """`pstats_export.to_pstats`, imported when first asked (start-up pays for what it uses)."""
    from .pstats_export import to_pstats as write_pstats

    return write_pstats(profile, **options)


def to_gecko(profile: Profile, **options: Any) -> str:
    """`gecko.to_gecko`, imported when first asked."""
    from .gecko import to_gecko as write_gecko

    return write_gecko(profile, **options)


# Each format's writer returns its whole output: str (written as UTF-8) or bytes.
FORMATS: dict[str, Callable[..., str | bytes]] = {
    "collapsed": to_collapsed,
    "speedscope": to_speedscope,
    "chrometrace": to_chrometrace,
    "jsonl": to_jsonl,
    "html": to_html,
    "pstats": to_pstats,
    "gecko": to_gecko,
    "binary": to_binary,
    "heatmap": to_heatmap,
}
LOSSLESS_FORMATS = ("jsonl", "binary")  # every sample as taken: no view options
# Formats that show samples in time order (or every sample): a profile must keep its
# samples for them (Profile(keep_samples=True)); the others need only the aggregates.
NEEDS_SAMPLES = ("speedscope", "chrometrace", "jsonl", "gecko", "binary")
BINARY_FORMATS = ("pstats", "binary")  # bytes, not text


def _is_binary(f: Any) -> bool:
    if isinstance(f, (io.RawIOBase, io.BufferedIOBase)):
        return True
    if isinstance(f, io.TextIOBase):
        return False
    return "b" in getattr(f, "mode", "")


def write(profile: Profile, path_or_file: PathOrFile, format: str, **options: Any) -> None:
    """Write `profile` as `format` (a key of FORMATS) to a path or an open text/binary file.

    Text goes out as UTF-8. No format produces a character UTF-8 cannot carry (a lone
    surrogate); should one slip through, it becomes a backslash escape, not a failed write.
    Binary formats (BINARY_FORMATS) need a path or a binary file.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {sorted(FORMATS)}")
    if format in BINARY_FORMATS:
        to_path = isinstance(path_or_file, (str, os.PathLike))
        if not to_path and not _is_binary(path_or_file):
            raise TypeError(f"{format} is a binary format: give a path or a binary file")
        data = FORMATS[format](profile, **options)
        if to_path:
            with open(path_or_file, "wb") as f:  # type: ignore[arg-type]
                f.write(data)
        else:
            path_or_file.write(data)  # type: ignore[arg-type]
        return
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
