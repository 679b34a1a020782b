"""StackReader: every Python thread of another process, read from outside, never paused."""

from __future__ import annotations

import struct
import time

from . import debug_offsets
from .codes import CodeCache
from .errors import (
    AccessDenied,
    MemoryReadError,
    NotReady,
    ProcessExited,
    ReaderError,
    TornStack,
    UnsupportedVersion,
)
from .fetch import Fetch
from .frames import DEFAULT_MAX_DEPTH, ChunkWalker, LegacyWalker
from .layouts import LAYOUTS
from .memory import ProcessMemory
from .model import ThreadStack
from .process import Interpreter, find_interpreter, process_is_gone
from .threads import NativeIdResolver, ThreadStates

SUPPORTED = ((3, 8), (3, 9), (3, 10), (3, 11), (3, 12), (3, 13))
MAX_THREADS = 100_000
THREAD_NAME_REFRESH_S = 0.25
_Q = struct.Struct("<Q")
_I = struct.Struct("<I")


def _version_text(version: tuple[int, int, int]) -> str:
    major, minor, micro = version
    return f"{major}.{minor}.{micro}" if micro else f"{major}.{minor}"


class StackReader:
    """Reads the stacks of every thread in a CPython 3.8–3.13 process.

    Construction finds the interpreter and checks it can be read (raising NoSuchProcess,
    NotPython, AccessDenied, UnsupportedVersion or NotReady); each `read()` is one snapshot.
    """

    def __init__(
        self, pid: int, *, max_depth: int = DEFAULT_MAX_DEPTH, thread_names: bool = True
    ) -> None:
        self.pid = pid
        self.interpreter: Interpreter = find_interpreter(pid)
        self.version = self.interpreter.version
        self.mem = ProcessMemory(pid)
        self.layout = self._layout()
        self.codes = CodeCache(
            self.mem, self.version, self.layout, self.interpreter.code_type_address
        )
        walker_type = ChunkWalker if self.version[:2] >= (3, 11) else LegacyWalker
        self.walker = walker_type(self.layout, self.codes, self.version, max_depth)
        self._modern = self.version[:2] >= (3, 11)
        self._plan: list[tuple[int, int]] = []
        self._last_codes: set[int] = set()
        self._native_ids = (
            None if "tstate.native_thread_id" in self.layout else (NativeIdResolver(self.mem, pid))
        )
        self._states = ThreadStates(pid)
        self._want_names = thread_names
        self._names: dict[int, str] = {}
        self._names_at = -1.0
        self._gil_struct: int | None = None
        self._tstate_unpack, self._tstate_size = self._tstate_fields()
        self.interp_address = self._check_ready()

    # -- set-up -----------------------------------------------------------------------------
    def _layout(self) -> dict[str, int]:
        interp = self.interpreter
        text = _version_text(self.version)
        if interp.free_threaded:
            raise UnsupportedVersion(self.pid, text + "t", "free-threaded builds are not supported")
        if self.version[:2] not in SUPPORTED:
            if self.version[:2] >= (3, 14):
                why = "its _Py_DebugOffsets layout is newer than this reader knows"
            else:
                why = "too old"
            raise UnsupportedVersion(self.pid, text, why)
        if not interp.runtime_address:
            raise NotReady(self.pid, "_PyRuntime not found")
        layout = dict(LAYOUTS[self.version[:2]])
        if self.version[:2] >= (3, 13):
            layout.update(self._debug_offsets(layout))
        return layout

    def _debug_offsets(self, table: dict[str, int]) -> dict[str, int]:
        """3.13+: take every field the target describes itself from its _Py_DebugOffsets."""
        try:
            raw = self.mem.read(self.interpreter.runtime_address, debug_offsets.header_size())
            packed, free_threaded = debug_offsets.parse_header(raw)
            if free_threaded:
                raise UnsupportedVersion(
                    self.pid,
                    _version_text(self.version) + "t",
                    "free-threaded builds are not supported",
                )
            if (packed >> 24, (packed >> 16) & 0xFF) != self.version[:2]:
                raise UnsupportedVersion(
                    self.pid,
                    f"{packed >> 24}.{(packed >> 16) & 0xFF}",
                    "its _Py_DebugOffsets disagree with its version",
                )
            found = debug_offsets.parse_313(raw)
        except debug_offsets.DebugOffsetsError as exc:
            raise UnsupportedVersion(self.pid, _version_text(self.version), str(exc)) from None
        # Fields 3.13 does not describe, placed relative to ones it does.
        found["tstate.datastack_top"] = found["tstate.datastack_chunk"] + (
            table["tstate.datastack_top"] - table["tstate.datastack_chunk"]
        )
        return found

    def _tstate_fields(self):
        from .frames import _unpacker

        layout = self.layout
        keys = ["tstate.next", "tstate.thread_id"]
        if "tstate.native_thread_id" in layout:
            keys.append("tstate.native_thread_id")
        if self._modern:
            keys += ["tstate.datastack_chunk", "tstate.datastack_top"]
            keys.append(
                "tstate.current_frame" if "tstate.current_frame" in layout else "tstate.cframe"
            )
        else:
            keys.append("tstate.frame")
        self._tstate_keys = keys
        return _unpacker([(layout[k], 8) for k in keys])

    def _check_ready(self) -> int:
        try:
            interp = self.mem.read_u64(
                self.interpreter.runtime_address + self.layout["runtime.interpreters_head"]
            )
            if not interp:
                raise NotReady(self.pid, "no interpreter has been created yet")
            head = self.mem.read_u64(interp + self.layout["interp.threads_head"])
            if not head:
                raise NotReady(self.pid, "the interpreter has no threads yet")
        except MemoryReadError as exc:
            raise NotReady(self.pid, str(exc)) from None
        except ProcessExited:
            raise
        except AccessDenied:
            raise
        return interp

    # -- snapshots --------------------------------------------------------------------------
    def read(self) -> list[ThreadStack]:
        """One snapshot of every thread. Per-thread failures land in ThreadStack.error."""
        try:
            return self._read()
        except ProcessExited:
            raise
        except ReaderError:
            if process_is_gone(self.pid):
                raise ProcessExited(self.pid) from None
            raise
        except OSError:
            if process_is_gone(self.pid):
                raise ProcessExited(self.pid) from None
            raise

    def _read(self) -> list[ThreadStack]:
        layout = self.layout
        now = time.monotonic()
        if self._last_codes:
            self.codes.revalidate(self._last_codes, now)
        fetch = Fetch(self.mem, self._plan)
        try:
            interp = self.interp_address
            head = _Q.unpack_from(fetch.get(interp + layout["interp.threads_head"], 8))[0]
            holder = self._gil_holder(fetch)
        except MemoryReadError:
            if process_is_gone(self.pid):
                raise ProcessExited(self.pid) from None
            raise
        threads: list[ThreadStack] = []
        codes_seen: set[int] = set()
        tstate = head
        seen: set[int] = set()
        raw_threads = []
        while tstate and len(seen) < MAX_THREADS and tstate not in seen:
            seen.add(tstate)
            try:
                values = self._tstate_unpack(fetch.get(tstate, self._tstate_size))
            except MemoryReadError:
                if process_is_gone(self.pid):
                    raise ProcessExited(self.pid) from None
                break  # the list changed under us; what we have is still valid
            fields = dict(zip(self._tstate_keys, values))
            raw_threads.append((tstate, fields))
            tstate = fields["tstate.next"]

        native_of = None
        if self._native_ids is not None:
            native_of = self._native_ids.resolve([f["tstate.thread_id"] for _, f in raw_threads])
        names = self._thread_names(fetch, [f["tstate.thread_id"] for _, f in raw_threads], now)
        tids = set()
        for tstate, fields in raw_threads:
            thread_id = fields["tstate.thread_id"]
            if native_of is None:
                native: int | None = fields["tstate.native_thread_id"]
            else:
                native = native_of.get(thread_id)
            if native:
                tids.add(native)
            stack = ThreadStack(
                pid=self.pid,
                thread_id=thread_id,
                native_id=native or None,
                name=names.get(thread_id),
                gil=bool(holder) and tstate == holder,
                idle=(not running)
                if native and (running := self._states.running(native)) is not None
                else None,
            )
            try:
                frames, used = self._walk(fetch, fields)
                stack.frames = tuple(frames)
                codes_seen |= used
            except TornStack as exc:
                stack.error = exc
            except MemoryReadError as exc:
                if process_is_gone(self.pid):
                    raise ProcessExited(self.pid) from None
                stack.error = TornStack(str(exc))
            threads.append(stack)
        self._states.forget_except(tids)
        self._plan = fetch.plan()
        self._last_codes = codes_seen
        return threads

    def _walk(self, fetch: Fetch, fields: dict[str, int]):
        if not self._modern:
            return self.walker.walk(fetch, fields["tstate.frame"])
        if "tstate.current_frame" in fields:
            frame = fields["tstate.current_frame"]
        else:
            cframe = fields["tstate.cframe"]
            frame = 0
            if cframe:
                offset = self.layout["cframe.current_frame"]
                frame = _Q.unpack_from(fetch.get(cframe + offset, 8))[0]
        return self.walker.walk(
            fetch, frame, fields["tstate.datastack_chunk"], fields["tstate.datastack_top"]
        )

    def _gil_holder(self, fetch: Fetch) -> int:
        """The thread state holding the GIL right now, or 0."""
        layout = self.layout
        runtime = self.interpreter.runtime_address
        if "runtime.gilstate_tstate_current" in layout:
            current = _Q.unpack_from(
                fetch.get(runtime + layout["runtime.gilstate_tstate_current"], 8)
            )[0]
            return current
        if self._gil_struct is None:
            self._gil_struct = self.mem.read_u64(self.interp_address + layout["interp.ceval_gil"])
        if not self._gil_struct:
            return 0
        lo = min(layout["gil.locked"], layout["gil.last_holder"])
        hi = max(layout["gil.locked"] + 4, layout["gil.last_holder"] + 8)
        blob = fetch.get(self._gil_struct + lo, hi - lo)
        locked = _I.unpack_from(blob, layout["gil.locked"] - lo)[0]
        holder = _Q.unpack_from(blob, layout["gil.last_holder"] - lo)[0]
        return holder if locked else 0

    def _thread_names(self, fetch: Fetch, thread_ids: list[int], now: float) -> dict[int, str]:
        if not self._want_names:
            return {}
        unknown = any(t not in self._names for t in thread_ids)
        if unknown and now - self._names_at > THREAD_NAME_REFRESH_S:
            self._names_at = now
            try:
                from .objects import thread_names

                self._names = thread_names(
                    self.mem, self.version[:2], self.layout, self.interp_address
                )
            except ProcessExited:
                raise
            except Exception:  # a torn dict read: names are a nicety, stacks are not
                pass
        return self._names

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        self._states.close()
        self.mem.close()

    def __enter__(self) -> StackReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
