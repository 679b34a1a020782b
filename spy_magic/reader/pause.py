"""Pausing a process's threads for one read, with ptrace: the last resort for a torn stack.

A stack that changes faster than it can be copied (deep recursion, a generator resumed
every µs) comes back torn from every non-blocking read. Stopping the threads for the
~tens of µs a snapshot takes gives a consistent one at the price of that pause, which is
what py-spy does for every sample by default; spy_magic does it only for reads that tore.

`PTRACE_SEIZE` + `PTRACE_INTERRUPT` stop a thread without sending it a signal, and
`PTRACE_DETACH` lets it go on exactly where it was (an interrupted system call restarts).
A signal that arrives while a thread is held is handed back to it on detach. Tracing needs
the same permission as reading its memory, but fails if another tracer (a debugger, strace)
holds the process: the pauser then says why and the caller keeps its torn result. If this
process dies while holding the threads, the kernel detaches them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import time
from collections.abc import Iterator

from .process import stat_state

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_EVENT_STOP = 128
_WALL = 0x40000000  # wait for threads too (waitpid's __WALL)
STOP_TIMEOUT = 1.0  # seconds for every thread to stop (one in uninterruptible sleep is slow)
STATUS_PATIENCE = 0.05  # seconds to wait for a stop's status before trusting /proc's `t`
REAP_TIMEOUT = 1.0  # seconds for a thread that died while held to finish dying

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_ptrace.restype = ctypes.c_long


class PauseFailed(OSError):
    """The threads could not be paused (another tracer, permission, or no ptrace)."""


def _call(request: int, tid: int, data: int = 0) -> int:
    """ptrace(request, tid, 0, data): 0, or the errno it failed with."""
    if _ptrace(request, tid, None, ctypes.c_void_p(data)) == 0:
        return 0
    return ctypes.get_errno()


class ThreadPauser:
    """Stops every thread of one process for the length of a `with paused():` block.

    All ptrace calls for a pause happen in the calling thread (the kernel makes that thread
    the tracer), so use one pauser from one thread at a time.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pauses = 0
        self.syscalls = 0

    def _thread_ids(self) -> list[int]:
        try:
            return [int(name) for name in os.listdir(f"/proc/{self.pid}/task")]
        except FileNotFoundError:
            return []

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold every thread stopped inside the block; raises PauseFailed if they cannot be."""
        seized: list[int] = []
        pending_signal: dict[int, int] = {}
        try:
            for tid in self._thread_ids():
                self.syscalls += 1
                failure = _call(PTRACE_SEIZE, tid)
                if failure == errno.ESRCH:
                    continue  # the thread ended meanwhile
                if failure:
                    raise PauseFailed(failure, _why(failure))
                seized.append(tid)
            for tid in seized:
                self.syscalls += 1
                _call(PTRACE_INTERRUPT, tid)
            deadline = time.monotonic() + STOP_TIMEOUT
            for tid in list(seized):
                if not self._wait_stopped(tid, pending_signal, deadline):
                    seized.remove(tid)  # it ended
            self.pauses += 1
            yield
        finally:
            for tid in seized:
                self.syscalls += 1
                if _call(PTRACE_DETACH, tid, pending_signal.get(tid, 0)) == errno.ESRCH:
                    # It died while held (another thread called exit, or SIGKILL): a traced
                    # thread's death is reported to its tracer, and until we collect it the
                    # process cannot be reaped by its parent. (Or it has not stopped yet.)
                    self._collect_dead(tid)

    def _collect_dead(self, tid: int) -> None:
        deadline = time.monotonic() + REAP_TIMEOUT
        while time.monotonic() < deadline:
            self.syscalls += 1
            try:
                waited, status = os.waitpid(tid, os.WNOHANG | _WALL)
            except ChildProcessError:
                return  # collected already, or no longer ours
            if waited == tid and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
                return
            if waited == tid and os.WIFSTOPPED(status):
                # Not dead: it only stopped late (after a pause gave up waiting). Let it go.
                _call(PTRACE_DETACH, tid)
                return
            time.sleep(0.0002)

    def _wait_stopped(self, tid: int, pending_signal: dict[int, int], deadline: float) -> bool:
        """Wait until `tid` is in a ptrace stop; False if it ended instead.

        The stop is seen in the wait status, or (should another thread of this process have
        collected that status first) as the `t` state in /proc.
        """
        patience = time.monotonic() + STATUS_PATIENCE
        while True:
            self.syscalls += 1
            try:
                waited, status = os.waitpid(tid, os.WNOHANG | _WALL)
            except ChildProcessError:
                return False
            if waited == tid:
                if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                    return False
                if os.WIFSTOPPED(status):
                    stop = os.WSTOPSIG(status)
                    if status >> 16 == 0 and stop != signal.SIGTRAP:
                        # A signal arrived first (signal-delivery-stop): give it back on
                        # detach, or the thread would never see it.
                        pending_signal[tid] = stop
                    return True
            elif time.monotonic() > patience and _traced_stop(self.pid, tid):
                # Stopped, but its status never came: another thread of this process
                # collected it. Only trusted late: the status of a stop for a signal must be
                # read here, or the signal would not be handed back on detach.
                return True
            if time.monotonic() > deadline:
                raise PauseFailed(errno.ETIMEDOUT, f"thread {tid} did not stop")
            time.sleep(0.00002)


def _traced_stop(pid: int, tid: int) -> bool:
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat_state(stat) == b"t"


def _why(failure: int) -> str:
    if failure == errno.EPERM:
        return "cannot pause the threads: not permitted, or another tracer (a debugger?) holds them"
    if failure == errno.ENOSYS:
        return "cannot pause the threads: ptrace is not available here"
    return f"cannot pause the threads: {os.strerror(failure)}"
