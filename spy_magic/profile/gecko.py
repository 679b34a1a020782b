"""A profile in the Firefox Profiler's processed format (https://profiler.firefox.com, "Load a
profile from file").

Target: processed profile format version 57 (`meta.preprocessedProfileVersion`), as described
by the profiler's `src/types/profile.ts` and `docs-developer/CHANGELOG-formats.md`: one string
table shared by all threads (`shared.stringArray`, since 56), per-thread stack, frame and
function tables, no `implementation` frame column (gone in 54), no stack categories (gone in
53: a stack takes its frame's category), `funcTable.fileName` (replaced by a sources table in
58). The profiler upgrades version 57 files itself when it loads them; CPython 3.15's
`profiling.sampling --gecko` writes the same version.

Each thread is a `thread` entry (`pid` as a string, `tid` the native thread id when known)
whose `samples` table holds one row per sample that saw it: `time` in ms since
`meta.startTime` (the wall-clock start), `stack` an index into its stack table (a tree by
`prefix`), and `weight` the ms the sample stands for (`weightType: "tracing-ms"`: the gap to
the next sample, as speedscope gets, so the call tree's times are real under a Poisson
schedule or rate changes). Frames are one per (function, line, category); the innermost frame
of a sample carries the thread's state as its category, which the stack and the timeline take:

- `Python` (yellow): running, holding the GIL (free-threaded builds: attached);
- `Native` (blue): running but without the GIL (C code that released it);
- `Idle` (transparent): the OS reports the thread waiting: sleep, I/O, a lock, or the GIL;
- `Other` (grey, the default category): the state could not be read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..engine.sample import Trace
from .model import Profile, TraceFilter, check_by

PROCESSED_PROFILE_VERSION = 57
GECKO_PROFILE_VERSION = 31  # meta.version: the Gecko format of that time (changelog)

CATEGORIES = [
    {"name": "Other", "color": "grey", "subcategories": ["Other"]},
    {"name": "Python", "color": "yellow", "subcategories": ["Other"]},
    {"name": "Native", "color": "blue", "subcategories": ["Other"]},
    {"name": "Idle", "color": "transparent", "subcategories": ["Other"]},
]
OTHER, PYTHON, NATIVE, IDLE = range(4)


def state_category(trace: Trace) -> int:
    """The category of a sample's innermost frame: what the thread was doing."""
    if trace.idle:
        return IDLE
    if trace.gil:
        return PYTHON
    return NATIVE if trace.idle is False else OTHER


def _table(*columns: str) -> dict[str, Any]:
    table: dict[str, Any] = {name: [] for name in columns}
    table["length"] = 0
    return table


class _Thread:
    """One thread's tables while they are built."""

    def __init__(self, trace: Trace, first_ms: float) -> None:
        self.trace = trace
        self.name = trace.thread_name
        self.first_ms = first_ms
        self.last_ms = first_ms
        self.samples = {"stack": [], "time": [], "weight": []}
        self.stacks = _table("frame", "prefix")
        self.frames = _table(
            "address", "inlineDepth", "category", "subcategory", "func", "nativeSymbol",
            "innerWindowID", "line", "column",
        )  # fmt: skip
        self.funcs = _table(
            "name", "isJS", "relevantForJS", "resource", "fileName", "lineNumber", "columnNumber"
        )
        self.func_index: dict[tuple, int] = {}
        self.frame_index: dict[tuple, int] = {}
        self.stack_index: dict[tuple, int] = {}

    def func(self, name: int, filename: int, firstlineno: int | None) -> int:
        key = (name, filename, firstlineno)
        index = self.func_index.get(key)
        if index is None:
            index = self.func_index[key] = len(self.funcs["name"])
            for column, value in (
                ("name", name), ("isJS", True), ("relevantForJS", False), ("resource", -1),
                ("fileName", filename), ("lineNumber", firstlineno), ("columnNumber", None),
            ):  # fmt: skip
                self.funcs[column].append(value)
        return index

    def frame(self, func: int, line: int | None, category: int) -> int:
        key = (func, line, category)
        index = self.frame_index.get(key)
        if index is None:
            index = self.frame_index[key] = len(self.frames["func"])
            for column, value in (
                ("address", -1), ("inlineDepth", 0), ("category", category), ("subcategory", 0),
                ("func", func), ("nativeSymbol", None), ("innerWindowID", 0), ("line", line),
                ("column", None),
            ):  # fmt: skip
                self.frames[column].append(value)
        return index

    def stack(self, prefix: int | None, frame: int) -> int:
        key = (prefix, frame)
        index = self.stack_index.get(key)
        if index is None:
            index = self.stack_index[key] = len(self.stacks["frame"])
            self.stacks["frame"].append(frame)
            self.stacks["prefix"].append(prefix)
        return index

    def to_json(self, process_name: str) -> dict[str, Any]:
        trace = self.trace
        tid = trace.native_id if trace.native_id is not None else trace.thread_id
        # Linux: the main thread's native id is the pid (its name may not be known yet)
        main = self.name == "MainThread" or trace.native_id == trace.pid
        for table, column in ((self.stacks, "frame"), (self.frames, "func"), (self.funcs, "name")):
            table["length"] = len(table[column])
        samples = dict(self.samples, weightType="tracing-ms", length=len(self.samples["time"]))
        return {
            "processType": "default",
            "processStartupTime": 0,
            "processShutdownTime": None,
            "registerTime": self.first_ms,
            "unregisterTime": None,
            "pausedRanges": [],
            "name": self.name or ("MainThread" if main else f"thread {tid}"),
            "isMainThread": main,
            "processName": process_name,
            "pid": str(trace.pid),
            "tid": tid,
            "samples": samples,
            "markers": _table("data", "name", "startTime", "endTime", "phase", "category"),
            "stackTable": self.stacks,
            "frameTable": self.frames,
            "funcTable": self.funcs,
            "resourceTable": _table("lib", "name", "host", "type"),
            "nativeSymbols": _table("libIndex", "address", "name", "functionSize"),
        }


def gecko_profile(
    profile: Profile,
    *,
    by: str = "line",
    pids: Iterable[int] | None = None,
    thread_ids: Iterable[int] | None = None,
    idle: bool = True,
    gil_only: bool = False,
) -> dict[str, Any]:
    """The processed profile as a dict (see the module doc); `by="function"` gives each
    function one frame (at its first line) instead of one per line."""
    from .exports import _profile_name  # exports imports this module

    check_by(by)
    flt = TraceFilter.make(pids, thread_ids, idle, gil_only)
    strings: list[str] = []
    string_index: dict[str, int] = {}

    def string(text: str) -> int:
        index = string_index.get(text)
        if index is None:
            index = string_index[text] = len(strings)
            strings.append(text)
        return index

    profile.require_samples("the gecko export (samples over time)")
    durations = profile.sample_durations()
    threads: dict[tuple[int, int], _Thread] = {}
    # per thread, the stack index of each Trace object met (the engine shares one per stack)
    leaf_stacks: dict[int, tuple[Trace, int]] = {}
    for i, sample in enumerate(profile.samples):
        ms = sample.timestamp * 1000.0
        for trace in sample.traces:
            if not trace.frames or not flt.accepts(trace):
                continue
            thread = threads.get((trace.pid, trace.thread_id))
            if thread is None:
                thread = threads[(trace.pid, trace.thread_id)] = _Thread(trace, ms)
            if trace.thread_name is not None:
                thread.name = trace.thread_name
            thread.last_ms = ms
            known = leaf_stacks.get(id(trace))
            if known is None:
                prefix = None
                leaf = len(trace.frames) - 1
                for depth, frame in enumerate(reversed(trace.frames)):
                    func = thread.func(
                        string(frame.name), string(frame.filename), frame.firstlineno
                    )
                    line = frame.line if by == "line" else frame.firstlineno
                    category = state_category(trace) if depth == leaf else PYTHON
                    prefix = thread.stack(prefix, thread.frame(func, line, category))
                known = leaf_stacks[id(trace)] = (trace, prefix)  # keeps `trace` (and its id)
            thread.samples["stack"].append(known[1])
            thread.samples["time"].append(round(ms, 6))
            thread.samples["weight"].append(round(durations[i] * 1000.0, 6))

    samples = profile.samples
    end_ms = (samples.timestamp(-1) + durations[-1]) * 1000.0 if samples else 0.0
    gaps = profile.gaps()
    rate = profile.metadata.get("rate")
    if gaps:
        interval = sum(gaps) / len(gaps) * 1000.0
    elif isinstance(rate, (int, float)) and rate > 0:
        interval = 1000.0 / rate
    else:
        interval = 1.0
    started_at = profile.metadata.get("started_at")
    return {
        "meta": {
            "interval": interval,
            "startTime": started_at * 1000.0 if isinstance(started_at, (int, float)) else 0.0,
            "profilingStartTime": samples.timestamp(0) * 1000.0 if samples else 0.0,
            "profilingEndTime": end_ms,
            "processType": 0,
            "product": _profile_name(profile),
            "importedFrom": "spy_magic",
            "stackwalk": 0,
            "version": GECKO_PROFILE_VERSION,
            "preprocessedProfileVersion": PROCESSED_PROFILE_VERSION,
            "symbolicated": True,
            "usesOnlyOneStackType": True,
            "sourceCodeIsNotOnSearchfox": True,
            "categories": CATEGORIES,
            "markerSchema": [],
            "sampleUnits": {"time": "ms", "eventDelay": "ms", "threadCPUDelta": "µs"},
        },
        "libs": [],
        "pages": [],
        "counters": [],
        "threads": [thread.to_json(_process_name(thread.trace)) for thread in threads.values()],
        "shared": {"stringArray": strings},
    }


def _process_name(trace: Trace) -> str:
    if trace.processes:
        return trace.processes[-1].command
    return f"pid {trace.pid}"


def to_gecko(
    profile: Profile,
    *,
    by: str = "line",
    pids: Iterable[int] | None = None,
    thread_ids: Iterable[int] | None = None,
    idle: bool = True,
    gil_only: bool = False,
) -> str:
    """Firefox Profiler JSON (processed format version 57; see the module doc)."""
    document = gecko_profile(
        profile, by=by, pids=pids, thread_ids=thread_ids, idle=idle, gil_only=gil_only
    )
    return json.dumps(document, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
