"""asyncio task-aware stacks: the task a thread's event loop runs, the tasks awaiting it, and
(optionally) where every waiting task is suspended.

A thread's own stack shows the running task's coroutines on top of the event loop, but not
which task that is, nor who waits for it: with `--async` the reader inserts, just below the
running task's outermost coroutine frame, a `<task NAME>` frame and then each awaiting task's
suspended coroutine chain (innermost first) under its own `<task NAME>`, up to the task no
other task awaits. In "all" mode every task that is suspended and awaits no other task also
gets a stack of its own (its chain, then its awaiters the same way), marked idle.

CPython 3.14+ describes its tasks for out-of-process readers: the `_asyncio` module carries
an `AsyncioDebug` ELF section (`Py_AsyncioModuleDebugOffsets`: where TaskObj keeps its name,
coroutine, awaiters and list node; where a thread state keeps its running loop, running task
and list of tasks), and `_Py_DebugOffsets` says where a coroutine keeps its frame and state.
Older versions have no such description: there `AsyncioReader` raises `AsyncUnsupported`
naming the version, and sampling goes on with plain stacks.

Everything read is untrusted: lists, sets and chains are bounded, and each read of tasks is
separate from the stack snapshot it decorates, so a running task whose frame is not on the
thread's stack (it switched in between) leaves that stack as it was.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass

from .elf import ElfError, parse_elf
from .errors import AccessDenied, MemoryReadError, ProcessExited, ReaderError
from .layouts import LAYOUTS
from .model import Frame, ThreadStack
from .objects import BadObject, ObjectReader
from .process import _load_bias, mapped_file, read_maps

MODES = ("running", "all")
TASK_FILE = "<asyncio task>"  # the file name of the frames that mark a task
SECTION = ".AsyncioDebug"
SECTION_SIZE = 13 * 8  # Py_AsyncioModuleDebugOffsets: 13 uint64 fields
MAX_TASKS = 1 << 15  # tasks followed in one list
MAX_CHAIN = 256  # coroutines in one task's chain
MAX_AWAITERS = 64  # tasks in one chain of awaiters
LOCATE_EVERY_S = 0.5  # how often to look for the section while asyncio is not imported yet
_Q = struct.Struct("<Q")
_q = struct.Struct("<q")
PTR = 8

# Coroutine frame states (Include/internal/pycore_frame.h): (cleared, suspended in await) and
# which stack slot below the frame's stackpointer holds the awaited object.
_FRAME_STATES = {
    (3, 14): {"cleared": 4, "yield_from": (-1,), "created": -3, "slot": 1},
    (3, 15): {"cleared": 5, "yield_from": (2, 3), "created": 0, "slot": 2},
}


class AsyncUnsupported(ReaderError):
    """Task stacks cannot be read in this process (its version); says why, for the user."""


def task_frame(name: str) -> Frame:
    """The frame that marks a task in a stack: `<task NAME>`."""
    return Frame(f"<task {name}>", TASK_FILE, 0, 0)


@dataclass(frozen=True)
class ThreadTasks:
    """What `AsyncioReader.read` found on one thread running an event loop."""

    running: str | None  # the running task's name (None: the loop runs no task now)
    stack: tuple[Frame, ...] | None  # the thread's frames with the task chain; None: as is
    waiting: tuple[tuple[Frame, ...], ...] = ()  # "all" mode: each waiting leaf task's stack


@dataclass(frozen=True)
class _Offsets:
    task_size: int
    task_name: int
    task_awaited_by: int
    task_is_task: int
    task_awaited_by_is_set: int
    task_coro: int
    task_node: int
    interp_size: int
    interp_tasks_head: int
    thread_size: int
    running_loop: int
    running_task: int
    thread_tasks_head: int


def parse_section(raw: bytes) -> _Offsets:
    """The `AsyncioDebug` section's offsets, each checked against its struct's size."""
    if len(raw) < SECTION_SIZE:
        raise AsyncUnsupported("its AsyncioDebug section is too short")
    values = struct.unpack_from("<13Q", raw)
    offsets = _Offsets(*values)
    groups = ((0, 7), (7, 9), (9, 13))
    for start, end in groups:
        size = values[start]
        if not 0 < size < 1 << 20:
            raise AsyncUnsupported(f"its AsyncioDebug section holds an implausible size {size}")
        for value in values[start + 1 : end]:
            if value + 1 > size:
                raise AsyncUnsupported("its AsyncioDebug section holds an offset past its struct")
    return offsets


def find_section(pid: int, binary: str) -> int | None:
    """The address of the `AsyncioDebug` section in the target: in the `_asyncio` extension
    module (3.14 builds it as one) or the interpreter's own image (built in, as 3.15 is
    here); None while asyncio is not imported."""
    maps = read_maps(pid)
    paths: list[str] = []
    for mapping in maps:
        path = mapping.path
        base = os.path.basename(path)
        if path and path not in paths and (path == binary or base.startswith("_asyncio")):
            paths.append(path)
    paths.sort(key=lambda p: p == binary)  # the extension module first
    for path in paths:
        try:
            elf = parse_elf(mapped_file(pid, path, maps), wanted=frozenset())
        except (OSError, ElfError):
            continue
        section = elf.sections.get(SECTION)
        if section is None or section.size < SECTION_SIZE:
            continue
        return section.addr + _load_bias(elf, maps, path)
    return None


class AsyncioReader:
    """Task stacks of one process, read beside a `StackReader` (its memory, layout, codes).

    Raises AsyncUnsupported for a version without a task description (before 3.14)."""

    def __init__(self, stack_reader, mode: str = "running") -> None:
        if mode not in MODES:
            raise ValueError(f"async mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.stacks = stack_reader
        version = stack_reader.version
        self.states = _FRAME_STATES.get(tuple(version[:2]))
        if self.states is None:
            text = ".".join(map(str, version[:2]))
            raise AsyncUnsupported(
                f"task stacks need CPython 3.14 or newer (its _asyncio module describes its "
                f"tasks there); this is Python {text}: plain stacks only"
            )
        self.mem = stack_reader.mem
        self.layout = stack_reader.layout
        self.pid = stack_reader.pid
        self.objects = ObjectReader(self.mem, tuple(version[:2]), self.layout)
        self.offsets: _Offsets | None = None
        self._looked_at = -1.0
        self.loops_seen = 0  # snapshots in which some thread ran an event loop
        self._tag_mask = ~self.layout.get("const.Py_TAG_BITS", 0) & 0xFFFF_FFFF_FFFF_FFFF
        self._debug = self._debug_offsets()

    def _debug_offsets(self) -> dict[str, int]:
        """The _Py_DebugOffsets fields of coroutines, frames, sets and list nodes the task
        reading needs (the stack reader maps only the ones it uses)."""
        build = f"3.{self.stacks.version[1]}" + ("t" if self.stacks.free_threaded else "")
        table = LAYOUTS[build]
        names = (
            "gen_object.gi_iframe", "gen_object.gi_frame_state", "gen_object.size",
            "interpreter_frame.stackpointer", "interpreter_frame.executable",
            "interpreter_frame.instr_ptr", "interpreter_frame.owner",
            "interpreter_frame.size", "llist_node.next", "set_object.used",
            "set_object.mask", "set_object.table",
        )  # fmt: skip
        size = max(table[f"debug.{n}"] for n in names) + PTR
        raw = self.mem.read(self.stacks.interpreter.runtime_address, size)
        out = {n: _Q.unpack_from(raw, table[f"debug.{n}"])[0] for n in names}
        if not 0 < out["gen_object.size"] < 1 << 16 or out["gen_object.gi_iframe"] > 1 << 16:
            raise AsyncUnsupported("its _Py_DebugOffsets describe no usable coroutine layout")
        if "iframe.tlbc_index" in self.layout:
            out["tlbc_index"] = self.layout["iframe.tlbc_index"]
        return out

    # -- finding the description ------------------------------------------------------------
    def ready(self) -> bool:
        """Whether the target's asyncio is loaded (its AsyncioDebug section found); looked for
        again at most every LOCATE_EVERY_S while it is not."""
        if self.offsets is not None:
            return True
        now = time.monotonic()
        if now - self._looked_at < LOCATE_EVERY_S:
            return False
        self._looked_at = now
        address = find_section(self.pid, self.stacks.interpreter.binary)
        if address is None:
            return False
        self.offsets = parse_section(self.mem.read(address, SECTION_SIZE))
        return True

    # -- one read ---------------------------------------------------------------------------
    def read(self, threads: list[ThreadStack]) -> dict[int, ThreadTasks]:
        """{thread ident: ThreadTasks} for the threads of `threads` running an event loop."""
        if not self.ready():
            return {}
        names: dict[int, str] = {}  # task address -> name, for this read
        out: dict[int, ThreadTasks] = {}
        by_ident = {t.thread_id: t for t in threads}
        for tstate, ident in self._thread_states():
            try:
                found = self._thread(tstate, by_ident.get(ident), names)
            except (ProcessExited, AccessDenied):
                raise
            except (ReaderError, struct.error):
                continue  # a task list changing under the read: this thread as it is
            if found is not None:
                out[ident] = found
        if out:
            self.loops_seen += 1
        return out

    def _thread_states(self) -> list[tuple[int, int]]:
        L = self.layout
        out = []
        tstate = self.mem.read_u64(self.stacks.interp_address + L["interp.threads_head"])
        seen = set()
        while tstate and tstate not in seen and len(out) < 100_000:
            seen.add(tstate)
            out.append((tstate, self.mem.read_u64(tstate + L["tstate.thread_id"])))
            tstate = self.mem.read_u64(tstate + L["tstate.next"])
        return out

    def _thread(self, tstate: int, thread: ThreadStack | None, names: dict) -> ThreadTasks | None:
        o = self.offsets
        assert o is not None
        blob = self.mem.read(tstate + o.running_loop, PTR)
        if not _Q.unpack(blob)[0]:
            return None  # no loop runs on this thread
        running = self.mem.read_u64(tstate + o.running_task) & self._tag_mask
        stack = None
        running_name = None
        if running:
            running_name = self._name(running, names)
            if thread is not None and thread.frames:
                stack = self._running_stack(running, thread.frames, names)
        waiting: tuple[tuple[Frame, ...], ...] = ()
        if self.mode == "all":
            waiting = self._waiting(tstate + o.thread_tasks_head, running, names)
        return ThreadTasks(running_name, stack, waiting)

    def _running_stack(
        self, task: int, frames: tuple[Frame, ...], names: dict
    ) -> tuple[Frame, ...] | None:
        """The thread's frames with the running task's mark and awaiters below its outermost
        coroutine frame; None when that frame is not on the stack (the task switched)."""
        coro = self._task_coro(task)
        if not coro:
            return None
        frame = self._coro_frame(coro)
        if frame is None:
            return None
        split = None
        key = (frame.name, frame.filename, frame.firstlineno)
        for index in range(len(frames) - 1, -1, -1):  # outermost match
            f = frames[index]
            if (f.name, f.filename, f.firstlineno) == key:
                split = index
                break
        if split is None:
            return None
        below = [task_frame(self._name(task, names))]
        below += self._awaiters(task, names)
        return (*frames[: split + 1], *below, *frames[split + 1 :])

    def _awaiters(self, task: int, names: dict) -> list[Frame]:
        """Below a task: each awaiting task's suspended chain (innermost first) and mark."""
        out: list[Frame] = []
        seen = {task}
        for _ in range(MAX_AWAITERS):
            awaiting = self._awaited_by(task)
            parent = next((t for t in awaiting if t not in seen), None)
            if parent is None:
                break
            seen.add(parent)
            out += reversed(self._chain(self._task_coro(parent)))
            out.append(task_frame(self._name(parent, names)))
            task = parent
        return out

    def _waiting(self, head: int, running: int, names: dict) -> tuple[tuple[Frame, ...], ...]:
        """Each task of the thread's list that awaits no other task (a leaf of the await
        graph) and is not the running one: its chain, its mark, its awaiters."""
        tasks = self._list(head)
        awaited: set[int] = set()
        for task in tasks:
            awaited.update(self._awaited_by(task))
        out = []
        for task in tasks:
            if task == running or task in awaited:
                continue
            chain = self._chain(self._task_coro(task))
            if not chain:
                continue  # finished, or not started yet
            stack = [*reversed(chain), task_frame(self._name(task, names))]
            stack += self._awaiters(task, names)
            out.append(tuple(stack))
        return tuple(out)

    # -- tasks ------------------------------------------------------------------------------
    def _list(self, head: int) -> list[int]:
        """The tasks of one llist (a thread's or the interpreter's), bounded."""
        o = self.offsets
        nxt = self._debug["llist_node.next"]
        out = []
        node = self.mem.read_u64(head + nxt)
        while node and node != head and len(out) < MAX_TASKS:
            out.append(node - o.task_node)
            node = self.mem.read_u64(node + nxt)
        return out

    def _task_coro(self, task: int) -> int:
        return self.mem.read_u64(task + self.offsets.task_coro) & self._tag_mask

    def _awaited_by(self, task: int) -> list[int]:
        """The tasks awaiting `task`: one object, or a set of them."""
        o = self.offsets
        blob = self.mem.read(task, o.task_size)
        value = _Q.unpack_from(blob, o.task_awaited_by)[0] & self._tag_mask
        if not value:
            return []
        if not blob[o.task_awaited_by_is_set]:
            return [value] if self._is_task(value) else []
        d = self._debug
        header = self.mem.read(value, max(d["set_object.used"], d["set_object.mask"],
                                          d["set_object.table"]) + PTR)  # fmt: skip
        mask = _q.unpack_from(header, d["set_object.mask"])[0]
        table = _Q.unpack_from(header, d["set_object.table"])[0]
        if not 0 <= mask < 1 << 16 or not table:
            raise BadObject(value, f"implausible set mask {mask}")
        entries = self.mem.read(table, (mask + 1) * 2 * PTR)
        keys = [_Q.unpack_from(entries, i * 2 * PTR)[0] for i in range(mask + 1)]
        return [k for k in keys if k and self._is_task(k)]

    def _is_task(self, address: int) -> bool:
        """A Task (not a plain Future, not a set's dummy entry): its is_task flag."""
        try:
            return self.mem.read(address + self.offsets.task_is_task, 1) == b"\x01"
        except MemoryReadError:
            return False

    def _name(self, task: int, names: dict) -> str:
        name = names.get(task)
        if name is None:
            try:
                obj = self.mem.read_u64(task + self.offsets.task_name) & self._tag_mask
                value = self.objects.read_value(obj)
                name = f"Task-{value}" if isinstance(value, int) else str(value)
            except (ProcessExited, AccessDenied):
                raise
            except (ReaderError, ValueError):
                name = f"task at {task:#x}"
            names[task] = name
        return name

    # -- coroutines -------------------------------------------------------------------------
    def _coro_frame(self, coro: int) -> Frame | None:
        """The frame a coroutine object holds (its own, executing or suspended)."""
        d = self._debug
        iframe = self.mem.read(coro + d["gen_object.gi_iframe"], d["interpreter_frame.size"])
        return self._frame(iframe)

    def _frame(self, iframe: bytes) -> Frame | None:
        d = self._debug
        code = _Q.unpack_from(iframe, d["interpreter_frame.executable"])[0] & self._tag_mask
        instr = _Q.unpack_from(iframe, d["interpreter_frame.instr_ptr"])[0]
        if not code:
            return None
        codes = self.stacks.codes
        info = codes.get(code)
        start = info.code_start
        if "tlbc_index" in d:
            copy = struct.unpack_from("<i", iframe, d["tlbc_index"])[0]
            if copy:
                start = codes.bytecode_start(info, copy)
        index = (instr - start) >> 1
        if not -1 <= index < info.code_units:
            return Frame(info.name, info.filename, 0, info.firstlineno)
        return info.frame_at(index * 2 if index >= 0 else -1)

    def _chain(self, coro: int) -> list[Frame]:
        """A suspended coroutine's chain, outermost first: its frame, then the frame of each
        coroutine it awaits (the object under its frame's stackpointer while it is
        suspended in an await), until it awaits something else (a future, a task)."""
        d = self._debug
        states = self.states
        out: list[Frame] = []
        seen = set()
        gen_type = None
        while coro and coro not in seen and len(out) < MAX_CHAIN:
            seen.add(coro)
            raw = self.mem.read(coro, d["gen_object.size"])
            ob_type = _Q.unpack_from(raw, self.layout["object.ob_type"])[0]
            if gen_type is None:
                gen_type = ob_type
            elif ob_type != gen_type:
                break  # awaiting something that is not a coroutine
            state = struct.unpack_from("<b", raw, d["gen_object.gi_frame_state"])[0]
            if state == states["cleared"]:
                break
            start = d["gen_object.gi_iframe"]
            iframe = raw[start : start + d["interpreter_frame.size"]]
            if len(iframe) < d["interpreter_frame.size"]:
                iframe = self.mem.read(coro + start, d["interpreter_frame.size"])
            frame = self._frame(iframe)
            if frame is None:
                break
            out.append(frame)
            if state not in states["yield_from"]:
                break
            sp = _Q.unpack_from(iframe, d["interpreter_frame.stackpointer"])[0] & self._tag_mask
            if not sp:
                break
            coro = self.mem.read_u64(sp - states["slot"] * PTR) & self._tag_mask
        return out
