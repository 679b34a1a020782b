"""One sampled process: a stack reader plus the policy around it (start-up retries, filters)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Callable

from ..reader import (
    AccessDenied,
    NoSuchProcess,
    NotPython,
    NotReady,
    ProcessExited,
    ReaderError,
    StackReader,
    UnsupportedVersion,
    decode_name,
)
from .sample import ProcessLabel, SampleError, Trace

if TYPE_CHECKING:
    from ..reader.asyncio_tasks import AsyncioReader

DEFAULT_START_TIMEOUT = 5.0
_RETRY_INTERVAL = 0.005
# Per thread. Distinct stacks differ near the top, where the comparison starts (frames are
# innermost first), so a miss costs a pointer compare or two: a long list is cheap.
RECENT_TRACES = 64

ReaderFactory = Callable[[int], StackReader]


def command_label(pid: int, limit: int = 60) -> str:
    """A short command line for a pid, for labels ("python worker.py --n 3")."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [decode_name(a) for a in fh.read().split(b"\0") if a]
    except OSError:
        argv = []
    if not argv:
        return f"pid {pid}"
    argv[0] = os.path.basename(argv[0])
    text = " ".join(argv)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def attach(
    pid: int,
    *,
    timeout: float = DEFAULT_START_TIMEOUT,
    reader_factory: ReaderFactory = StackReader,
    stop: Callable[[], bool] | None = None,
) -> StackReader:
    """A reader for `pid`, retrying while its interpreter is still starting.

    A process launched a moment ago may still be the shell or loader that precedes Python,
    or a Python whose runtime is not initialised: those raise NotReady (or NotPython while
    the executable is not Python yet). Retry for up to `timeout` seconds, then give up with
    the last error. Errors that no wait can fix (no such process, permission, version) are
    raised at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return reader_factory(pid)
        except (NotReady, NotPython) as exc:
            if time.monotonic() >= deadline or (stop is not None and stop()):
                if isinstance(exc, NotReady):
                    raise NotReady(pid, f"still not ready after {timeout:g} s") from exc
                raise
            time.sleep(_RETRY_INTERVAL)
        except (NoSuchProcess, AccessDenied, UnsupportedVersion):
            raise


class ProcessSpy:
    """Samples one process; turns reader output into Traces, errors into SampleErrors."""

    def __init__(
        self,
        reader: StackReader,
        *,
        chain: tuple[ProcessLabel, ...] = (),
        idle: bool = True,
        gil: bool = False,
        exception: bool = False,
        async_tasks: str | None = None,
    ) -> None:
        self.reader = reader
        self.pid = reader.pid
        self.label = ProcessLabel(self.pid, command_label(self.pid))
        self.chain = (*chain, self.label)
        self.idle = idle
        self.gil = gil
        self.exception = exception  # keep only threads known to handle an exception
        self.exited = False
        # thread id -> its latest distinct Traces, newest last (see _trace_of).
        self._recent: dict[int, list[Trace]] = {}
        # Per thread id: the ThreadStack last turned into a Trace, and that Trace. The reader
        # hands out an unchanged thread's ThreadStack object again, so with many idle
        # threads most of a sample is one identity check per thread.
        self._last_of: dict[int, tuple[object, Trace]] = {}
        # --async: task-aware stacks, or why this process cannot have them.
        self.tasks: AsyncioReader | None = None
        self._async_unsupported: str | None = None
        if async_tasks:
            from ..reader.asyncio_tasks import AsyncUnsupported, open_tasks  # --async only

            try:
                self.tasks = open_tasks(reader, async_tasks)
            except AsyncUnsupported as exc:
                self._async_unsupported = str(exc)
            except ReaderError as exc:
                self._async_unsupported = f"its task description is unreadable ({exc})"

    @property
    def async_warning(self) -> str | None:
        """What --async could not do in this process, for the user; None when it worked."""
        if self._async_unsupported:
            return f"pid {self.pid}: {self._async_unsupported}"
        if self.tasks is not None and self.tasks.problem:
            return f"pid {self.pid}: {self.tasks.problem}"
        if self.tasks is not None and not self.tasks.loops_seen:
            return (
                f"pid {self.pid}: no thread ran an asyncio event loop while it was sampled: "
                "plain stacks only"
            )
        return None

    def sample(self, traces: list[Trace], errors: list[SampleError]) -> None:
        """Append this process's traces and errors; marks the spy exited when it is gone."""
        try:
            threads = self.reader.read()
        except ProcessExited:
            self.exited = True  # a process ending is the end of its sampling, not an error
            return
        except ReaderError as exc:
            errors.append(SampleError(self.pid, None, type(exc).__name__, str(exc)))
            return
        tasks = self._read_tasks(threads) if self.tasks is not None else {}
        if len(self._last_of) > 2 * len(threads) + RECENT_TRACES:
            self._forget_gone(threads)
        last_of = self._last_of
        for thread in threads:
            if not tasks:
                last = last_of.get(thread.thread_id)
                if last is not None and last[0] is thread:  # handed out again: unchanged
                    if last[1] is not None:
                        traces.append(last[1])
                    continue
            if thread.error is not None:
                errors.append(
                    SampleError(
                        self.pid, thread.thread_id, type(thread.error).__name__, str(thread.error)
                    )
                )
                continue
            if (
                (not self.idle and thread.idle)
                or (self.gil and not thread.gil)
                or (self.exception and not thread.exception)
                or not thread.frames
            ):
                last_of[thread.thread_id] = (thread, None)  # left out while it holds still
                continue
            found = tasks.get(thread.thread_id)
            if found is None:
                trace = self._trace_of(thread)
                last_of[thread.thread_id] = (thread, trace)
                traces.append(trace)
                continue
            traces.append(self._trace_of(thread, found.stack or thread.frames))
            if self.idle and not self.gil and not self.exception:  # waiting: idle, no GIL
                for stack in found.waiting:
                    traces.append(self._trace_of(thread, stack, idle=True, gil=False))

    def _forget_gone(self, threads) -> None:
        """Drop what is kept for threads that are gone (thread ids churn in a pool that
        makes new threads): the maps stay the size of the threads alive."""
        alive = {thread.thread_id for thread in threads}
        self._last_of = {t: v for t, v in self._last_of.items() if t in alive}
        self._recent = {t: v for t, v in self._recent.items() if t in alive}

    def _read_tasks(self, threads) -> dict:
        """The task stacks of this snapshot's threads ({} when they cannot be read now: a
        task list changing under the read costs that sample its task frames, not its stacks)."""
        try:
            return self.tasks.read(threads)
        except ReaderError:  # the process ending included: the next read tells
            return {}

    def _trace_of(
        self, thread, frames=None, *, idle: bool | None = None, gil: bool | None = None
    ) -> Trace:
        """The thread's Trace, reusing one of its recent Trace objects when equal.

        A profile repeats the same few stacks thousands of times; sharing one object per
        stack keeps a long recording's memory to its samples, not their frames, and lets
        encoders send each stack once. The reader shares Frame objects, so the tuple
        comparison below mostly compares pointers.
        """
        frames = thread.frames if frames is None else frames
        idle = thread.idle if idle is None else idle
        gil = thread.gil if gil is None else gil
        recent = self._recent.get(thread.thread_id)
        if recent is None:
            recent = self._recent[thread.thread_id] = []
        for position in range(len(recent) - 1, -1, -1):
            trace = recent[position]
            if (
                trace.frames == frames
                and trace.gil == gil
                and trace.idle == idle
                and trace.thread_name == thread.name
                and trace.native_id == thread.native_id
                and trace.opcode == thread.opcode
            ):
                if position != len(recent) - 1:
                    recent.append(recent.pop(position))  # most recently used last
                return trace
        trace = Trace(
            pid=self.pid,
            thread_id=thread.thread_id,
            native_id=thread.native_id,
            thread_name=thread.name,
            gil=gil,
            idle=idle,
            frames=frames,
            processes=self.chain,
            opcode=thread.opcode,
        )
        recent.append(trace)
        if len(recent) > RECENT_TRACES:
            del recent[0]
        return trace

    def close(self) -> None:
        self.reader.close()
