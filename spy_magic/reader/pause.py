"""Pausing a process's threads for one read, with ptrace: the last resort for a torn stack.

A stack that changes faster than it can be copied (deep recursion, a generator resumed
every µs) comes back torn from every non-blocking read. Stopping the threads for the
~tens of µs a snapshot takes gives a consistent one at the price of that pause, which is
what py-spy does for every sample by default; spy_magic does it only for reads that tore.

`PTRACE_SEIZE` + `PTRACE_INTERRUPT` stop a thread without sending it a signal, and
`PTRACE_DETACH` lets it go on exactly where it was (an interrupted system call restarts).
A signal that arrives while a thread is held is handed back to it on detach. Tracing needs
the same permission as reading its memory, but fails if another tracer (a second sampler,
py-spy, a debugger, strace) holds a thread: the pauser then says why and the caller keeps its
torn result. If this process dies while holding the threads, the kernel detaches them.

Whatever a pause seized it lets go, on every path. A seized thread can only be detached from
a stop: one seized but not stopped (the pause met another tracer's thread after it, or gave up
waiting) would stay traced, and the next signal would put it in a stop nobody ends, the signal
lost with it. So every seized thread is interrupted, its stop waited for (and the signal it
may have stopped for kept) and only then detached; one that does not stop in time is kept in
`unreleased` and let go at the next chance (`release`, called by every pause and every read).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import threading
import time
from collections.abc import Iterator

from .process import stat_state

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_EVENT_STOP = 128
_WALL = 0x40000000  # wait for threads too (waitpid's __WALL)
STOP_TIMEOUT = 1.0  # seconds for every thread to stop (one in uninterruptible sleep is slow)
RELEASE_TIMEOUT = 0.2  # seconds more, after a failed pause, for its seized threads to stop
STATUS_PATIENCE = 0.05  # seconds to wait for a stop's status before trusting /proc's `t`
REAP_TIMEOUT = 1.0  # seconds for a thread that died while held to finish dying

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_ptrace.restype = ctypes.c_long

# What one look at a seized thread found (ThreadPauser._look).
_RUNNING, _STOPPED, _GONE = "running", "stopped", "gone"


class PauseFailed(OSError):
    """The threads could not be paused (another tracer, permission, or no ptrace).

    `tracer` is the thread id of the tracer found holding a thread, when that was the cause.
    """

    def __init__(self, failure: int, why: str, tracer: int | None = None) -> None:
        super().__init__(failure, why)
        self.tracer = tracer


def _call(request: int, tid: int, data: int = 0) -> int:
    """ptrace(request, tid, 0, data): 0, or the errno it failed with."""
    if _ptrace(request, tid, None, ctypes.c_void_p(data)) == 0:
        return 0
    return ctypes.get_errno()


class ThreadPauser:
    """Stops every thread of one process for the length of a `with paused():` block.

    All ptrace calls for a pause happen in the calling thread (the kernel makes that thread
    the tracer), so use one pauser from one thread at a time, `release` included.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pauses = 0
        self.syscalls = 0
        # Threads a pause seized but could not let go yet (they had not stopped, or were still
        # dying): thread id -> when a `t` in /proc may be trusted without a stop's status.
        self._unreleased: dict[int, float] = {}
        self._tracer: int | None = None  # the thread (threading.get_ident) that seized them

    @property
    def unreleased(self) -> int:
        """How many threads an earlier pause still holds, waiting for them to stop."""
        return len(self._unreleased)

    def _thread_ids(self) -> list[int]:
        try:
            return [int(name) for name in os.listdir(f"/proc/{self.pid}/task")]
        except FileNotFoundError:
            return []

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold every thread stopped inside the block; raises PauseFailed if they cannot be.

        Either way every thread it seized is let go again (see the module's docstring).
        """
        self.release()
        if self._unreleased:
            tid = next(iter(self._unreleased))
            why = f"thread {tid} has not stopped since an earlier pause (uninterruptible sleep?)"
            raise PauseFailed(errno.EBUSY, f"cannot pause the threads: {why}")
        seized: list[int] = []  # in the order seized; each is let go in `finally`
        stopped: dict[int, int] = {}  # seized and seen stopped: tid -> signal to hand back
        self._tracer = threading.get_ident()
        try:
            for tid in self._thread_ids():
                self.syscalls += 1
                failure = _call(PTRACE_SEIZE, tid)
                if failure == errno.ESRCH:
                    continue  # the thread ended meanwhile
                if failure:
                    tracer = _tracer_of(self.pid, tid) if failure == errno.EPERM else None
                    raise PauseFailed(failure, _why(failure, tid, tracer), tracer)
                seized.append(tid)
            for tid in seized:
                self.syscalls += 1
                _call(PTRACE_INTERRUPT, tid)
            deadline = time.monotonic() + STOP_TIMEOUT
            for tid in seized:
                outcome, signum = self._wait_stopped(tid, deadline)
                if outcome == _STOPPED:
                    stopped[tid] = signum
                elif outcome == _RUNNING:
                    why = f"thread {tid} did not stop within {STOP_TIMEOUT:g} s"
                    raise PauseFailed(errno.ETIMEDOUT, f"cannot pause the threads: {why}")
                # _GONE: it ended, nothing to let go
            self.pauses += 1
            yield
        finally:
            self._let_go(seized, stopped)

    def _let_go(self, seized: list[int], stopped: dict[int, int]) -> None:
        """Detach every seized thread; one not seen stopped yet is interrupted (a seized thread
        can be detached only from a stop) and waited for first."""
        waiting = [tid for tid in seized if tid not in stopped]
        for tid in waiting:  # the pause may have failed before interrupting it
            self.syscalls += 1
            _call(PTRACE_INTERRUPT, tid)
        for tid, signum in stopped.items():
            self._detach(tid, signum)
        deadline = time.monotonic() + RELEASE_TIMEOUT
        for tid in waiting:
            outcome, signum = self._wait_stopped(tid, deadline)
            if outcome == _STOPPED:
                self._detach(tid, signum)
            elif outcome == _RUNNING:
                # Still not stopped (uninterruptible sleep, or not scheduled): its stop is
                # pending, and the next `release` lets it go.
                self._unreleased[tid] = time.monotonic() + STATUS_PATIENCE

    def _detach(self, tid: int, signum: int) -> None:
        """Let a stopped thread go, handing back the signal it stopped for."""
        self.syscalls += 1
        if _call(PTRACE_DETACH, tid, signum) == errno.ESRCH:
            # It died while held (another thread called exit, or SIGKILL): a traced thread's
            # death is reported to its tracer, and until we collect it the process cannot be
            # reaped by its parent.
            self._collect_dead(tid)

    def _collect_dead(self, tid: int) -> None:
        deadline = time.monotonic() + REAP_TIMEOUT
        patience = time.monotonic() + STATUS_PATIENCE
        while time.monotonic() < deadline:
            outcome, signum = self._look(tid, patience)
            if outcome == _GONE:
                return
            if outcome == _STOPPED:  # not dead after all: it stopped again (a signal?)
                self.syscalls += 1
                if _call(PTRACE_DETACH, tid, signum) != errno.ESRCH:
                    return
            time.sleep(0.0002)
        self._unreleased[tid] = patience  # still not gone: collected by a later `release`

    def release(self) -> None:
        """Let go of what earlier pauses could not: threads that have stopped since (with
        the signal they stopped for, if any), threads that died. Cheap when there are none.

        Only the thread that seized them can: from any other this does nothing (and should
        that thread end first, the kernel lets them go)."""
        if self._tracer != threading.get_ident():
            return
        for tid, patience in list(self._unreleased.items()):
            outcome, signum = self._look(tid, patience)
            if outcome == _STOPPED:
                self.syscalls += 1
                if _call(PTRACE_DETACH, tid, signum) == errno.ESRCH:
                    continue  # dying: its death is collected next time
            elif outcome == _RUNNING:
                self.syscalls += 1
                _call(PTRACE_INTERRUPT, tid)  # pending already; asking again costs nothing
                continue
            del self._unreleased[tid]

    def close(self, timeout: float = REAP_TIMEOUT) -> None:
        """Release, waiting up to `timeout` seconds for threads still to stop or die."""
        deadline = time.monotonic() + timeout
        self.release()
        while self._unreleased and self._tracer == threading.get_ident():
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
            self.release()

    def _wait_stopped(self, tid: int, deadline: float) -> tuple[str, int]:
        """Wait until `tid` is in a ptrace stop: (_STOPPED, the signal to hand back on
        detach), (_GONE, 0) if it ended instead, (_RUNNING, 0) if `deadline` passed first."""
        patience = time.monotonic() + STATUS_PATIENCE
        while True:
            outcome, signum = self._look(tid, patience)
            if outcome != _RUNNING or time.monotonic() > deadline:
                return outcome, signum
            time.sleep(0.00002)

    def _look(self, tid: int, patience: float) -> tuple[str, int]:
        """One look at a seized thread: stopped (with the signal to hand back), gone, running.

        The stop is seen in the wait status, or (should another thread of this process have
        collected that status first) as the `t` state in /proc, trusted only after `patience`
        (a monotonic time): the status of a stop for a signal must be read here, or the signal
        would not be handed back on detach.
        """
        self.syscalls += 1
        try:
            waited, status = os.waitpid(tid, os.WNOHANG | _WALL)
        except ChildProcessError:
            return _GONE, 0  # not (or no longer) ours
        if waited == tid:
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                return _GONE, 0
            if os.WIFSTOPPED(status):
                stop = os.WSTOPSIG(status)
                if status >> 16 == 0 and stop != signal.SIGTRAP:
                    # A signal arrived first (signal-delivery-stop): give it back on detach,
                    # or the thread would never see it.
                    return _STOPPED, stop
                return _STOPPED, 0
        elif time.monotonic() > patience and _traced_stop(self.pid, tid):
            return _STOPPED, 0
        return _RUNNING, 0


def _traced_stop(pid: int, tid: int) -> bool:
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat_state(stat) == b"t"


def _status_field(path: str, name: bytes) -> int | None:
    """An integer field of a /proc status file ("TracerPid", "Tgid"); None if unreadable."""
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if line.startswith(name + b":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _tracer_of(pid: int, tid: int) -> int | None:
    """The thread id of whoever traces `tid` (/proc's TracerPid), None if nobody does."""
    return _status_field(f"/proc/{pid}/task/{tid}/status", b"TracerPid") or None


def _tracer_name(tracer: int) -> str:
    """The tracer's process and command, as "pid 1234, py-spy" (TracerPid names a thread)."""
    pid = _status_field(f"/proc/{tracer}/status", b"Tgid") or tracer
    try:
        with open(f"/proc/{pid}/comm", "rb") as fh:
            return f"pid {pid}, {fh.read().decode('utf-8', 'replace').strip()}"
    except OSError:
        return f"pid {pid}"


def _why(failure: int, tid: int | None = None, tracer: int | None = None) -> str:
    if failure == errno.EPERM and tracer is not None:
        return (
            f"cannot pause the threads: another tracer ({_tracer_name(tracer)}) holds thread "
            f"{tid}: a second sampler, a debugger or strace?"
        )
    if failure == errno.EPERM:
        return "cannot pause the threads: not permitted, or another tracer (a debugger?) holds them"
    if failure == errno.ENOSYS:
        return "cannot pause the threads: ptrace is not available here"
    return f"cannot pause the threads: {os.strerror(failure)}"
