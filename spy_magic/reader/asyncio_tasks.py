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
and list of tasks), and `_Py_DebugOffsets` says where a coroutine keeps its frame and state
(`AsyncioReader`).

3.8–3.13 describe nothing: `LegacyAsyncioReader` finds the tasks through Python objects
(`asyncio.tasks._current_tasks`, {loop: running task}, with each loop's `_thread_id`; the
all-tasks WeakSets), and reads the C `_asyncio.Task` with the layout of that version's
`TaskObj` (`_TASK_LAYOUTS`, from Modules/_asynciomodule.c of each version), checked against
the target's own Task type (its tp_basicsize and tp_dictoffset) before anything is trusted:
a build whose Task differs gets a warning naming it, and plain stacks. Who awaits a task is
derived there from each task's `_fut_waiter` (a task, or a `gather()` future's children),
since those versions keep no awaited-by links; a TaskGroup's parent waits on a plain future
and is not linked. `open_tasks` picks the reader for the version.

Everything read is untrusted: lists, sets and chains are bounded, and each read of tasks is
separate from the stack snapshot it decorates, so a running task whose frame is not on the
thread's stack (it switched in between) leaves that stack as it was.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass

from .codes import CodeCache
from .elf import ElfError, parse_elf
from .errors import AccessDenied, MemoryReadError, ProcessExited, ReaderError
from .layouts import LAYOUTS
from .model import ASYNC_MODES, Frame, ThreadStack
from .objects import BadObject, ObjectReader
from .process import _load_bias, mapped_file, read_maps

MODES = ASYNC_MODES
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


# 3.8–3.13 TaskObj (Modules/_asynciomodule.c: FutureObj_HEAD, then the task's fields), 64-bit:
# (tp_basicsize, tp_dictoffset or -1 for a managed dict, task_fut_waiter, task_coro,
# task_name). The first field after the object header is fut_loop, at 16, in every version.
_TASK_LAYOUTS = {
    (3, 8): (144, 88, 104, 112, 120),
    (3, 9): (184, 96, 144, 152, 160),  # + fut_cancel_msg, fut_cancelled_exc_state
    (3, 10): (192, 104, 152, 160, 168),  # + fut_exception_tb
    (3, 11): (176, 104, 128, 136, 144),  # fut_cancelled_exc replaces the exc state
    (3, 12): (176, 104, 128, 136, 144),
    (3, 13): (144, -1, 112, 120, 128),  # managed dict and weakrefs; task ints first
}
# Coroutines before 3.14 (Include/cpython/genobject.h / pycore_genobject.h of each version):
# <= 3.10 a PyFrameObject pointer at 16 (gi_frame); its value stack's top is f_stacktop
# (3.8/3.9, at f_code + 40) or f_valuestack[f_stackdepth - 1] (3.10, at f_code + 32 / + 48).
# 3.11–3.13 the frame is embedded (gi_iframe = tp_basicsize - offsetof(frame, localsplus)),
# gi_frame_state is the int8 5 bytes before it, and `int stacktop` follows instr_ptr.
_LEGACY_CREATED = {(3, 11): -2, (3, 12): -2, (3, 13): -3}


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
        self._blobs: dict[int, bytes] = {}
        self.loops_seen = 0  # snapshots in which some thread ran an event loop
        self.problem: str | None = None  # set when a read found the tasks unreadable
        self._tag_mask = ~self.layout.get("const.Py_TAG_BITS", 0) & 0xFFFF_FFFF_FFFF_FFFF
        self._debug = self._debug_offsets()
        self._open_codes()

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

    # -- code objects -----------------------------------------------------------------------
    def _code_cache(self, code: int) -> CodeCache:
        """This reader's own cache of code objects (not the stack reader's: an entry found
        stale here is evicted, which must not touch what the stack walks rely on); each
        code a read uses is re-checked at its end (`_codes_intact`)."""
        self._codes_used.add(code)
        return self._codes

    def _open_codes(self) -> None:
        interp = self.stacks.interpreter
        self._codes = CodeCache(self.mem, self.stacks.version, self.layout,
                                interp.code_type_address)  # fmt: skip
        self._codes_used: set[int] = set()

    def _codes_intact(self) -> bool:
        """Whether every cached code object this read named frames after is still the
        object it was (a freed code's address is soon another code's): False evicts the
        stale ones, and the caller reads again."""
        used, self._codes_used = self._codes_used, set()
        due = self._codes.due(used)
        if not due:
            return True
        blobs = self.mem.read_many(self._codes.check_regions(due))
        return not self._codes.confirm(due, blobs)

    def read(self, threads: list[ThreadStack]) -> dict[int, ThreadTasks]:
        """{thread ident: ThreadTasks} for the threads of `threads` running an event loop
        (read once more when a code object it used turned out stale)."""
        for _ in range(2):
            self._codes.begin_snapshot()
            found = self._read(threads)
            if self._codes_intact():
                return found
        return {}

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
    def _read(self, threads: list[ThreadStack]) -> dict[int, ThreadTasks]:
        if not self.ready():
            return {}
        self._blobs = {}
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

    def _task_blob(self, task: int) -> bytes:
        """The task object's bytes, read once per read of the tasks."""
        blob = self._blobs.get(task)
        if blob is None:
            blob = self._blobs[task] = self.mem.read(task, self._task_size())
        return blob

    def _task_size(self) -> int:
        return self.offsets.task_size

    def _field(self, task: int, offset: int) -> int:
        return _Q.unpack_from(self._task_blob(task), offset)[0] & self._tag_mask

    def _task_coro(self, task: int) -> int:
        return self._field(task, self.offsets.task_coro)

    def _awaited_by(self, task: int) -> list[int]:
        """The tasks awaiting `task`: one object, or a set of them."""
        o = self.offsets
        blob = self._task_blob(task)
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
                obj = self._field(task, self.offsets.task_name)
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
        codes = self._code_cache(code)
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


def open_tasks(stack_reader, mode: str = "running") -> AsyncioReader:
    """The task reader for the target's version: AsyncioReader (3.14+) or
    LegacyAsyncioReader (3.8–3.13); AsyncUnsupported for anything else."""
    if tuple(stack_reader.version[:2]) in _TASK_LAYOUTS:
        return LegacyAsyncioReader(stack_reader, mode)
    return AsyncioReader(stack_reader, mode)


class LegacyAsyncioReader(AsyncioReader):
    """3.8–3.13: tasks found through asyncio's Python objects, read with the version's known
    TaskObj layout (checked against the target's Task type first)."""

    def __init__(self, stack_reader, mode: str = "running") -> None:
        if mode not in MODES:
            raise ValueError(f"async mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.stacks = stack_reader
        version = tuple(stack_reader.version[:2])
        if stack_reader.free_threaded or version not in _TASK_LAYOUTS:
            raise AsyncUnsupported(
                f"task stacks of a {'free-threaded ' if stack_reader.free_threaded else ''}"
                f"Python {version[0]}.{version[1]} build are not known to this reader: "
                "plain stacks only"
            )
        self.version = version
        self.mem = stack_reader.mem
        self.layout = stack_reader.layout
        self.pid = stack_reader.pid
        self.objects = ObjectReader(self.mem, version, self.layout)
        self.layout_task = _TASK_LAYOUTS[version]
        self._blobs = {}
        # loop address -> (thread ident or None, when read): a loop's thread is re-read at
        # most every LOCATE_EVERY_S (it changes only when the loop stops and starts again).
        self._loop_threads: dict[int, tuple[int | None, float]] = {}
        self.loops_seen = 0
        self.problem = None
        self._tag_mask = 0xFFFF_FFFF_FFFF_FFFF
        self._module: tuple[int, list[int]] | None = None  # (_current_tasks, task sets)
        self._looked_at = -1.0
        self._task_type = 0  # the checked _asyncio.Task type
        self._coro_type = 0
        self._iframe = 0  # 3.11+: where a coroutine embeds its frame
        self.offsets = None
        self._open_codes()

    # -- finding asyncio --------------------------------------------------------------------
    def ready(self) -> bool:
        """Whether asyncio's task registries are found. Looked up again every
        LOCATE_EVERY_S: while `asyncio.tasks` is being imported its names first hold the
        pure-Python registries, then the C module's (and a module can be reloaded)."""
        if self.problem:
            return False
        now = time.monotonic()
        if now - self._looked_at < LOCATE_EVERY_S:
            return self._module is not None
        self._looked_at = now
        modules = self.mem.read_u64(self.stacks.interp_address + self.layout["interp.modules"])
        md = self.objects.module_dict(modules, "asyncio.tasks") if modules else None
        current = self.objects.dict_get_str(md, "_current_tasks") if md else None
        sets = [
            a
            for name in ("_all_tasks", "_scheduled_tasks", "_eager_tasks")
            if md and (a := self.objects.dict_get_str(md, name)) is not None
        ]
        self._module = (current, sets) if current is not None and sets else None
        return self._module is not None

    def _read(self, threads: list[ThreadStack]) -> dict[int, ThreadTasks]:
        if not self.ready():
            return {}
        current, sets = self._module
        self._blobs = {}
        self._now = time.monotonic()
        self.objects._batch = {}
        try:
            running: dict[int, int] = {}  # thread ident -> its running task
            for loop, task in self.objects.dict_items(current):
                if self._check_task(task):
                    ident = self._loop_thread(loop)
                    if ident is not None:
                        running[ident] = task
            tasks = self._all(sets)
            waiter_of = self._waiters(tasks)
            self._awaited = waiter_of
        except AsyncUnsupported as exc:
            self.problem = str(exc)
            return {}
        finally:
            self.objects._batch = None
        by_ident = {t.thread_id: t for t in threads}
        loop_threads: dict[int, list[int]] = {}  # thread ident -> its tasks (all mode)
        if self.mode == "all":
            for task in tasks:
                ident = self._loop_thread(self._field(task, 16))  # fut_loop
                if ident is not None:
                    loop_threads.setdefault(ident, []).append(task)
        names: dict[int, str] = {}
        out: dict[int, ThreadTasks] = {}
        for ident in {*running, *loop_threads}:
            task = running.get(ident, 0)
            thread = by_ident.get(ident)
            try:
                stack = None
                if task and thread is not None and thread.frames:
                    stack = self._running_stack(task, thread.frames, names)
                waiting: tuple[tuple[Frame, ...], ...] = ()
                if self.mode == "all":
                    waiting = self._waiting_of(loop_threads.get(ident, []), task, names)
            except (ProcessExited, AccessDenied):
                raise
            except (ReaderError, struct.error):
                continue
            out[ident] = ThreadTasks(self._name(task, names) if task else None, stack, waiting)
        if running:
            self.loops_seen += 1
        return out

    def _loop_thread(self, loop: int) -> int | None:
        """The ident of the thread running `loop` (its `_thread_id`), None when not running."""
        known = self._loop_threads.get(loop)
        if known is not None and self._now - known[1] < LOCATE_EVERY_S:
            return known[0]
        found = self.objects.get_attr(loop, "_thread_id")
        ident = None
        if found is not None and self.objects.type_name(found) == "int":
            ident = self.objects.read_int(found)
        if len(self._loop_threads) > 1024:
            self._loop_threads.clear()
        self._loop_threads[loop] = (ident, self._now)
        return ident

    def _check_task(self, task: int) -> bool:
        """Whether `task` is an `_asyncio.Task` of the known layout; the first one seen is
        checked against the table (a build whose Task differs: AsyncUnsupported)."""
        ob_type = self.objects.type_of(task)
        if ob_type == self._task_type:
            return True
        if self._task_type or self.objects.type_name(task) != "_asyncio.Task":
            return False  # a Python-level Task, or a subclass: not read
        info = self.objects.type_info(ob_type)
        size, dictoffset = self.layout_task[:2]
        if info.basicsize != size or (dictoffset >= 0 and info.dictoffset != dictoffset):
            raise AsyncUnsupported(
                f"the _asyncio.Task of this Python {self.version[0]}.{self.version[1]} is "
                f"laid out otherwise (size {info.basicsize}, dict at {info.dictoffset}; known: "
                f"{size}, {dictoffset}): plain stacks only"
            )
        self._task_type = ob_type
        return True

    def _all(self, sets: list[int]) -> list[int]:
        """Every live task: the WeakSets' referents and the eager set's members."""
        out: list[int] = []
        for container in sets:
            data = container
            weak = self.objects.type_name(container) == "WeakSet"
            if weak:
                data = self.objects.get_attr(container, "data")
                if data is None:
                    continue
            keys = self._set_keys(data)
            if weak:  # each weakref's wr_object, in one read
                refs = self.mem.read_many([(k + 16, PTR) for k in keys])
                keys = [_Q.unpack(b)[0] for b in refs if b is not None]
            blobs = self.mem.read_many([(k, self._task_size()) for k in keys if k])
            for task, blob in zip([k for k in keys if k], blobs):
                if blob is None or task in self._blobs:
                    continue
                ob_type = _Q.unpack_from(blob, self.layout["object.ob_type"])[0]
                if ob_type == self._task_type or (not self._task_type and self._check_task(task)):
                    self._blobs[task] = blob
                    out.append(task)
                if len(out) >= MAX_TASKS:
                    return out
        return out

    def _set_keys(self, address: int) -> list[int]:
        """The keys of a set object (PySetObject: used at 24, mask at 32, table at 40)."""
        header = self.mem.read(address, 48)
        mask = _q.unpack_from(header, 32)[0]
        table = _Q.unpack_from(header, 40)[0]
        if not 0 <= mask < MAX_TASKS * 4 or not table:
            raise BadObject(address, f"implausible set mask {mask}")
        entries = self.mem.read(table, (mask + 1) * 2 * PTR)
        return [k for i in range(mask + 1) if (k := _Q.unpack_from(entries, i * 2 * PTR)[0])]

    def _waiters(self, tasks: list[int]) -> dict[int, list[int]]:
        """{task: the tasks awaiting it}, from each task's `_fut_waiter`: a task it awaits,
        or a gather() future whose children it awaits."""
        waiter_at = self.layout_task[2]
        out: dict[int, list[int]] = {}
        waiters = [(t, w) for t in tasks if (w := self._field(t, waiter_at))]
        types = self.mem.read_many([(w + self.layout["object.ob_type"], PTR) for _, w in waiters])
        for (task, waiter), ob_type in zip(waiters, types):
            if ob_type is None:
                continue
            if _Q.unpack(ob_type)[0] == self._task_type:
                out.setdefault(waiter, []).append(task)
            elif self.objects.type_name(waiter) == "_GatheringFuture":
                children = self.objects.get_attr(waiter, "_children")
                for child in self._list_items(children) if children else []:
                    out.setdefault(child, []).append(task)
        return out

    def _list_items(self, address: int) -> list[int]:
        L = self.layout
        size = _q.unpack(self.mem.read(address + L["varobject.ob_size"], PTR))[0]
        if not 0 <= size < MAX_TASKS:
            raise BadObject(address, f"implausible list size {size}")
        items = self.mem.read_u64(address + L["list.ob_item"])
        if not size or not items:
            return []
        blob = self.mem.read(items, size * PTR)
        return [_Q.unpack_from(blob, i * PTR)[0] for i in range(size)]

    def _awaited_by(self, task: int) -> list[int]:
        return self._awaited.get(task, [])

    def _waiting_of(self, tasks: list[int], running: int, names: dict):
        awaited = {t for ts in self._awaited.values() for t in ts}
        out = []
        for task in tasks:
            if task == running or task in awaited:
                continue
            chain = self._chain(self._task_coro(task))
            if not chain:
                continue
            stack = [*reversed(chain), task_frame(self._name(task, names))]
            stack += self._awaiters(task, names)
            out.append(tuple(stack))
        return tuple(out)

    def _task_size(self) -> int:
        return self.layout_task[0]

    def _task_coro(self, task: int) -> int:
        return self._field(task, self.layout_task[3])

    def _name(self, task: int, names: dict) -> str:
        name = names.get(task)
        if name is None:
            try:
                value = self.objects.read_value(self._field(task, self.layout_task[4]))
                name = f"Task-{value}" if isinstance(value, int) else str(value)
            except (ProcessExited, AccessDenied):
                raise
            except (ReaderError, ValueError):
                name = f"task at {task:#x}"
            names[task] = name
        return name

    # -- coroutines -------------------------------------------------------------------------
    def _coro_ok(self, coro: int) -> bool:
        """Whether `coro` is a native coroutine object (the first one seen fixes the type)."""
        ob_type = self.objects.type_of(coro)
        if ob_type == self._coro_type:
            return True
        if self._coro_type or self.objects.type_name(coro) != "coroutine":
            return False
        self._coro_type = ob_type
        if self.stacks.spec.frames == "chunks":
            basicsize = self.objects.type_info(ob_type).basicsize
            self._iframe = basicsize - self.layout["iframe.localsplus"]
            if not 0 < self._iframe < basicsize:
                raise AsyncUnsupported(f"implausible coroutine size {basicsize}")
        return True

    def _coro_frame(self, coro: int) -> Frame | None:
        if not self._coro_ok(coro):
            return None
        return self._coro_step(coro)[0]

    def _coro_step(self, coro: int) -> tuple[Frame | None, int]:
        """A coroutine's own frame, and what it awaits (0: nothing we can follow)."""
        L = self.layout
        if self.stacks.spec.frames != "chunks":
            frame = self.mem.read_u64(coro + 16)  # gi_frame
            if not frame:
                return None, 0
            blob = self.mem.read(frame, L["frame.size"])
            code = _Q.unpack_from(blob, L["frame.f_code"])[0]
            lasti = struct.unpack_from("<i", blob, L["frame.f_lasti"])[0]
            info = self._code_cache(code).get(code)
            scale = 2 if self.stacks.spec.lasti_in_code_units else 1
            found = info.frame_at(lasti * scale if lasti >= 0 else -1)
            valuestack = L["frame.f_code"] + 32
            if self.version >= (3, 10):
                depth = struct.unpack_from("<i", blob, L["frame.f_code"] + 48)[0]
                base = _Q.unpack_from(blob, valuestack)[0]
                top = base + depth * PTR if 0 < depth < 4096 and base else 0
            else:
                top = _Q.unpack_from(blob, valuestack + 8)[0]  # f_stacktop, NULL when running
            return found, (self.mem.read_u64(top - PTR) if top else 0)
        start = self._iframe
        raw = self.mem.read(coro, start + L["iframe.localsplus"])
        state = struct.unpack_from("<b", raw, start - 5)[0]
        iframe = raw[start:]
        code = _Q.unpack_from(iframe, L["iframe.code"])[0]
        instr = _Q.unpack_from(iframe, L["iframe.instr_ptr"])[0]
        if not code:
            return None, 0
        info = self._code_cache(code).get(code)
        index = (instr - info.code_start) >> 1
        if not -1 <= index < info.code_units:
            found = Frame(info.name, info.filename, 0, info.firstlineno)
        else:
            found = info.frame_at(index * 2 if index >= 0 else -1)
        if not (state < 0 and state != _LEGACY_CREATED[self.version]):
            return found, 0  # not suspended: awaiting nothing
        stacktop = struct.unpack_from("<i", iframe, L["iframe.instr_ptr"] + 8)[0]
        if not 0 < stacktop < 4096:
            return found, 0
        slot = coro + start + L["iframe.localsplus"] + (stacktop - 1) * PTR
        return found, self.mem.read_u64(slot)

    def _chain(self, coro: int) -> list[Frame]:
        out: list[Frame] = []
        seen = set()
        while coro and coro not in seen and len(out) < MAX_CHAIN and self._coro_ok(coro):
            seen.add(coro)
            frame, coro = self._coro_step(coro)
            if frame is None:
                break
            out.append(frame)
        return out
