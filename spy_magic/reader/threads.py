"""OS-level facts about a target's threads: native ids (for old Pythons) and run state."""

from __future__ import annotations

import os
import struct

from .errors import MemoryReadError
from .fetch import Fetch
from .memory import ProcessMemory
from .process import stat_state

# glibc keeps `struct pthread` at the address pthread_self() returns; the kernel tid lives at
# a fixed offset inside it (0x2d0 on x86-64 glibc 2.x). We check that guess against the
# process's real tids, and search for the offset if the guess is wrong.
_GLIBC_TID_OFFSET = 0x2D0
_SEARCH_LIMIT = 4096
# Run states read afresh per snapshot among threads whose stack held still (ThreadStates).
STILL_READS_PER_SNAPSHOT = 64
_i32 = struct.Struct("<i")


def list_tids(pid: int) -> set[int]:
    try:
        return {int(t) for t in os.listdir(f"/proc/{pid}/task")}
    except OSError:
        return set()


class NativeIdResolver:
    """Maps pthread_t values (Python's thread ids) to kernel tids, for 3.8–3.10.

    The tid is read out of the pthread struct in every snapshot, not remembered by ident:
    glibc gives a new thread the stack (and so the ident) of one that ended, and then the
    same ident names another kernel thread. Read through the snapshot's Fetch, these 4-byte
    reads join its one scatter read.
    """

    def __init__(self, mem: ProcessMemory, pid: int) -> None:
        self.mem = mem
        self.pid = pid
        self.offset: int | None = None
        self._valid: set[int] = set()  # tids seen in /proc/PID/task

    def resolve(self, thread_ids: list[int], fetch: Fetch) -> list[int]:
        """The kernel tid of each thread (0 where unknown), in the order given."""
        if self.offset is None:
            self.offset = self._calibrate([t for t in thread_ids if t], list_tids(self.pid))
            if self.offset is None:
                return [0] * len(thread_ids)
        offset = self.offset
        out = []
        for thread_id in thread_ids:
            try:
                tid = _i32.unpack_from(*fetch.get(thread_id + offset, 4))[0] if thread_id else 0
            except MemoryReadError:
                tid = 0
            out.append(tid)
        if not self._valid.issuperset(t for t in out if t):
            # A tid not seen before: check it is one of the process's threads (a pthread
            # struct read while its thread starts or ends may hold anything).
            self._valid = list_tids(self.pid)
            out = [t if t in self._valid else 0 for t in out]
        return out

    def _calibrate(self, thread_ids: list[int], tids: set[int]) -> int | None:
        if not thread_ids or not tids:
            return None
        blobs = self.mem.read_many([(t, _SEARCH_LIMIT) for t in thread_ids])
        readable = [b for b in blobs if b is not None]
        if not readable:
            return None

        def fits(offset: int) -> bool:
            seen = {_i32.unpack_from(b, offset)[0] for b in readable}
            return len(seen) == len(readable) and seen <= tids

        if fits(_GLIBC_TID_OFFSET):
            return _GLIBC_TID_OFFSET
        for offset in range(0, _SEARCH_LIMIT - 4, 4):
            if fits(offset):
                return offset
        return None


class ThreadStates:
    """Whether the OS has each thread running right now, via /proc/PID/task/TID/stat.

    The stat files stay open between snapshots: a pread at offset 0 regenerates them, which
    costs one syscall instead of open/read/close. That syscall is still ~5 µs, too much for
    every one of a thousand threads at 100 Hz: threads whose Python stack held still since
    the last snapshot (blocked, or inside one long C call: a state that lasts) are re-read
    in turn, STILL_READS_PER_SNAPSHOT of them a snapshot, longest unread first (`due`).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.syscalls = 0
        self._fds: dict[int, int] = {}
        # Each thread's last answer, least recently read first.
        self._last: dict[int, bool | None] = {}
        # Answers given instead of /proc while the threads are paused (they look stopped).
        self.pinned: dict[int, bool | None] | None = None

    def running(self, tid: int) -> bool | None:
        if self.pinned is not None and tid in self.pinned:
            return self.pinned[tid]
        fd = self._fds.get(tid)
        try:
            if fd is None:
                self.syscalls += 1
                fd = os.open(f"/proc/{self.pid}/task/{tid}/stat", os.O_RDONLY)
                self._fds[tid] = fd
            self.syscalls += 1
            stat = os.pread(fd, 512, 0)
        except OSError:
            self._drop(tid)
            return None
        state = stat_state(stat)
        answer = None if not state else state == b"R"
        self._last.pop(tid, None)
        self._last[tid] = answer
        return answer

    def due(self, still, budget: int = 0) -> set[int]:
        """Of the threads in `still` (a set of tids whose stacks are unchanged since the last
        snapshot), those to read afresh now: any never read, and the `budget` read longest
        ago; the others keep their last answer (`last`)."""
        budget = budget or STILL_READS_PER_SNAPSHOT
        last = self._last
        out = set(still - last.keys())
        if len(still) - len(out) <= budget:
            return set(still)
        taken = 0
        for tid in last:  # least recently read first
            if tid in still:
                out.add(tid)
                taken += 1
                if taken >= budget:
                    break
        return out

    def still_running(self, tid: int | None, due: set[int]) -> bool | None:
        """Whether a thread whose stack held still is running: read afresh when it is `due`
        (see `due`), else its last answer; None without a native id."""
        if not tid:
            return None
        return self.running(tid) if tid in due else self.last(tid)

    def last(self, tid: int) -> bool | None:
        """The last answer for the thread (what `running` said when it last read it)."""
        if self.pinned is not None and tid in self.pinned:
            return self.pinned[tid]
        return self._last.get(tid)

    def forget_except(self, tids: set[int]) -> None:
        for tid in self._fds.keys() - tids:
            self._drop(tid)
        for tid in self._last.keys() - tids:
            del self._last[tid]

    def _drop(self, tid: int) -> None:
        self._last.pop(tid, None)
        fd = self._fds.pop(tid, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for tid in list(self._fds):
            self._drop(tid)
