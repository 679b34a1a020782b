"""What a snapshot's threads do beyond their frames, read only when asked for.

- `exceptions`: whether a thread is handling an exception, as `sys.exception()` would say
  there: the thread state's `exc_info` chain of `_PyErr_StackItem`s (a running generator
  pushes its own), walked past items with nothing (NULL or None) to the first that holds
  one. 3.11+ keep the exception in `exc_value`; 3.8–3.10 its type in `exc_type`.
- `gc`: a `<GC>` pseudo-frame on top of the thread running the garbage collector, while
  the interpreter's `gcstate.collecting` is set (3.13+: where the target's own
  `_Py_DebugOffsets` says; older versions: the offsets compiled from their headers). The
  collector runs in the thread holding the GIL (free-threaded: the attached one; the world
  is stopped), so that thread gets the frame. A finalizer the collector calls shows above it.
- `opcodes`: the name of the instruction the innermost frame executes: on 3.11+ the code
  unit its instruction pointer points at, read afresh every time (the adaptive interpreter
  rewrites it into specialised forms in place, in `co_code_adaptive` or a free-threaded
  thread's own copy); on 3.8–3.10 `co_code[f_lasti]` (immutable, read once per code).
  Names are the target version's own (`opcodes.py`, generated from each interpreter).

The collector's flag is read by the snapshot itself, in its prefetch plan (no syscall of
its own); the rest is one or two scatter reads per snapshot on top of the stack read. What
is read is advisory state of a running thread: it is not part of the torn-read checks.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from typing import TYPE_CHECKING

from .errors import MemoryReadError, NotAvailable, ReaderError
from .model import GC_FILENAME, GC_FRAME_NAME, Frame, ThreadStack

if TYPE_CHECKING:
    from .reader import StackReader

GC_FRAME = Frame(GC_FRAME_NAME, GC_FILENAME, 0, 0)
MAX_EXCEPTION_ITEMS = 1024  # a chain longer than this is a torn read: "not known"
MAX_CODE_BYTES = 1 << 22
_Q = struct.Struct("<Q")


class ThreadExtras:
    """Adds the asked-for extras to each snapshot of one reader's process."""

    def __init__(self, reader: StackReader, *, exceptions: bool, gc: bool, opcodes: bool) -> None:
        self.reader = reader
        self.mem = reader.mem
        layout = reader.layout
        version = reader.version
        text = reader._build_text(reader.free_threaded)
        self.exceptions = exceptions
        self.none = reader.interpreter.symbol("_Py_NoneStruct") or 0
        legacy = version[:2] <= (3, 10)
        value_key = "excitem.exc_type" if legacy else "excitem.exc_value"
        if exceptions:
            keys = ("tstate.exc_info", value_key, "excitem.previous_item")
            missing = [k for k in keys if k not in layout]
            if missing or not self.none:
                why = (
                    f"the layout table of this build lacks {', '.join(missing)}"
                    if missing
                    else "its None object (_Py_NoneStruct) was not found"
                )
                raise NotAvailable(reader.pid, text, "which exception a thread handles", why)
            self.exc_info = layout["tstate.exc_info"]
            self.item_value = layout[value_key]
            self.item_previous = layout["excitem.previous_item"]
            self.item_size = max(self.item_value, self.item_previous) + 8
        # Where the collector's flag is; None when this build's layout does not say.
        self.gc_address: int | None = None
        if gc and "gcstate.collecting" in layout:
            if "interp.gc" in layout:
                base = reader.interp_address + layout["interp.gc"]
            elif "runtime.gc" in layout:
                base = reader.interpreter.runtime_address + layout["runtime.gc"]
            else:
                base = 0
            if base:
                self.gc_address = base + layout["gcstate.collecting"]
        self.opcodes: dict[int, str] | None = None
        if opcodes:
            from .opcodes import OPCODES  # a large table: loaded when opcodes are asked

            table = OPCODES.get(f"{version[0]}.{version[1]}")
            if table is None:
                raise NotAvailable(
                    reader.pid, text, "which instruction a frame executes", "no opcode table"
                )
            self.opcodes = table
            self.extended_arg = next((n for n, v in table.items() if v == "EXTENDED_ARG"), -1)
        self.legacy = legacy
        self._legacy_code: dict[int, tuple[object, bytes]] = {}  # code -> (CodeInfo, co_code)

    @property
    def gc_known(self) -> bool:
        """Whether `<GC>` frames can be shown for this process at all."""
        return self.gc_address is not None

    def annotate(self, threads: list[ThreadStack]) -> list[ThreadStack]:
        """The snapshot with `exception` and `opcode` set, and `<GC>` on top of the
        collecting thread. A new list of new objects where anything is set: the reader
        hands a still snapshot's list and ThreadStacks out again, so they never change."""
        threads = list(threads)
        if not self.exceptions and self.opcodes is None:
            self._gc_only(threads)  # the CLI's default: one 4-byte read, nothing per thread
            return threads
        reader = self.reader
        by_thread = {walk.thread_id: (tstate, walk) for tstate, walk in reader._last_walks.items()}
        regions: list[tuple[int, int]] = []
        exc_slots: list[tuple[ThreadStack, int]] = []
        opcode_slots: list[tuple[ThreadStack, int]] = []
        for index, stack in enumerate(threads):
            if stack.error is not None or not stack.frames:
                continue
            found = by_thread.get(stack.thread_id)
            if found is None:
                continue
            tstate, walk = found
            # A copy, not an edit: the reader hands a still thread's ThreadStack out again.
            stack = threads[index] = replace(stack)
            if self.exceptions:
                exc_slots.append((stack, len(regions)))
                regions.append((tstate + self.exc_info, 8))
            if self.opcodes is not None:
                instr = self._instruction(tstate, walk)
                if isinstance(instr, str):
                    stack.opcode = instr
                elif instr is not None:
                    opcode_slots.append((stack, len(regions)))
                    regions.append((instr, 8))
        if regions:
            blobs = self.mem.read_many(regions)
            for stack, slot in opcode_slots:
                blob = blobs[slot]
                if blob is not None:
                    stack.opcode = self._name(blob, 0)
            if exc_slots:
                self._exceptions([(s, blobs[i]) for s, i in exc_slots])
        if reader.gc_collecting:  # last: it replaces the collector's (annotated) copy
            self._mark_collector(threads)
        return threads

    def _gc_only(self, threads: list[ThreadStack]) -> None:
        if self.reader.gc_collecting:  # read with the snapshot's prefetch (StackReader)
            self._mark_collector(threads)

    @staticmethod
    def _mark_collector(threads: list[ThreadStack]) -> None:
        for index, stack in enumerate(threads):
            if stack.gil and stack.error is None and stack.frames:
                # A copy: the reader hands a still thread's ThreadStack out again.
                threads[index] = replace(stack, frames=(GC_FRAME, *stack.frames))
                return

    # -- exceptions ---------------------------------------------------------------------------
    def _exceptions(self, pending: list[tuple[ThreadStack, bytes | None]]) -> None:
        """Walk every thread's exc_info chain, one scatter read per step for all of them."""
        items: list[tuple[ThreadStack, int]] = []
        for stack, blob in pending:
            item = _Q.unpack(blob)[0] if blob is not None else 0
            if item:
                items.append((stack, item))
            else:
                stack.exception = None if blob is None else False
        for _ in range(MAX_EXCEPTION_ITEMS):
            if not items:
                return
            blobs = self.mem.read_many([(item, self.item_size) for _, item in items])
            following = []
            for (stack, _), blob in zip(items, blobs):
                if blob is None:
                    stack.exception = None  # the chain moved under us: not known
                    continue
                value = _Q.unpack_from(blob, self.item_value)[0]
                previous = _Q.unpack_from(blob, self.item_previous)[0]
                if value and value != self.none:
                    stack.exception = True
                elif previous:
                    following.append((stack, previous))
                else:
                    stack.exception = False
            items = following
        for stack, _ in items:
            stack.exception = None

    # -- opcodes ------------------------------------------------------------------------------
    def _instruction(self, tstate: int, walk) -> int | str | None:
        """The innermost frame's instruction: its address to read (3.11+), its name where it
        is known already (3.8–3.10), or None."""
        reader = self.reader
        if not self.legacy:
            memo = reader._memos.get(tstate)
            innermost = memo.innermost if memo is not None else None
            return innermost[1] if innermost else None
        if not walk.regions:
            return None
        header = walk.regions[0][2]
        fields = reader.walker.unpack(header, 0)
        code, lasti = fields[2], fields[3]
        if lasti < 0:
            return None  # not started yet
        bytecode = self._co_code(code)
        if bytecode is None:
            return None
        return self._name(bytecode, lasti * reader.walker.lasti_scale)

    def _co_code(self, code: int) -> bytes | None:
        """co_code of a code object (3.8–3.10: immutable), kept while the code cache keeps the
        same entry for that address (a freed code's address re-used is a new entry)."""
        try:
            info = self.reader.codes.get(code)
        except ReaderError:
            return None
        known = self._legacy_code.get(code)
        if known is not None and known[0] is info:
            return known[1]
        try:
            pointer = self.mem.read_u64(code + self.reader.layout["code.code"])
            data = self.reader.codes.objects.read_bytes(pointer, MAX_CODE_BYTES)
        except (MemoryReadError, ReaderError, ValueError):
            return None
        if len(self._legacy_code) > 50_000:
            self._legacy_code.clear()
        self._legacy_code[code] = (info, data)
        return data

    def _name(self, code_units: bytes, offset: int) -> str | None:
        """The name of the instruction at `offset`, past any EXTENDED_ARG prefixes."""
        for _ in range(4):
            if not 0 <= offset < len(code_units):
                return None
            number = code_units[offset]
            if number != self.extended_arg:
                return self.opcodes.get(number, f"<{number}>")
            offset += 2
        return None
