"""Sampling a process from inside it: the fallback when reading from outside is impossible.

Where the kernel refuses to let another process read us (no ptrace permission, not Linux),
a thread in the process itself can still look at `sys._current_frames()`. The picture is
biased: the sampling thread needs the GIL to look, so it only ever sees other threads at
the points where they let the GIL go (between bytecodes, at blocking calls), and it slows
CPU-bound code a little. Profiles made this way say so in their metadata.
"""

from __future__ import annotations

import dis
import os
import sys
import threading

from ..reader import Frame, NotAvailable
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


def _handling() -> set[int]:
    """Idents of the threads handling an exception (3.10+: sys._current_exceptions, whose
    values are (type, value, tb) tuples before 3.12, an exception or None since)."""
    out = set()
    for ident, value in sys._current_exceptions().items():
        if isinstance(value, tuple):
            value = value[1]
        if value is not None:
            out.add(ident)
    return out


def _opcode(frame) -> str | None:
    """The instruction the frame executes, specialised names where the version has them."""
    code = frame.f_code
    units = getattr(code, "_co_code_adaptive", None) or code.co_code
    offset = frame.f_lasti
    if not 0 <= offset < len(units):
        return None
    return _OPNAMES[units[offset]]


_OPNAMES = list(getattr(dis, "_all_opname", None) or dis.opname)


class InProcessSampler(BaseSampler):
    """Samples the current process's other threads from a thread of its own."""

    mode = "in-process"
    cost_is_cpu = True  # the wall time is mostly waiting for the GIL the code holds

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.pid = os.getpid()
        self._label = ProcessLabel(self.pid, command_label(self.pid))
        self._cache: dict = {}

    def _open(self) -> None:
        if self.exception and not hasattr(sys, "_current_exceptions"):
            raise NotAvailable(
                self.pid,
                ".".join(map(str, sys.version_info[:3])),
                "which exception a thread handles from inside the process",
                "sys._current_exceptions() is new in 3.10",
            )

    def metadata(self) -> dict:
        meta = super().metadata()
        meta.update(pid=self.pid, bias=BIAS_NOTE)
        if self.gc:
            # The collector holds the GIL, so a thread of ours never runs while it collects.
            meta["gc_frames"] = "not observable from inside the process"
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
        handling = _handling() if self.exception else None
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
            if handling is not None and ident not in handling:
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
                    opcode=_opcode(frame) if self.opcodes else None,
                )
            )
        del current
