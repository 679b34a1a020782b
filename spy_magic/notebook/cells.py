"""Making a kernel's profile read like the notebook: rooted at the cell, cells named In [n].

The kernel's main thread runs the cell several dozen frames deep inside ipykernel, tornado,
asyncio and IPython; its other threads (heartbeat, iopub, history, our own collector) are
machinery too. The user wants none of that: each main-thread trace is cut at the cell's own
frame, machinery-only threads are dropped, and frames from cells read "In [n]" instead of a
temporary file name.

Two more places carry the kernel's frames: a process the kernel forked (multiprocessing's
fork start method, `os.fork`) starts with a copy of the stack that forked it, so its traces
are cut at their outermost cell frame as well; and a magic of ours run from cell code (a
nested `%%spy`, `get_ipython().run_cell_magic("spy", ...)`) puts IPython's and our frames
between the cell's code and the inner cell's, which are dropped, so the inner cell's code
reads as called from the outer cell's line (and the magic's own work as time on that line).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import sysconfig
import threading
from collections.abc import Iterable, Mapping

from ..engine import Sample, Trace
from ..profile import Profile
from ..reader import Frame

# Packages whose frames are the kernel's, not the user's.
_MACHINERY = (
    "ipykernel", "IPython", "tornado", "zmq", "jupyter_client", "jupyter_core", "traitlets",
    "comm", "spy_magic", "debugpy", "ipywidgets", "anywidget", "nest_asyncio",
)  # fmt: skip
_LIBRARY_DIRS = tuple(
    {
        os.path.realpath(p)
        for p in (
            sysconfig.get_paths().get("stdlib"),
            sysconfig.get_paths().get("platstdlib"),
            sysconfig.get_paths().get("purelib"),
            sysconfig.get_paths().get("platlib"),
            sys.base_prefix,
        )
        if p
    }
)


def is_machinery(filename: str) -> bool:
    parts = filename.replace("\\", "/").split("/")
    return any(part in _MACHINERY for part in parts)


def is_library(filename: str) -> bool:
    """Standard library, installed packages, frozen modules: code the user did not write."""
    if filename.startswith("<") or is_machinery(filename):  # <frozen ...>, <string>, ...
        return True
    return os.path.realpath(filename).startswith(_LIBRARY_DIRS)


class CellNamer:
    """Renames frames of cell code: file "In [n]" (so labels read "<module> (In [3]:5)")."""

    def __init__(self, cell_files: Mapping[str, int]) -> None:
        self.cell_files = dict(cell_files)
        self._cache: dict[Frame, Frame] = {}

    def is_cell(self, filename: str) -> bool:
        return filename in self.cell_files

    def frame(self, frame: Frame) -> Frame:
        renamed = self._cache.get(frame)
        if renamed is None:
            number = self.cell_files.get(frame.filename)
            if number is None:
                renamed = frame
            else:
                renamed = Frame(frame.name, f"In [{number}]", frame.line, frame.firstlineno)
            self._cache[frame] = renamed
        return renamed


_MAGIC_DISPATCH = frozenset({"run_cell_magic", "run_line_magic"})


def _is_our_magic(filename: str) -> bool:
    return filename.replace("\\", "/").endswith("spy_magic/notebook/magics.py")


def _calls_our_magic(frames: tuple[Frame, ...], index: int) -> bool:
    """Whether the cell frame at `index` called one of our magics: the frames just inside
    it (frames are innermost first) are IPython's or generated (`<decorator-gen-N>`), then
    ours. A cell calling our library (or IPython's display) is not this: those frames stay."""
    dispatching = False
    for frame in frames[index - 1 :: -1] if index > 0 else ():
        if _is_our_magic(frame.filename):
            return True
        if not (is_machinery(frame.filename) or frame.filename.startswith("<")):
            return False
        dispatching = dispatching or frame.name.rsplit(".", 1)[-1] in _MAGIC_DISPATCH
    # Caught inside IPython's magic dispatch with no magic frame yet (or any more): a nested
    # %%spy starting or ending. Another magic caught there for that instant loses nothing.
    return dispatching


def _next_cell_inside(frames: tuple[Frame, ...], index: int, namer: CellNamer) -> int | None:
    """The nearest cell frame inside (called by) the one at `index`, if any."""
    for inner in range(index - 1, -1, -1):
        if namer.is_cell(frames[inner].filename):
            return inner
    return None


def _without_magic_calls(frames: tuple[Frame, ...], namer: CellNamer) -> tuple[Frame, ...]:
    """`frames` less what lies between a cell frame that called our magic and the cell code
    that magic ran (all of it when the magic was doing its own work, starting or stopping)."""
    kept = []
    index = len(frames) - 1
    while index >= 0:
        kept.append(frames[index])
        if namer.is_cell(frames[index].filename) and _calls_our_magic(frames, index):
            inner = _next_cell_inside(frames, index, namer)
            index = -1 if inner is None else inner
        else:
            index -= 1
    kept.reverse()
    return tuple(kept)


def trim_trace(
    trace: Trace,
    namer: CellNamer,
    cell_threads: frozenset[tuple[int, int]],
    cell_file: str | None,
) -> Trace | None:
    """The trace as the notebook user should see it, or None when it is all machinery.

    `cell_threads` are the (pid, thread id) pairs that ran the cell itself (the kernel's
    main thread, and the thread running a top-level await): their traces are cut at it.
    Any other trace with kernel machinery below a cell frame (a forked child's copy of the
    stack that forked it) is cut at its outermost cell frame; when that frame is only an
    earlier cell's `%%spy` line, at the cell body the magic ran.
    """
    frames = trace.frames
    cut = None
    if (trace.pid, trace.thread_id) in cell_threads and cell_file is not None:
        # Cut at the outermost frame of this cell: everything below it is the kernel.
        for index in range(len(frames) - 1, -1, -1):
            if frames[index].filename == cell_file:
                cut = index
                break
        if cut is None:
            return None  # the kernel itself, before or after the cell ran
    else:
        for index in range(len(frames) - 1, -1, -1):
            if namer.is_cell(frames[index].filename):
                if any(is_machinery(f.filename) for f in frames[index + 1 :]):
                    cut = index
                    if frames[index].filename != cell_file and _calls_our_magic(frames, index):
                        inner = _next_cell_inside(frames, index, namer)
                        cut = index if inner is None else inner
                break
        if cut is None and not any(
            not is_library(f.filename) or namer.is_cell(f.filename) for f in frames
        ):
            return None  # a kernel thread (heartbeat, iopub, history, our collector, ...)
    if cut is not None:
        frames = frames[: cut + 1]
    frames = _without_magic_calls(frames, namer)
    return dataclasses.replace(trace, frames=tuple(namer.frame(f) for f in frames))


@dataclasses.dataclass(frozen=True)
class CellContext:
    """What trimming needs to know about the cell being profiled, as the kernel sees it.

    `cell_files`: every cell's compiled file name -> its n in In [n]; `cell_file`: the running
    cell's; `cell_threads`: the (pid, thread id) pairs running the cell itself. The kernel
    sends it to the helper (as JSON: `to_json`), which trims there.
    """

    cell_files: Mapping[str, int]
    cell_file: str | None = None
    cell_threads: frozenset[tuple[int, int]] = frozenset()

    def to_json(self) -> dict:
        return {
            "cell_files": dict(self.cell_files),
            "cell_file": self.cell_file,
            "cell_threads": sorted([pid, tid] for pid, tid in self.cell_threads),
        }

    @classmethod
    def from_json(cls, data: object) -> CellContext:
        """The context `to_json` wrote; ValueError naming what is wrong otherwise."""
        if type(data) is not dict:
            raise ValueError(f"a cell context must be an object, got {type(data).__name__}")
        files, cell_file, threads = (
            data.get("cell_files"), data.get("cell_file"), data.get("cell_threads")
        )
        if type(files) is not dict or not all(
            type(k) is str and type(v) is int for k, v in files.items()
        ):
            raise ValueError("cell_files must map file names to cell numbers")
        if cell_file is not None and type(cell_file) is not str:
            raise ValueError("cell_file must be a file name or null")
        if type(threads) is not list or not all(
            type(t) is list and len(t) == 2 and all(type(x) is int for x in t) for t in threads
        ):
            raise ValueError("cell_threads must be a list of [pid, thread id]")
        return cls(files, cell_file, frozenset((pid, tid) for pid, tid in threads))


class Trimmer:
    """Trims samples one at a time with one context (see `trim_trace`), each distinct trace
    once: the engine shares one Trace per repeated stack, and so does the result."""

    def __init__(self, context: CellContext) -> None:
        self.context = context
        self._namer = CellNamer(context.cell_files)
        # id(trace) -> (the trace itself: kept so the id is never reused, its trimmed form)
        self._trimmed: dict[int, tuple[Trace, Trace | None]] = {}

    def sample(self, sample: Sample) -> Sample:
        traces = []
        for trace in sample.traces:
            known = self._trimmed.get(id(trace))
            if known is None:
                ctx = self.context
                known = self._trimmed[id(trace)] = (
                    trace,
                    trim_trace(trace, self._namer, ctx.cell_threads, ctx.cell_file),
                )
            if known[1] is not None:
                traces.append(known[1])
        return Sample(sample.timestamp, traces, sample.late, list(sample.errors))


def trim_profile(
    profile: Profile,
    cell_files: Mapping[str, int],
    *,
    cell_threads: Iterable[tuple[int, int]] = (),
    cell_file: str | None = None,
) -> Profile:
    """A new profile with kernel machinery trimmed and cell frames named (see module doc)."""
    return trim_with(profile, CellContext(dict(cell_files), cell_file, frozenset(cell_threads)))


def trim_with(profile: Profile, context: CellContext) -> Profile:
    """`trim_profile` with a CellContext."""
    namer = CellNamer(context.cell_files)
    # Each distinct Trace is trimmed once (the engine shares one per repeated stack), and
    # a profile that kept only aggregates is trimmed as such.
    return profile.map_traces(
        lambda trace: trim_trace(trace, namer, context.cell_threads, context.cell_file)
    )


class LiveTrim:
    """A recording still running, as read (`raw`) and trimmed for the cell (`profile`):
    each sample trimmed as it comes (by the sampler's collector), with the context the
    kernel last sent. A new context (a thread started running the cell, a cell compiled)
    trims again from `raw`: from its samples when it keeps them, else from its aggregates
    and timeline (`trim_with`), so a long recording's memory stays bounded."""

    def __init__(self, raw: Profile, context: CellContext | None) -> None:
        self.raw = raw
        self.context = context
        self._trimmer = None if context is None else Trimmer(context)
        self.profile = raw if context is None else Profile(keep_samples=raw.keep_samples)
        self._pending: list[CellContext | None] = []  # set_context's, for the adding thread
        self._lock = threading.Lock()

    def set_context(self, context: CellContext | None) -> None:
        """Trim with `context` from the next sample on (any thread may call it)."""
        with self._lock:
            self._pending.append(context)

    def add(self, sample: Sample) -> None:
        """The sampler's collector: `raw` gets the sample, `profile` its trimmed form."""
        if self._pending:
            self.settle()
        self.raw.add(sample)
        if self._trimmer is not None:
            self.profile.add(self._trimmer.sample(sample))

    def settle(self) -> None:
        """Apply the context last set: on the adding thread, or once adding has ended."""
        with self._lock:
            if not self._pending:
                return
            context = self._pending[-1]
            self._pending.clear()
        self.retrim(context)

    def retrim(self, context: CellContext | None) -> None:
        """Trim with `context` from now on, and what was sampled so far again. Call it
        between `add`s (on the thread that adds), never during one."""
        if context == self.context:
            return
        self.context = context
        if context is None:
            self._trimmer, self.profile = None, self.raw
            return
        self._trimmer = Trimmer(context)
        if self.raw.keep_samples:
            profile = Profile()
            for sample in self.raw.samples:
                profile.add(self._trimmer.sample(sample))
        else:
            profile = trim_with(self.raw, context)
        self.profile = profile
