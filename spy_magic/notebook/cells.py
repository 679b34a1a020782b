"""Making a kernel's profile read like the notebook: rooted at the cell, cells named In [n].

The kernel's main thread runs the cell several dozen frames deep inside ipykernel, tornado,
asyncio and IPython; its other threads (heartbeat, iopub, history, our own collector) are
machinery too. The user wants none of that: each main-thread trace is cut at the cell's own
frame, machinery-only threads are dropped, and frames from cells read "In [n]" instead of a
temporary file name.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import sysconfig
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


def trim_trace(
    trace: Trace,
    namer: CellNamer,
    cell_threads: frozenset[tuple[int, int]],
    cell_file: str | None,
) -> Trace | None:
    """The trace as the notebook user should see it, or None when it is all machinery.

    `cell_threads` are the (pid, thread id) pairs that ran the cell itself (the kernel's
    main thread, and the thread running a top-level await): their traces are cut at it.
    """
    frames = trace.frames
    if (trace.pid, trace.thread_id) in cell_threads and cell_file is not None:
        # Cut at the outermost frame of this cell: everything below it is the kernel.
        cut = None
        for index in range(len(frames) - 1, -1, -1):
            if frames[index].filename == cell_file:
                cut = index
                break
        if cut is None:
            return None  # the kernel itself, before or after the cell ran
        frames = frames[: cut + 1]
    elif not any(not is_library(f.filename) or namer.is_cell(f.filename) for f in frames):
        return None  # a kernel thread (heartbeat, iopub, history, our collector, ...)
    return dataclasses.replace(trace, frames=tuple(namer.frame(f) for f in frames))


def trim_profile(
    profile: Profile,
    cell_files: Mapping[str, int],
    *,
    cell_threads: Iterable[tuple[int, int]] = (),
    cell_file: str | None = None,
) -> Profile:
    """A new profile with kernel machinery trimmed and cell frames named (see module doc)."""
    namer = CellNamer(cell_files)
    cell_threads = frozenset(cell_threads)
    out = Profile(dict(profile.metadata))
    for sample in profile.samples:
        traces = []
        for trace in sample.traces:
            kept = trim_trace(trace, namer, cell_threads, cell_file)
            if kept is not None:
                traces.append(kept)
        out.add(Sample(sample.timestamp, traces, sample.late, list(sample.errors)))
    for change in profile.rate_changes:
        out.add_rate_change(change)
    return out
