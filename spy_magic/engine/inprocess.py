"""Sampling a process from inside it: the fallback when reading from outside is impossible.

Where the kernel refuses to let another process read us (no ptrace permission, not Linux),
a thread in the process itself can still look at `sys._current_frames()`. The picture is
biased: the sampling thread needs the GIL to look, so it only ever sees other threads at
the points where they let the GIL go (between bytecodes, at blocking calls), and it slows
CPU-bound code a little. Profiles made this way say so in their metadata.
"""

from __future__ import annotations

import os
import sys
import threading

from ..reader import Frame
from .sample import ProcessLabel, SampleError, Trace
from .sampler import BaseSampler
from .spy import command_label

BIAS_NOTE = (
    "sampled from inside the process with sys._current_frames(): biased by the GIL "
    "(threads are only seen where they release it)"
)


def _frames(frame, cache: dict) -> tuple[Frame, ...]:
    """Innermost-first Frames, named as the external reader names them."""
    out = []
    while frame is not None:
        code = frame.f_code
        key = (code, frame.f_lineno)
        value = cache.get(key)
        if value is None:
            name = getattr(code, "co_qualname", code.co_name)
            value = cache[key] = Frame(
                name, code.co_filename, frame.f_lineno or 0, code.co_firstlineno
            )
        out.append(value)
        frame = frame.f_back
    return tuple(out)


def _running(tid: int | None) -> bool | None:
    if tid is None:
        return None
    try:
        with open(f"/proc/self/task/{tid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"R"


class InProcessSampler(BaseSampler):
    """Samples the current process's other threads from a thread of its own."""

    mode = "in-process"

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.pid = os.getpid()
        self._label = ProcessLabel(self.pid, command_label(self.pid))
        self._cache: dict = {}

    def metadata(self) -> dict:
        meta = super().metadata()
        meta.update(pid=self.pid, bias=BIAS_NOTE)
        meta["python_version"] = ".".join(map(str, sys.version_info[:3]))
        return meta

    def _take(self, traces: list[Trace], errors: list[SampleError]) -> None:
        me = threading.get_ident()
        threads = {t.ident: t for t in threading.enumerate()}
        try:
            current = sys._current_frames()
        except Exception as exc:
            errors.append(SampleError(self.pid, None, type(exc).__name__, str(exc)))
            return
        if len(self._cache) > 100_000:
            self._cache.clear()
        for ident, frame in current.items():
            if ident == me:
                continue
            thread = threads.get(ident)
            native = getattr(thread, "native_id", None)
            running = _running(native) if (not self.idle or native) else None
            idle = None if running is None else not running
            if not self.idle and idle:
                continue
            traces.append(
                Trace(
                    pid=self.pid,
                    thread_id=ident,
                    native_id=native,
                    thread_name=thread.name if thread is not None else None,
                    gil=False,  # we hold it while looking
                    idle=idle,
                    frames=_frames(frame, self._cache),
                    processes=(self._label,),
                )
            )
        del current
