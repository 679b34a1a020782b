"""StackReader: every Python thread of another process, read from outside, never paused."""

from __future__ import annotations

import bisect
import errno
import operator
import struct
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from . import debug_offsets, versions
from .codes import CodeCache
from .errors import (
    MemoryReadError,
    NotReady,
    ProcessExited,
    ReaderError,
    TornStack,
    UnsupportedVersion,
)
from .fetch import Fetch, Plan
from .frames import (
    DEFAULT_MAX_DEPTH,
    Check,
    ChunkWalker,
    LegacyWalker,
    WalkMemo,
    field_unpacker,
)
from .layouts import LAYOUTS
from .memory import ProcessMemory
from .model import Frame, ThreadStack
from .pause import PauseFailed, ThreadPauser
from .process import Interpreter, find_interpreter, process_is_gone
from .threads import NativeIdResolver, ThreadStates

if TYPE_CHECKING:
    from .extras import ThreadExtras

MAX_THREADS = 100_000
THREAD_NAME_REFRESH_S = 0.25
# Spans compared as one block with the last snapshot's copy before span by span (_moved_spans).
SPAN_BLOCK = 16
READ_ATTEMPTS = 3  # copies of a stack that keeps moving before it is reported torn
PAUSED_ATTEMPTS = 2  # pauses for one read whose paused copy is torn as well
# After a pause fails (another tracer holds a thread, say), reads go on without pausing for a
# while, then try again: first after PAUSE_RETRY_FIRST s, twice as long after each failure in
# a row, at most PAUSE_RETRY_MAX s. A failed pause costs its read's sample, never the rest.
# And never sooner than PAUSE_RETRY_COST times what the failed pause took: one that waited
# for a thread that would not stop held the others stopped meanwhile.
PAUSE_RETRY_FIRST = 0.01
PAUSE_RETRY_MAX = 1.0
PAUSE_RETRY_COST = 20
# Most code objects one prefetch re-checks behind its spans (CodeProof); more come due at
# once, and it re-checks only those.
MAX_PROOF_CODES = 32
_Q = struct.Struct("<Q")
_I = struct.Struct("<I")


def _version_text(version: tuple[int, int, int]) -> str:
    major, minor, micro = version
    return f"{major}.{minor}.{micro}" if micro else f"{major}.{minor}"


@dataclass
class _Walked:
    """One thread's last walk, kept while its stack holds still (see StackReader._snapshot).
    Never changed once made (not frozen only because a frozen init costs per field)."""

    thread_id: int
    locating: object  # the thread-state fields that locate its stack (StackReader._locate)
    regions: tuple[tuple[int, int, bytes], ...]  # (address, size, bytes) the walk read
    frames: tuple[Frame, ...] = ()  # () when the walk failed or its copy turned out torn
    # The frames' code objects: re-checked whenever the frames are kept, since identical
    # bytes can be a new stack of new code objects at the addresses of freed ones.
    codes: frozenset[int] = frozenset()
    # How the regions are prefetched ({address: size}, and which lead): planned as they were.
    planned: dict[int, int] = field(default_factory=dict, compare=False)
    lead: tuple[int, ...] = ()


@dataclass
class _Bag:
    """What one snapshot's walks leave: memos and walks by thread-state address, the threads
    whose two copies differed, what the walks read on demand (to re-check, with the thread
    id of each), and the code objects they used."""

    memos: dict[int, WalkMemo]
    walked: dict[int, _Walked]
    changed_early: set[int] = field(default_factory=set)
    checks: list[Check] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)
    used: set[int] = field(default_factory=set)


@dataclass
class _Snap:
    """The last snapshot, indexed so that the next one walks only the threads whose bytes
    moved (StackReader._quick_snapshot)."""

    plan: Plan
    holder: int
    tstates: list[int]
    values: list[tuple[int, ...]]  # each thread state's fields, as unpacked
    thread_ids: list[int]
    natives: list[int]
    threads: list[ThreadStack]
    index: dict[int, int]  # thread-state address -> its position
    native_index: dict[int, int]  # native id -> its position
    owners: dict[int, set[int]]  # span index -> the thread states with bytes in it
    unknown: set[int]  # spans holding bytes of no thread (the thread list's head, say)
    regions_of: dict[int, frozenset[int]]  # thread state -> the regions attributed to it
    native_regions: dict[int, int]  # ≤3.10: where each pthread struct holds its tid
    unwalked: set[int]  # threads whose last walk failed or tore: walked again
    named: bool  # every thread had a name


@dataclass
class _Still:
    """The last snapshot, to hand out again while not one byte of its prefetch moves.

    Made after every snapshot that read cleanly, used only when the next prefetch is the
    same: what only its reuse needs (walks in order, codes, where each thread sits) is
    worked out on first reuse and kept."""

    plan: Plan
    raw: bytes  # its prefetch, as copied
    threads: list[ThreadStack]
    tstates: list[int]  # each thread's thread-state address, in the same order
    walked: dict[int, _Walked]  # each thread's walk, by thread-state address
    codes: frozenset[int] | None = None  # every code object its frames came from
    natives: dict[int, int] | None = None  # native id -> its index in `threads`


class StackReader:
    """Reads the stacks of every thread in a CPython process (versions.KNOWN: 3.8–3.15,
    standard and free-threaded builds).

    Construction finds the interpreter and checks it can be read (raising NoSuchProcess,
    NotPython, AccessDenied, UnsupportedVersion or NotReady); each `read()` is one snapshot.
    """

    def __init__(
        self,
        pid: int,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        thread_names: bool = True,
        pause_when_torn: bool = True,
        exceptions: bool = False,
        gc: bool = False,
        opcodes: bool = False,
    ) -> None:
        """`exceptions`, `gc`, `opcodes`: read those extras too (see extras.py); asking for
        one this build cannot tell raises NotAvailable here, before any sampling."""
        self.pid = pid
        self.interpreter: Interpreter = find_interpreter(pid)
        self.version = self.interpreter.version
        self.mem = ProcessMemory(pid)
        self.spec, self.layout = self._layout()
        self.free_threaded = self.interpreter.free_threaded
        self.codes = CodeCache(
            self.mem, self.version, self.layout, self.interpreter.code_type_address
        )
        self._modern = self.spec.frames == "chunks"
        walker_type = ChunkWalker if self._modern else LegacyWalker
        self.walker = walker_type(self.layout, self.codes, self.version, max_depth)
        self._plan: Plan | None = None
        self._memos: dict[int, WalkMemo] = {}
        self._last_walks: dict[int, _Walked] = {}  # by thread-state address
        self._still: _Still | None = None
        # The last complete prefetch (its plan and bytes): the next one read by the same plan
        # is compared with it a block of spans at a time (_moved_spans).
        self._last_raw: tuple[Plan, bytes] | None = None
        self._last_stacks: dict[int, ThreadStack] = {}  # by thread-state address
        self._snap: _Snap | None = None  # the last snapshot, indexed (_quick_snapshot)
        self._gil_region = 0  # the address of the GIL state the snapshot reads
        # The cached codes the next prefetch re-checks behind its spans (_plan_proof).
        self._proof_codes: frozenset[int] = frozenset()
        self._stale = False  # the last snapshot met a code object that changed
        # The kept walks whose planned regions, leads and codes are merged (_keep), each
        # counted by how many of those walks plan it.
        self._merged_walks: dict[int, _Walked] = {}
        self._merged_planned: dict[int, int] = {}
        self._merged_counts: dict[int, int] = {}
        self._merged_lead: dict[int, int] = {}
        self._merged_codes: dict[int, int] = {}
        self._spots: dict[int, tuple] = {}  # see _snapshot
        self._spots_plan: Plan | None = None
        self._legacy_code_offset = self.layout["frame.f_code"] if not self._modern else 0
        self._native_ids = (
            None if "tstate.native_thread_id" in self.layout else (NativeIdResolver(self.mem, pid))
        )
        self._states = ThreadStates(pid)
        # The last resort for a stack that tears READ_ATTEMPTS times: read it with the
        # threads paused (see pause.py). `pause_error` says why a pause failed (the last one
        # that did; later ones are still tried), `pause_failures` how many did.
        self._pauser = ThreadPauser(pid) if pause_when_torn else None
        self.pause_error: str | None = None
        self.pause_failures = 0
        self._pause_backoff = 0.0  # seconds without pausing after the last failure
        self._pause_retry_at = 0.0  # monotonic time before which no pause is tried
        self._paused_last = False
        self._paused_read_count = 0
        self._want_names = thread_names
        self._names: dict[tuple[int, int], str] = {}  # (ident, native id) -> name
        self._names_at = -1.0
        self._gil_fields: tuple[int, int, int | None, int] | None = None  # _gil_layout
        self._tstate_unpack, self._tstate_size = self._tstate_fields()
        self.interp_address = self._check_ready()
        if not self.version[2]:
            self.version = self._exact_version()
        self.extras: ThreadExtras | None = None
        self.gc_flag_address = 0  # where gcstate.collecting is, when <GC> frames are asked
        self.gc_collecting = False  # as the last snapshot read it
        if exceptions or gc or opcodes:
            from .extras import ThreadExtras  # asked for: its tables load only then

            self.extras = ThreadExtras(self, exceptions=exceptions, gc=gc, opcodes=opcodes)
            self.gc_flag_address = self.extras.gc_address or 0

    # -- set-up -----------------------------------------------------------------------------
    def _layout(self) -> tuple[versions.PythonVersion, dict[str, int]]:
        """The version's model and its offsets: the build's table, overridden on 3.13+ by
        every field the target's own _Py_DebugOffsets describes (which also tells whether
        the build is free-threaded)."""
        interp = self.interpreter
        spec = versions.KNOWN.get(self.version[:2])
        free_threaded = False
        raw = b""
        if spec is not None and spec.debug_offsets and interp.runtime_address:
            raw = self._read_debug_offsets()
            free_threaded = debug_offsets.parse_header(raw)[1]
        interp.free_threaded = free_threaded
        try:
            spec, table = versions.lookup(self.version[:2], free_threaded)
        except versions.UnknownBuild as exc:
            raise UnsupportedVersion(self.pid, self._build_text(free_threaded), str(exc)) from None
        if not interp.runtime_address:
            raise NotReady(self.pid, "_PyRuntime not found")
        if spec.debug_offsets:
            table.update(self._debug_offsets(raw, table, free_threaded))
        return spec, table

    def _build_text(self, free_threaded: bool) -> str:
        """The version as error messages name it: "3.14.10", or "3.13.5t" free-threaded."""
        return _version_text(self.version) + ("t" if free_threaded else "")

    def _read_debug_offsets(self) -> bytes:
        """The target's _Py_DebugOffsets, as many bytes as the largest known build's."""
        size = max(t.get("debug.size", 0) for t in LAYOUTS.values())
        try:
            raw = self.mem.read(self.interpreter.runtime_address, size)
            packed, _ = debug_offsets.parse_header(raw)
        except debug_offsets.DebugOffsetsError as exc:
            raise UnsupportedVersion(self.pid, _version_text(self.version), str(exc)) from None
        except MemoryReadError as exc:
            raise NotReady(self.pid, f"_Py_DebugOffsets unreadable: {exc}") from None
        if (packed >> 24, (packed >> 16) & 0xFF) != self.version[:2]:
            raise UnsupportedVersion(
                self.pid,
                f"{packed >> 24}.{(packed >> 16) & 0xFF}",
                f"its _Py_DebugOffsets disagree with its version {_version_text(self.version)}",
            )
        return raw

    def _debug_offsets(self, raw: bytes, table: dict[str, int], free_threaded: bool):
        """Every field the target describes itself, bounds-checked (debug_offsets.parse)."""
        text = self._build_text(free_threaded)
        try:
            found = debug_offsets.parse(raw, table, free_threaded)
        except debug_offsets.DebugOffsetsError as exc:
            raise UnsupportedVersion(
                self.pid, text, f"its _Py_DebugOffsets cannot be trusted: {exc}"
            ) from None
        # Fields it does not describe, placed relative to ones it does.
        found["tstate.datastack_top"] = found["tstate.datastack_chunk"] + (
            table["tstate.datastack_top"] - table["tstate.datastack_chunk"]
        )
        return found

    def _tstate_fields(self):
        """Unpacker for the thread-state fields a snapshot needs, and where each lands.

        The fields are unpacked in their order in the struct (one C-level unpack per thread,
        no reordering); the *_slot attributes say where each one lands."""
        layout = self.layout
        keys = ["tstate.next", "tstate.thread_id"]
        if "tstate.native_thread_id" in layout:
            keys.append("tstate.native_thread_id")
        # Free-threaded: no GIL; a thread "holds" the interpreter while it is attached.
        self._attached = layout.get("const._Py_THREAD_ATTACHED", 1)
        free_threaded_state = self.free_threaded and "tstate.state" in layout
        if free_threaded_state:
            keys.append("tstate.state")
        if self._modern:
            keys += ["tstate.datastack_chunk", "tstate.datastack_top"]
            self._via_cframe = self.spec.cframe
            self._cframe_offset = layout.get("cframe.current_frame", 0)
            frame_key = "tstate.cframe" if self._via_cframe else "tstate.current_frame"
        else:
            self._via_cframe = False
            frame_key = "tstate.frame"
        keys.append(frame_key)
        keys.sort(key=lambda k: layout[k])
        slot = keys.index
        self._next_slot = slot("tstate.next")
        self._thread_id_slot = slot("tstate.thread_id")
        self._native_slot = (
            slot("tstate.native_thread_id") if "tstate.native_thread_id" in keys else None
        )
        self._state_slot = slot("tstate.state") if free_threaded_state else None
        self._frame_slot = slot(frame_key)
        if self._modern:
            self._chunk_slot = slot("tstate.datastack_chunk")
            self._top_slot = slot("tstate.datastack_top")
        else:
            self._chunk_slot = self._top_slot = self._frame_slot
        # The fields that say where a thread's stack is: if they move, the stack moved.
        self._locating_slots = [self._frame_slot]
        if self._modern:
            self._locating_slots += [self._chunk_slot, self._top_slot]
        self._locating_fields = [(layout[keys[i]], 8) for i in self._locating_slots]
        self._locate = operator.itemgetter(*self._locating_slots)
        return field_unpacker([(layout[k], 4 if k == "tstate.state" else 8) for k in keys])

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
            owner = self.mem.read_u64(head + self.layout["tstate.interp"])
        except MemoryReadError as exc:
            raise NotReady(self.pid, str(exc)) from None
        if owner != interp:
            # A thread state that does not point back at its interpreter: the offsets (the
            # target's own _Py_DebugOffsets on 3.13+) do not describe this process.
            raise UnsupportedVersion(
                self.pid,
                self._build_text(self.free_threaded),
                "its first thread state does not point back at its interpreter: "
                "the struct offsets do not match this process",
            )
        return interp

    def _exact_version(self) -> tuple[int, int, int]:
        """Before 3.11 nothing exported says the micro version: ask `sys.hexversion`."""
        from .objects import ObjectReader

        try:
            objects = ObjectReader(self.mem, self.version[:2], self.layout)
            sysdict = self.mem.read_u64(self.interp_address + self.layout["interp.sysdict"])
            found = objects.dict_get_str(sysdict, "hexversion") if sysdict else None
            packed = objects.read_int(found) if found else 0
        except ProcessExited:
            raise
        except (ReaderError, ValueError):
            packed = 0
        exact = (packed >> 24, (packed >> 16) & 0xFF, (packed >> 8) & 0xFF)
        return exact if exact[:2] == self.version[:2] else self.version

    # -- snapshots --------------------------------------------------------------------------
    def read(self) -> list[ThreadStack]:
        """One snapshot of every thread. Per-thread failures land in ThreadStack.error."""
        try:
            threads = self._read()
            if self.extras is not None:
                threads = self.extras.annotate(threads)
            return threads
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
        if self._pauser is not None and self._pauser.unreleased:
            self._pauser.release()  # threads a failed pause could not let go at once
        threads, changed = self._snapshot()
        # A stack that needed a pause last time likely will again: waste fewer copies on it.
        attempts = 1 if self._paused_last else READ_ATTEMPTS
        self._paused_last = False
        for _ in range(attempts - 1):
            if not changed:
                break
            # Something moved while we copied: another try usually gets a still moment.
            threads, changed = self._snapshot()
        paused = False
        for _ in range(PAUSED_ATTEMPTS):
            if not changed or self._pauser is None or time.monotonic() < self._pause_retry_at:
                break
            # A thread can be held between two stores of a call, a return or a generator
            # switch (on <= 3.10 a frame linked before it is marked executing): then the
            # paused copy is torn too, and the next pause lands elsewhere.
            threads, changed = self._paused_snapshot(threads, changed)
            paused = paused or self._paused_last
        if paused:
            self._paused_read_count += 1
        if changed:
            # New objects, not edits: a thread's ThreadStack is handed out again while its
            # stack holds still, so one given out before must never change.
            torn = TornStack("the stack changed while it was being read")
            threads = [
                replace(stack, frames=(), error=stack.error or torn)
                if stack.thread_id in changed
                else stack
                for stack in threads
            ]
        return threads

    def _paused_snapshot(
        self, last: list[ThreadStack], torn: set[int]
    ) -> tuple[list[ThreadStack], set[int]]:
        """A snapshot with every thread held still. Whether each thread was running is taken
        from the torn snapshot just before: held threads all look stopped to /proc."""
        running = {s.native_id: None if s.idle is None else not s.idle for s in last}
        self._states.pinned = {tid: state for tid, state in running.items() if tid}
        started = time.monotonic()
        try:
            with self._pauser.paused():
                snapshot = self._snapshot()
        except PauseFailed as exc:
            self.pause_error = str(exc)
            self.pause_failures += 1
            now = time.monotonic()
            if exc.errno == errno.ENOSYS:
                self._pause_retry_at = float("inf")  # no ptrace here: it never will work
            else:
                self._pause_backoff = min(
                    PAUSE_RETRY_MAX, max(PAUSE_RETRY_FIRST, 2 * self._pause_backoff)
                )
                wait = max(self._pause_backoff, PAUSE_RETRY_COST * (now - started))
                self._pause_retry_at = now + wait
            return last, torn
        finally:
            self._states.pinned = None
        self._pause_backoff = 0.0
        self._paused_last = True
        return snapshot

    @property
    def paused_reads(self) -> int:
        """Reads taken with the threads paused, because every non-blocking copy tore."""
        return self._paused_read_count

    def _snapshot(self) -> tuple[list[ThreadStack], set[int]]:
        """One pass over every thread, and the thread ids whose stack moved meanwhile."""
        layout = self.layout
        now = time.monotonic()
        if self.codes.begin_snapshot():
            # Frames made from entries the full code cache dropped: the walker's, the kept
            # walks' and the held-still snapshot's; nothing could re-check their codes now.
            self.walker.forget_frames()
            self._memos, self._last_walks, self._still, self._snap = {}, {}, None, None
        plan = self._plan
        proof = self.codes.proof(self._proof_codes) if self._proof_codes else None
        fetch = Fetch(self.mem, plan, proof)
        still = self._still
        if still is not None and still.plan is plan and fetch.complete and fetch.raw == still.raw:
            # Not one byte the last snapshot read has moved, and it kept or walked every
            # thread afresh: the same threads, stacks and holders. Only run states are read.
            snapshot = self._still_snapshot(still, now, fetch.proven)
            if snapshot is not None:
                return snapshot
        self._still = None
        try:
            head = _Q.unpack_from(
                *fetch.get(self.interp_address + layout["interp.threads_head"], 8)
            )[0]
            holder = 0 if self._state_slot is not None else self._gil_holder(fetch)
            if self.gc_flag_address:
                # In the prefetch plan like the GIL state: no syscall of its own (extras.py)
                raw_flag = fetch.get(self.gc_flag_address, 4)
                self.gc_collecting = _I.unpack_from(*raw_flag)[0] != 0
        except MemoryReadError:
            if process_is_gone(self.pid):
                raise ProcessExited(self.pid) from None
            raise
        quick = self._quick_snapshot(fetch, plan, holder, now)
        if quick is not None:
            return quick
        self._snap = None
        # The thread list: (tstate address, its fields in self._tstate_keys order).
        raw_threads: list[tuple[int, tuple[int, ...]]] = []
        seen: set[int] = set()
        tstate = head
        unpack, size, next_slot = self._tstate_unpack, self._tstate_size, self._next_slot
        prefetched, raw = fetch.where.get, fetch.raw
        while tstate and tstate not in seen and len(seen) < MAX_THREADS:
            seen.add(tstate)
            hit = prefetched(tstate)
            try:
                if hit is not None and hit[1] >= size:
                    values = unpack(raw, hit[0])
                else:
                    values = unpack(*fetch.get(tstate, size))
            except MemoryReadError:
                if process_is_gone(self.pid):
                    raise ProcessExited(self.pid) from None
                break  # the list changed under us; the threads found so far are still valid
            raw_threads.append((tstate, values))
            tstate = values[next_slot]
        fetch.plan_leads([t for t, _ in raw_threads], size)

        thread_ids = [values[self._thread_id_slot] for _, values in raw_threads]
        if self._native_ids is None:
            natives = [values[self._native_slot] for _, values in raw_threads]
        else:
            natives = self._native_ids.resolve(thread_ids, fetch)
        names = self._thread_names(list(zip(thread_ids, natives)), now)
        # A thread whose stack-locating fields and every byte its last walk read are as they
        # were keeps that walk's frames: no walk, no second copy, no re-check. The others'
        # regions (as their last walk had them) are copied a second time, to compare with.
        last = self._last_walks
        locate = self._locate
        kept: dict[int, _Walked] = {}
        again: list[int] = []
        if self._spots_plan is not plan or not fetch.complete:
            self._spots, self._spots_plan = {}, (plan if fetch.complete else None)
        spots = self._spots  # tstate -> (its _Walked, where its regions lie, their spans)
        # Copied by the same plan as the last snapshot: which spans moved since, found a
        # block at a time, so a thread that held still costs one set test, not its bytes.
        moved = self._moved_spans(plan, fetch)
        for tstate, values in raw_threads:
            before = last.get(tstate)
            if before is not None:
                if before.frames and before.locating == locate(values):
                    known = spots.get(tstate)
                    if known is None or known[0] is not before:
                        known = (before, *self._spots_of(before, prefetched, plan))
                        if known[1] is not None and self._spots_plan is not None:
                            spots[tstate] = known
                    _, where, in_spans = known
                    if where is not None:
                        if moved is not None:
                            if moved.isdisjoint(in_spans):
                                kept[tstate] = before
                                continue
                        else:
                            for start, _end, old in where:
                                if not raw.startswith(old, start):
                                    break
                            else:
                                kept[tstate] = before
                                continue
                again.extend(address for address, _, _ in before.regions)
            again.append(tstate)
        fetch.copy_again(again)
        states = self._states
        still_natives = {natives[i] for i, (t, _) in enumerate(raw_threads) if t in kept}
        fresh_states = states.due(still_natives) if still_natives else set()

        # The last walks' memos carry over (a walked thread's is replaced, a gone one's dropped).
        bag = _Bag(self._memos, {})
        walked = bag.walked
        threads: list[ThreadStack] = []
        pid, state_slot, attached = self.pid, self._state_slot, self._attached
        last_stacks, last_state = self._last_stacks, states.last
        for (tstate, values), thread_id, native in zip(raw_threads, thread_ids, natives):
            gil = values[state_slot] == attached if state_slot is not None else tstate == holder
            before = kept.get(tstate)
            if before is not None:
                # Its stack held still: the last walk's frames, planned as they were, and the
                # last ThreadStack itself when nothing it says has changed.
                if native:
                    running = (
                        states.running(native) if native in fresh_states else last_state(native)
                    )
                else:
                    running = None
                idle = None if running is None else not running
                name = names.get((thread_id, native))
                stack = last_stacks.get(tstate)
                if (
                    stack is None
                    or stack.frames is not before.frames
                    or stack.idle is not idle
                    or stack.gil is not gil
                    or stack.name != name
                    or stack.thread_id != thread_id
                    or stack.native_id != (native or None)
                    or stack.error is not None
                ):
                    stack = ThreadStack(
                        pid, thread_id, native or None, name, gil, idle, before.frames
                    )
                threads.append(stack)
                continue
            threads.append(
                self._walk_thread(
                    fetch, tstate, values, thread_id, native, names.get((thread_id, native)),
                    gil, bag,
                )
            )  # fmt: skip
        self._keep(kept.keys(), kept, fetch, bag.used)
        walked.update(kept)
        self._states.forget_except({n for n in natives if n})
        tstates = [t for t, _ in raw_threads]
        threads, changed = self._finish(fetch, plan, tstates, threads, bag, thread_ids)
        if self._snap_wanted(fetch, plan, changed):
            self._snap = self._make_snap(
                fetch, plan, holder, raw_threads, thread_ids, natives, threads, walked
            )
        return threads, changed

    def _finish(self, fetch, plan, tstates, threads, bag: _Bag, thread_ids):
        """What every snapshot ends with: the late re-reads and code re-checks, the walks and
        memos kept for the next one, its plan, and the held-still snapshot."""
        memos, walked = bag.memos, bag.walked
        changed, stale_codes = self._changed_since(
            bag.checks, bag.owners, self.codes.due(bag.used), fetch.proven
        )
        changed |= bag.changed_early
        self.walker.end_snapshot()
        if stale_codes:
            # A cached code's address now holds another object: every frame derived from
            # it is wrong, and so is this snapshot. Forget them; the caller reads again.
            self.walker.forget_frames()
            self._memos = {}
            self._last_walks = {}
            changed = set(thread_ids)
        else:
            for tstate in memos.keys() - walked.keys():
                del memos[tstate]  # threads gone since
            self._memos = memos
            if changed:
                for tstate, walk in walked.items():
                    if walk.frames and walk.thread_id in changed:
                        walked[tstate] = replace(walk, frames=())
            self._last_walks = walked
        self._last_stacks = dict(zip(tstates, threads))
        self._last_raw = (plan, fetch.raw) if fetch.complete and plan is not None else None
        self._plan = fetch.plan(plan)
        self._stale = stale_codes
        if fetch.complete and not changed and not stale_codes:
            self._still = _Still(plan, fetch.raw, threads, tstates, walked)
        return threads, changed

    def _snap_wanted(self, fetch: Fetch, plan: Plan | None, changed: set[int]) -> bool:
        """Whether the next snapshot may start from this one: read completely by a plan the
        next one reuses, and no code object found changed."""
        return plan is not None and fetch.complete and not self._stale and self._plan is plan

    def _make_snap(self, fetch, plan, holder, raw_threads, thread_ids, natives, threads, walked):
        """The last snapshot, indexed for `_quick_snapshot`: which threads each span of the
        plan holds bytes of (thread state, walked regions, pthread tid), and the spans that
        hold anything else (None: nothing could be attributed)."""
        where, ends = plan.where, plan.span_ends
        owners: dict[int, set[int]] = {}
        regions_of: dict[int, frozenset[int]] = {}
        native_regions: dict[int, int] = {}
        tid_offset = self._native_ids.offset if self._native_ids is not None else None
        attributed: set[int] = set()
        for (tstate, _), thread_id in zip(raw_threads, thread_ids):
            walk = walked.get(tstate)
            addresses = [tstate]
            if walk is not None:
                addresses += [a for a, _, _ in walk.regions]
            if tid_offset is not None and thread_id:
                addresses.append(thread_id + tid_offset)
                native_regions[thread_id + tid_offset] = 4
            for address in addresses:
                hit = where.get(address)
                if hit is None:
                    return None
                owners.setdefault(bisect.bisect_right(ends, hit[0]), set()).add(tstate)
            attributed.update(addresses)
            regions_of[tstate] = frozenset(addresses)
        others = plan.regions.keys() - attributed
        gil = self._gil_region
        unknown = {bisect.bisect_right(ends, where[a][0]) for a in others if a != gil}
        tstates = [t for t, _ in raw_threads]
        return _Snap(
            plan=plan,
            holder=holder,
            tstates=tstates,
            values=[v for _, v in raw_threads],
            thread_ids=list(thread_ids),
            natives=list(natives),
            threads=list(threads),
            index={t: i for i, t in enumerate(tstates)},
            native_index={n: i for i, n in enumerate(natives) if n},
            owners=owners,
            unknown=unknown,
            regions_of=regions_of,
            native_regions=native_regions,
            unwalked={t for t, w in walked.items() if not w.frames},
            named=all(s.name is not None for s in threads),
        )

    def _quick_snapshot(self, fetch: Fetch, plan: Plan | None, holder: int, now: float):
        """A snapshot that walks only the threads whose bytes moved since the last one (by
        the same plan): every other thread's ThreadStack is handed out again, with a fresh
        run state where one is due. None when it cannot tell (a span not attributed to a
        thread moved, the thread list changed, a walk read elsewhere than its thread's
        regions): then the whole pass is made."""
        snap = self._snap
        if (
            snap is None
            or snap.plan is not plan
            or not self._last_walks.keys() >= snap.index.keys()
        ):
            return None
        if not snap.named and self._want_names and now - self._names_at > THREAD_NAME_REFRESH_S:
            return None  # a thread without a name yet: the whole pass looks for it
        moved = self._moved_spans(plan, fetch)
        if moved is None or not moved.isdisjoint(snap.unknown):
            return None
        affected: set[int] = set(snap.unwalked)
        owners = snap.owners
        for span in moved:
            who = owners.get(span)
            if who is not None:
                affected |= who
        index = snap.index
        if holder != snap.holder:
            affected.update(t for t in (holder, snap.holder) if t in index)
        raw, where = fetch.raw, plan.where
        unpack, next_slot, id_slot = self._tstate_unpack, self._next_slot, self._thread_id_slot
        fresh_values: dict[int, tuple[int, ...]] = {}
        for tstate in affected:
            i = index[tstate]
            values = unpack(raw, where[tstate][0])
            old = snap.values[i]
            if values[next_slot] != old[next_slot] or values[id_slot] != old[id_slot]:
                return None  # the thread list changed
            if self._native_slot is not None and values[self._native_slot] != snap.natives[i]:
                return None
            fresh_values[tstate] = values
        if self._native_ids is not None and affected:
            ids = [snap.thread_ids[index[t]] for t in affected]
            if self._native_ids.resolve(ids, fetch) != [snap.natives[index[t]] for t in affected]:
                return None
        # Which of the affected threads' stacks really moved (a span can hold two threads).
        last, locate, prefetched = self._last_walks, self._locate, where.get
        to_walk: list[int] = []
        again: list[int] = []
        for tstate in affected:
            before = last.get(tstate)
            if (
                before is not None
                and before.frames
                and before.locating == locate(fresh_values[tstate])
            ):
                spots, _ = self._spots_of(before, prefetched, plan)
                if spots is not None and all(raw.startswith(old, a) for a, _, old in spots):
                    continue
            if before is not None:
                again.extend(address for address, _, _ in before.regions)
            again.append(tstate)
            to_walk.append(tstate)
        fetch.copy_again(again)
        states = self._states
        walking = set(to_walk)
        threads = list(snap.threads)
        state_slot, attached = self._state_slot, self._attached
        bag = _Bag(self._memos, dict(last))
        for tstate in affected:
            i = index[tstate]
            values = fresh_values[tstate]
            gil = values[state_slot] == attached if state_slot is not None else tstate == holder
            if tstate in walking:
                threads[i] = self._walk_thread(
                    fetch, tstate, values, snap.thread_ids[i], snap.natives[i],
                    threads[i].name, gil, bag,
                )  # fmt: skip
            elif threads[i].gil is not gil:
                threads[i] = replace(threads[i], gil=gil)
        native_index = snap.native_index
        walking_natives = {snap.natives[index[t]] for t in walking}
        for native in states.due(native_index.keys() - walking_natives):
            i = native_index[native]
            running = states.running(native)
            idle = None if running is None else not running
            if threads[i].idle is not idle:
                threads[i] = replace(threads[i], idle=idle)
        # The next prefetch: every thread state, the kept walks' regions, the walked ones'
        # (planned as they read them), the pthread tids, the head and GIL (read above).
        fetch.plan_leads(snap.tstates, self._tstate_size)
        fetch.next_regions.update(snap.native_regions)
        kept = index.keys() - walking
        self._keep(kept, last, fetch, bag.used)
        # A walk that read outside what the index gives its thread: index afresh next time.
        reindex = any(
            not {a for a, _, _ in bag.walked[t].regions} <= snap.regions_of[t] for t in to_walk
        )
        threads, changed = self._finish(fetch, plan, snap.tstates, threads, bag, snap.thread_ids)
        if not reindex and self._snap_wanted(fetch, plan, changed):
            for tstate, values in fresh_values.items():
                snap.values[index[tstate]] = values
            snap.holder = holder
            snap.threads = threads
            snap.unwalked = {t for t in to_walk if not bag.walked[t].frames}
        else:
            self._snap = None
        return threads, changed

    def _walk_thread(
        self,
        fetch: Fetch,
        tstate: int,
        values: tuple[int, ...],
        thread_id: int,
        native: int,
        name: str | None,
        gil: bool,
        bag: _Bag,
    ) -> ThreadStack:
        """Walk one thread whose stack moved (or is new), checked against the second copy;
        what it relied on goes into `bag`."""
        memos, checks, owners = bag.memos, bag.checks, bag.owners
        changed_early, used = bag.changed_early, bag.used
        previous_memo = memos.pop(tstate, None)
        running = self._states.running(native) if native else None
        stack = ThreadStack(
            self.pid, thread_id, native or None, name, gil, None if running is None else not running
        )
        walk_checks: list[Check] = [(tstate, self._tstate_size, self._locating_spots(values))]
        walk_used: set[int] = set()
        try:
            stack.frames = tuple(
                self._walk(fetch, tstate, values, previous_memo, memos, walk_checks, walk_used)
            )
            used |= walk_used
            # Compare against the second copy where there is one; what the walk read on
            # demand is read again after the walk, and then so is the thread state: stale
            # frames past the stack's top never change, so only the state locating the
            # top tells a re-read of them from a stack that really has them. A walk that
            # used a code loaded during this snapshot is read again as a whole: the code
            # was read after the copies, and the frames must be seen to hold it after.
            all_late = self.codes.loaded_now(walk_used)
            late = False
            for check in walk_checks:
                address, size, spots = check
                if not size:
                    continue
                holds = None if all_late else fetch.again_holds(address, size, spots)
                if holds is None:
                    checks.append(check)
                    owners.append(thread_id)
                    late = True
                elif not holds:
                    changed_early.add(thread_id)
                    break
            else:
                if late and not all_late:
                    checks.append(walk_checks[0])
                    owners.append(thread_id)
        except TornStack as exc:
            stack.error = exc
            changed_early.add(thread_id)  # read across a change: worth another try
        except MemoryReadError as exc:
            if process_is_gone(self.pid):
                raise ProcessExited(self.pid) from None
            stack.error = TornStack(str(exc))
            changed_early.add(thread_id)
        bag.walked[tstate] = self._walked(fetch, tstate, values, memos, walk_checks, stack)
        return stack

    def _keep(self, kept, walks: dict[int, _Walked], fetch: Fetch, used: set[int]) -> None:
        """The bookkeeping for the threads whose stack held still: their regions planned as
        they were, their code objects re-checked, their walks carried over.

        What the kept walks plan is kept merged between snapshots, and only the walks that
        joined or left the kept set since are added or taken out: with a thousand threads
        and a few changing ones, merging them all anew each time cost more than the walks.
        A kept walk is always its thread's last walk (a walked thread leaves the set first).
        `kept`: the kept threads' thread-state addresses (a set or a dict's keys), `walks`
        their walks.
        """
        merged = self._merged_walks
        planned, counts = self._merged_planned, self._merged_counts
        lead, codes = self._merged_lead, self._merged_codes
        for tstate in merged.keys() - kept:
            walk = merged.pop(tstate)
            for address in walk.planned:
                if counts[address] == 1:
                    del counts[address], planned[address]
                else:
                    counts[address] -= 1
            for bag, keys in ((lead, walk.lead), (codes, walk.codes)):
                for key in keys:
                    if bag[key] == 1:
                        del bag[key]
                    else:
                        bag[key] -= 1
        for tstate in kept - merged.keys():
            walk = merged[tstate] = walks[tstate]
            for address, size in walk.planned.items():
                counts[address] = counts.get(address, 0) + 1
                if planned.get(address, 0) < size:
                    planned[address] = size
            for bag, keys in ((lead, walk.lead), (codes, walk.codes)):
                for key in keys:
                    bag[key] = bag.get(key, 0) + 1
        fetch.next_regions.update(planned)
        fetch.lead.update(lead)
        used.update(codes)

    def _moved_spans(self, plan: Plan | None, fetch: Fetch) -> set[int] | None:
        """Indexes of the plan's spans whose bytes differ from the last snapshot's copy;
        None when that copy was not taken by this same plan (or either is incomplete).

        Compared SPAN_BLOCK spans at a time in place (`bytes.startswith` on a memoryview:
        one memcmp, no copy), and span by span only inside a block that moved."""
        last = self._last_raw
        if plan is None or last is None or last[0] is not plan or not fetch.complete:
            return None
        raw, old = fetch.raw, last[1]
        if raw == old:
            return set()
        ends = plan.span_ends
        view = memoryview(old)
        moved: set[int] = set()
        count = len(ends)
        for low in range(0, count, SPAN_BLOCK):
            high = min(count, low + SPAN_BLOCK)
            start = ends[low - 1] if low else 0
            if raw.startswith(view[start : ends[high - 1]], start):
                continue
            for i in range(low, high):
                end = ends[i]
                if not raw.startswith(view[start:end], start):
                    moved.add(i)
                start = end
        return moved

    @staticmethod
    def _spots_of(walk: _Walked, prefetched, plan: Plan | None) -> tuple:
        """Where each region of a walk lies in the prefetch buffer, with its bytes then, and
        the indexes of the plan's spans holding them; (None, ()) when one of them was not
        prefetched (whole)."""
        out = []
        spans = set()
        ends = plan.span_ends if plan is not None else []
        for address, length, old in walk.regions:
            hit = prefetched(address)
            if hit is None or hit[1] < length:
                return None, ()
            out.append((hit[0], hit[0] + length, old))
            spans.add(bisect.bisect_right(ends, hit[0]))
        return tuple(out), frozenset(spans)

    def _still_snapshot(
        self, still: _Still, now: float, proven: frozenset[int]
    ) -> tuple[list[ThreadStack], set[int]] | None:
        """The last snapshot again, when its whole prefetch came back byte for byte the same
        (see `_snapshot`), with fresh run states: the same ThreadStack objects where nothing
        changed, new ones for the threads whose run state or name did. The code objects of
        its frames are still re-checked; None when one changed (then the caller reads
        afresh)."""
        if still.codes is None:
            walks = [still.walked[t] for t in still.tstates]
            if not all(walk.frames for walk in walks):
                return None
            still.codes = frozenset().union(*(walk.codes for walk in walks))
            still.natives = {s.native_id: i for i, s in enumerate(still.threads) if s.native_id}
        states = self._states
        natives = still.natives
        threads = list(still.threads)
        idents = None
        if self._want_names and not all(s.name is not None for s in threads):
            idents = [(s.thread_id, s.native_id or 0) for s in threads]
            names = self._thread_names(idents, now)
            for i, stack in enumerate(threads):
                name = names.get(idents[i])
                if name != stack.name:
                    threads[i] = replace(stack, name=name)
        for native in states.due(natives.keys()) if natives else ():
            i = natives[native]
            stack = threads[i]
            running = states.running(native)
            idle = None if running is None else not running
            if idle is not stack.idle:
                threads[i] = replace(stack, idle=idle)
        _, stale_codes = self._changed_since([], [], self.codes.due(set(still.codes)), proven)
        if stale_codes:
            self.walker.forget_frames()
            self._memos = {}
            self._last_walks = {}
            self._still = self._snap = None
            return None
        still.threads = threads
        if self._snap is not None and self._snap.tstates == still.tstates:
            self._snap.threads = threads
        self._last_stacks = dict(zip(still.tstates, threads))
        return threads, set()

    def _walked(
        self,
        fetch: Fetch,
        tstate: int,
        values: tuple[int, ...],
        memos: dict[int, WalkMemo],
        walk_checks: list[Check],
        stack: ThreadStack,
    ) -> _Walked:
        """What a fresh walk of one thread depended on: the fields locating its stack, every
        region it read with the bytes it read there, and its frames' code objects (`frames`
        () when it failed)."""
        locating = self._locate(values)
        regions = []
        for address, size, _ in walk_checks[1:]:
            if size:
                blob = fetch.first_copy(address, size)
                if blob is None:
                    return _Walked(stack.thread_id, locating, tuple(regions))
                regions.append((address, size, blob))
        if stack.error is not None:
            return _Walked(stack.thread_id, locating, tuple(regions))
        if self._modern:
            memo = memos.get(tstate)
            codes = frozenset(memo.codes) if memo is not None else frozenset()
        else:
            # Each region of a <= 3.10 walk is one frame object's header.
            at = self._legacy_code_offset
            codes = frozenset(_Q.unpack_from(blob, at)[0] for _, _, blob in regions)
        planned, lead = fetch.planned_now([address for address, _, _ in regions])
        return _Walked(
            stack.thread_id, locating, tuple(regions), stack.frames, codes, planned, lead
        )

    def _changed_since(
        self,
        checks: list[Check],
        owners: list[int],
        codes_due: list[int],
        proven: frozenset[int] = frozenset(),
    ) -> tuple[set[int], bool]:
        """Re-read what the walks read on demand, and the cached code objects they used
        (but those `proven` already: re-checked behind this snapshot's prefetch).

        Returns the thread ids whose stack changed, and whether a cached code object turned
        out to be a different object now (then every frame derived from it is suspect).
        """
        self._plan_proof(codes_due)
        if proven:
            codes_due = [address for address in codes_due if address not in proven]
        regions = [(address, size) for address, size, _ in checks]
        code_regions = self.codes.check_regions(codes_due)
        if not regions and not code_regions:
            return set(), False
        blobs = self.mem.read_many(regions + code_regions)
        if codes_due and self.codes.confirm(codes_due, blobs[len(regions) :]):
            return set(), True
        changed: set[int] = set()
        for (_address, _size, spots), now, owner in zip(checks, blobs, owners):
            if now is None or any(now[o : o + len(v)] != v for o, v in spots):
                changed.add(owner)
        return changed, False

    def _plan_proof(self, codes_due: list[int]) -> None:
        """Which codes the next prefetch re-checks (its `CodeProof`): the ones due now, with
        those it checked already while they are few. A set that only changes when a code
        not in it comes due keeps one prepared scatter read snapshot after snapshot."""
        current = self._proof_codes
        if current.issuperset(codes_due):
            return
        wider = current.union(codes_due)
        self._proof_codes = wider if len(wider) <= MAX_PROOF_CODES else frozenset(codes_due)

    def _walk(
        self,
        fetch: Fetch,
        tstate: int,
        values: tuple[int, ...],
        previous: WalkMemo | None,
        memos: dict,
        checks: list[Check],
        used: set[int],
    ):
        """The thread's frames; appends to `checks` what a later re-check must compare."""
        frame_slot = values[self._frame_slot]
        if not self._modern:
            frames, innermost = self.walker.walk(fetch, frame_slot, used)
            checks.extend(innermost)
            return frames
        if self._via_cframe:
            frame = 0
            if frame_slot:
                address = frame_slot + self._cframe_offset
                buf, offset = fetch.get_lead(address, 8)
                frame = _Q.unpack_from(buf, offset)[0]
                checks.append((address, 8, ((0, buf[offset : offset + 8]),)))
        else:
            frame = frame_slot
        frames, memo = self.walker.walk(
            fetch,
            frame,
            values[self._chunk_slot],
            values[self._top_slot],
            previous,
            used,
        )
        memos[tstate] = memo
        checks.extend(self.walker.checks(memo, frame))
        return frames

    def _locating_spots(self, values: tuple[int, ...]) -> tuple[tuple[int, bytes], ...]:
        """The thread-state fields that say where the stack is, as this snapshot read them."""
        return tuple(
            (offset, _Q.pack(values[slot]))
            for slot, (offset, _) in zip(self._locating_slots, self._locating_fields)
        )

    def _gil_holder(self, fetch: Fetch) -> int:
        """The thread state holding the GIL right now, or 0."""
        gil = self._gil_fields
        if gil is None:
            gil = self._gil_fields = self._gil_layout()
        region, size, locked_at, holder_at = gil
        if not region:
            return 0
        self._gil_region = region
        buf, offset = fetch.get(region, size)
        if locked_at is None:
            return _Q.unpack_from(buf, offset)[0]
        locked = _I.unpack_from(buf, offset + locked_at)[0]
        return _Q.unpack_from(buf, offset + holder_at)[0] if locked else 0

    def _gil_layout(self) -> tuple[int, int, int | None, int]:
        """(address, size) of the GIL state the snapshot reads, and where in it `locked`
        and the holder lie (locked None: the region is the holder itself, ≤3.11)."""
        layout = self.layout
        if not self.spec.gil_in_interpreter:
            runtime = self.interpreter.runtime_address
            return runtime + layout["runtime.gilstate_tstate_current"], 8, None, 0
        struct_at = self.mem.read_u64(self.interp_address + layout["interp.ceval_gil"])
        lo = min(layout["gil.locked"], layout["gil.last_holder"])
        hi = max(layout["gil.locked"] + 4, layout["gil.last_holder"] + 8)
        region = struct_at + lo if struct_at else 0
        return region, hi - lo, layout["gil.locked"] - lo, layout["gil.last_holder"] - lo

    def _thread_names(self, threads: list[tuple[int, int]], now: float) -> dict:
        """{(thread ident, native id): name}. Names are read again only when a thread not
        named yet appears (at most every THREAD_NAME_REFRESH_S): keyed by native id too, a
        new thread that got an ended one's ident (glibc reuses its stack) counts as new."""
        if not self._want_names:
            return {}
        unknown = not self._names.keys() >= set(threads)
        if unknown and now - self._names_at > THREAD_NAME_REFRESH_S:
            self._names_at = now
            try:
                from .objects import thread_names

                by_ident = thread_names(
                    self.mem, self.version[:2], self.layout, self.interp_address
                )
            except ProcessExited:
                raise
            except Exception:  # a torn dict read: names are a nicety, stacks are not
                return self._names
            self._names = {t: by_ident[t[0]] for t in threads if t[0] in by_ident}
        return self._names

    @property
    def syscalls(self) -> int:
        """Syscalls made so far: memory reads, /proc thread-state reads, ptrace pauses."""
        paused = 0 if self._pauser is None else self._pauser.syscalls
        return self.mem.syscalls + self._states.syscalls + paused

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        if self._pauser is not None:
            self._pauser.close()  # lets go of any thread a failed pause still holds
        self._states.close()
        self.mem.close()

    def __enter__(self) -> StackReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
