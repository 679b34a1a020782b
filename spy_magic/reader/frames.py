"""Walking one thread's Python frames, for both frame models CPython has had.

- 3.8–3.10: frames are heap objects (PyFrameObject) linked by f_back.
- 3.11+: frames live in per-thread data-stack chunks, linked by `previous`; generator and
  coroutine frames live inside their generator objects, entry frames (3.12+) on the C stack.
  Each chunk's used part is read in one piece and frames are parsed out of that copy.

Both walkers return frames innermost first and raise TornStack when what they read cannot be
a consistent stack (a cycle, a pointer to something that is not a code object, an
instruction pointer outside its code). A stack deeper than the limit (`max_depth`) gives
its innermost frames and, outermost, a marker frame saying how many more there are.

Speed comes from three caches: decoded code objects (CodeCache), the Frame for each
instruction address, and, on 3.11+, the previous snapshot's walk of each thread: when every
byte the outer part of the walk depends on is unchanged, that part is reused as it was.
"""

from __future__ import annotations

import operator
import struct
from dataclasses import dataclass, field
from typing import Callable

from .codes import CodeCache
from .errors import MemoryReadError, TornStack
from .fetch import Fetch
from .model import Frame
from .versions import KNOWN

DEFAULT_MAX_DEPTH = 16_384
TRUNCATED_FILENAME = "<truncated>"


def truncation_marker(hidden: int, exact: bool) -> Frame:
    """The outermost frame of a stack cut at the depth limit: how many frames it hides.

    Past the limit a walk only counts (no code objects decoded), and only up to as many again:
    a chain longer than that is "at least" so deep."""
    what = f"{hidden} frames" if exact else f"at least {hidden} frames"
    return Frame(f"<truncated {what}>", TRUNCATED_FILENAME, 0, 0)


# A region to re-read after a walk, and the (offset, bytes) spots in it that must not have
# changed for the walk's copy to count as consistent.
Check = tuple[int, int, tuple[tuple[int, bytes], ...]]


def identity(fields: tuple[tuple[int, int], ...], buf: bytes, offset: int) -> tuple:
    """Spots holding a frame's identity fields, as they are in `buf` at `offset`."""
    return tuple((o, buf[offset + o : offset + o + n]) for o, n in fields)


# A running generator's frame links to its caller; a suspended one's link is cleared. So a
# chain that ends in a generator's frame was read across a yield: the thread state said the
# generator ran, its frame (read a moment later) says it was suspended.
SUSPENDED_GENERATOR = "the frame chain ends in a suspended generator's frame"

_MAX_FRAME_CACHE = 200_000
_REUSE_ATTEMPTS = 4

_FORMATS = {1: "B", 4: "i", 8: "Q"}


def field_unpacker(fields: list[tuple[int, int]]) -> tuple[Callable, int]:
    """unpack(buf, offset) for several (offset, size) fields at once, in the given order."""
    order = sorted(range(len(fields)), key=lambda i: fields[i][0])
    fmt = "<"
    pos = 0
    for i in order:
        offset, size = fields[i]
        if offset < pos:
            raise ValueError("overlapping fields")
        if offset > pos:
            fmt += f"{offset - pos}x"
        fmt += _FORMATS[size]
        pos = offset + size
    st = struct.Struct(fmt)
    inverse = [order.index(i) for i in range(len(fields))]
    if inverse == list(range(len(fields))):
        return st.unpack_from, st.size

    reorder = operator.itemgetter(*inverse)
    unpack_from = st.unpack_from

    def unpack(buf, offset=0):
        return reorder(unpack_from(buf, offset))

    return unpack, st.size


class LegacyWalker:
    """3.8–3.10: follow f_back through PyFrameObjects."""

    def __init__(
        self,
        layout: dict[str, int],
        codes: CodeCache,
        version: tuple[int, int, int],
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.codes = codes
        self.max_depth = max_depth
        in_units = KNOWN[tuple(version[:2])].lasti_in_code_units
        self.lasti_scale = 2 if in_units else 1
        self.use_f_lineno = in_units
        lasti_size = layout.get("frame.f_lasti_size", 4)
        self.unpack, self.size = field_unpacker(
            [
                (layout["object.ob_refcnt"], 8),
                (layout["frame.f_back"], 8),
                (layout["frame.f_code"], 8),
                (layout["frame.f_lasti"], lasti_size),
                (layout["frame.f_lineno"], 4),
                (layout["frame.f_gen"], 8),
                (layout.get("frame.f_executing", layout.get("frame.f_state")), 1),
            ]
        )
        # Values of the last field that a frame on a thread's stack cannot have: 3.8/3.9's
        # f_executing == 0; 3.10's f_state CREATED (-2) or CLEARED (4). A frame on its way
        # out is still linked for a moment while "executing" (3.9) or RETURNED, RAISED or
        # SUSPENDED (3.10: a generator that just yielded).
        self.idle_states = {0} if "frame.f_executing" in layout else {254, 4}
        # ...and the values the outermost frame must have: a frame finished but not yet
        # freed (3.10: RETURNED with its caller link cleared) can end a torn chain.
        self.root_states = {1} if "frame.f_executing" in layout else {0, 2}
        self._frames: dict[tuple[int, int], Frame] = {}
        self.identity = ((layout["frame.f_back"], 8), (layout["frame.f_code"], 8))
        # Frame header bytes by address: the last snapshot's, and this one's so far.
        self._last_headers: dict[int, bytes] = {}
        self._headers: dict[int, bytes] = {}

    def forget_frames(self) -> None:
        self._frames.clear()
        self._last_headers.clear()

    def end_snapshot(self) -> None:
        self._last_headers, self._headers = self._headers, {}

    def walk(
        self, fetch: Fetch, frame_address: int, used: set[int]
    ) -> tuple[list[Frame], list[Check]]:
        """The frames, and what of them to re-check afterwards (see `Check`): each frame's
        identity (code and caller) and, but for the innermost, its instruction.
        """
        frames: list[Frame] = []
        innermost: list[Check] = []
        seen: set[int] = set()
        address = frame_address
        cache = self._frames
        last_headers, headers_now = self._last_headers, self._headers
        unpack, size, idle_states = self.unpack, self.size, self.idle_states
        prefetched = fetch.where.get
        whole = fetch.raw
        served: list[int] = []  # frames found in the prefetch, planned in one go at the end
        while address:
            if address in seen:
                raise TornStack("frame chain loops")
            if len(frames) >= self.max_depth:
                frames.append(self._count_beyond(fetch, address, seen))
                break
            seen.add(address)
            hit = prefetched(address)
            if hit is not None and hit[1] >= size:
                buf, offset = whole, hit[0]
                served.append(address)
            else:
                try:
                    buf, offset = fetch.get(address, size)
                except MemoryReadError as exc:
                    raise TornStack(f"frame at {address:#x} unreadable: {exc}") from None
            # Every frame's identity must hold still; outer frames' instructions too (only the
            # innermost frame's moves while it runs).
            if innermost:
                # A suspended frame: all of it past the refcount (which others may touch).
                innermost.append((address, size, ((8, buf[offset + 8 : offset + size]),)))
            else:
                innermost.append((address, size, identity(self.identity, buf, offset)))
            refcount, back, code, lasti, lineno, generator, state = unpack(buf, offset)
            if refcount <= 0 or refcount > 1 << 40:
                # A dead frame (free list or zombie): the chain was read across a return.
                raise TornStack("frame chain leads to a dead frame")
            if generator and not back:
                raise TornStack(SUSPENDED_GENERATOR)
            if state in idle_states or (not back and state not in self.root_states):
                # A zombie frame reused by a new call (or generator) the thread has not
                # entered yet: the chain was read across a return.
                raise TornStack("frame chain leads to a frame that is not executing")
            # A frame unchanged since the last snapshot still holds its code object alive:
            # only frames new (or changed) since then need their code re-checked.
            header = buf[offset : offset + size]
            if last_headers.get(address) != header:
                used.add(code)
            headers_now[address] = header
            frame = cache.get((code, lasti))
            if frame is None:
                info = self.codes.get(code)
                offset = lasti * self.lasti_scale if lasti >= 0 else -1
                frame = info.frame_at(offset)
                if len(cache) > _MAX_FRAME_CACHE:
                    cache.clear()
                cache[(code, lasti)] = frame
            if self.use_f_lineno and lineno > 0 and lineno != frame.line:
                # 3.10 keeps the true line in f_lineno while a tracer runs.
                frame = Frame(frame.name, frame.filename, lineno, frame.firstlineno)
            frames.append(frame)
            address = back
        fetch.note(served, size)
        return frames, innermost

    def _count_beyond(self, fetch: Fetch, address: int, seen: set[int]) -> Frame:
        """The marker for the frames from `address` outwards, past the depth limit: they are
        only followed (f_back), up to max_depth of them, not decoded or re-checked."""
        back_offset, count = self.identity[0][0], 0
        while address and count < self.max_depth:
            if address in seen:
                raise TornStack("frame chain loops")
            seen.add(address)
            try:
                buf, offset = fetch.get(address, self.size)
            except MemoryReadError as exc:
                raise TornStack(f"frame at {address:#x} unreadable: {exc}") from None
            address = struct.unpack_from("<Q", buf, offset + back_offset)[0]
            count += 1
        return truncation_marker(count, exact=not address)


@dataclass
class WalkMemo:
    """What one thread's previous walk depended on, so the next can reuse its outer part."""

    chunk: int = 0
    blob: bytes = b""
    frames: list[Frame] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)  # the code object of each of `frames`
    # in-chunk frame address -> (frames from it to the outermost, its place in `chain`
    # counted from the end, number of outside reads that lie beyond it). Counted from the
    # outer end, so an entry stays true while the stack below it holds still: a walk that
    # reuses a tail takes this dict over as it is. Entries of frames no longer in `chain`
    # may linger; one counts only where `chain` holds its address at its place.
    positions: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    chain: list[int] = field(default_factory=list)  # in-chunk frames walked, innermost first
    # bytes read from outside the current chunk, in walk order: (address, bytes)
    outside: list[tuple[int, bytes]] = field(default_factory=list)
    # (code object, instruction address) of the innermost frame shown (for --opcodes)
    innermost: tuple[int, int] | None = None


class ChunkWalker:
    """3.11+: parse _PyInterpreterFrames out of whole-chunk copies of the data stack."""

    def __init__(
        self,
        layout: dict[str, int],
        codes: CodeCache,
        version: tuple[int, int, int],
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.codes = codes
        self.max_depth = max_depth
        owners = {k: v for k, v in layout.items() if k.startswith("const.FRAME_OWNED_BY_")}
        # Frames that are no Python code's: C-stack entry frames (3.12/3.13), the
        # interpreter's entry and base frames (3.14+).
        self.not_code_owners = frozenset(
            owners[k]
            for k in ("const.FRAME_OWNED_BY_CSTACK", "const.FRAME_OWNED_BY_INTERPRETER")
            if k in owners
        )
        self.owned_by_generator = owners.get("const.FRAME_OWNED_BY_GENERATOR", 1)
        self.max_owner = max(owners.values(), default=3)
        # 3.14+: f_executable is a _PyStackRef whose low bits are tags.
        self.address_mask = ~layout.get("const.Py_TAG_BITS", 0) & 0xFFFF_FFFF_FFFF_FFFF
        fields = [
            (layout["iframe.code"], 8),
            (layout["iframe.previous"], 8),
            (layout["iframe.instr_ptr"], 8),
            (layout["iframe.owner"], 1),
        ]
        # Free-threaded 3.14+: instr_ptr points into the thread's own copy of the bytecode.
        self.per_thread_bytecode = "iframe.tlbc_index" in layout
        if self.per_thread_bytecode:
            fields.append((layout["iframe.tlbc_index"], 4))
        self.unpack, self.size = field_unpacker(fields)
        self.chunk_unpack, self.chunk_header = field_unpacker(
            [(layout["chunk.previous"], 8), (layout["chunk.size"], 8), (layout["chunk.top"], 8)]
        )
        self.chunk_data = layout["chunk.data"]
        self.identity = (
            (layout["iframe.code"], 8),
            (layout["iframe.previous"], 8),
            (layout["iframe.owner"], 1),
        )
        # instruction address -> (code address, Frame, hidden unless owned by a generator)
        self._at_instr: dict[int, tuple[int, Frame, bool]] = {}

    def forget_frames(self) -> None:
        self._at_instr.clear()

    def end_snapshot(self) -> None:
        """Nothing to roll over: the tail memos live in the reader."""

    def _resolve(self, code: int, instr: int, copy: int = 0) -> tuple[int, Frame, bool]:
        info = self.codes.get(code)
        start = self.codes.bytecode_start(info, copy) if copy else info.code_start
        index = (instr - start) >> 1
        if copy and not -1 <= index < info.code_units:
            start = self.codes.bytecode_start(info, copy, fresh=True)
            index = (instr - start) >> 1
        if not -1 <= index < info.code_units:
            raise TornStack("instruction pointer outside its code object")
        entry = (code, info.frame_at(index * 2 if index >= 0 else -1), index < info.first_traceable)
        if len(self._at_instr) > _MAX_FRAME_CACHE:
            self._at_instr.clear()
        self._at_instr[instr] = entry
        return entry

    def walk(
        self,
        fetch: Fetch,
        frame_address: int,
        chunk: int,
        stack_top: int,
        memo: WalkMemo | None,
        used: set[int],
    ) -> tuple[list[Frame], WalkMemo]:
        frames: list[Frame] = []
        new_memo = WalkMemo(chunk=chunk, frames=frames)
        codes = new_memo.codes
        positions = new_memo.positions
        chain = new_memo.chain
        outside = new_memo.outside
        blob = b""
        older_chunk = 0
        chunk_limit = chunk  # the end of the chunk's allocation (its used part ends at the top)
        if chunk:
            if not chunk < stack_top <= chunk + (1 << 30):
                raise TornStack("data-stack top lies outside its chunk")
            try:
                older_chunk, chunk_size, _ = self.chunk_unpack(*fetch.get(chunk, self.chunk_header))
                if stack_top - chunk > chunk_size:
                    raise TornStack("data-stack top lies outside its chunk")
                chunk_limit = chunk + chunk_size
                if chunk <= frame_address < chunk_limit and frame_address + self.size > stack_top:
                    # The current frame and the top of the stack were copied at different
                    # moments: the stack grew in between. Not worth walking.
                    raise TornStack("the current frame lies above the data-stack top")
                blob = fetch.get_growing(chunk, stack_top - chunk, chunk_size)
            except MemoryReadError as exc:
                raise TornStack(f"data-stack chunk unreadable: {exc}") from None
        new_memo.blob = blob
        reusable = memo is not None and memo.chunk == chunk and chunk != 0
        attempts = _REUSE_ATTEMPTS
        older: list[tuple[int, int, bytes]] = []  # older chunks: (low, high, bytes)

        size = self.size
        unpack = self.unpack
        at_instr = self._at_instr
        not_code = self.not_code_owners
        max_owner = self.max_owner
        mask = self.address_mask
        per_thread = self.per_thread_bytecode
        copy = 0
        generator = self.owned_by_generator
        chunk_end = chunk + len(blob)
        lowest = chunk_end  # in-chunk frames must be met at ever lower addresses
        seen_outside: set[int] = set()
        # (address, frames so far, chain so far, outside reads so far)
        visits: list[tuple[int, int, int, int]] = []
        known = memo.positions.get if reusable else None
        address = frame_address
        max_depth = self.max_depth
        hidden = 0  # frames past the depth limit: counted, not decoded
        steps = 0
        while address:
            steps += 1
            if steps > 2 * max_depth:
                break  # past the limit, only as many again are counted
            if chunk <= address < chunk_limit and address + size > chunk_end:
                raise TornStack("a frame lies above the data-stack top")
            if chunk <= address and address + size <= chunk_end:
                if address >= lowest:
                    raise TornStack("frame chain loops inside its chunk")
                lowest = address
                offset = address - chunk
                place = known(address) if known is not None and attempts and not hidden else None
                if place is not None:
                    from_end, chain_from_end, beyond = place
                    old_chain = memo.chain
                    at = len(old_chain) - chain_from_end
                    if at >= 0 and chain_from_end and old_chain[at] == address:
                        attempts -= 1
                        start = len(memo.frames) - from_end
                        fits = len(frames) + from_end <= max_depth
                        if fits and self._tail_unchanged(fetch, memo, blob, offset + size, beyond):
                            if not frames:
                                new_memo.innermost = self._innermost_at(memo, start, blob, offset)
                            frames.extend(memo.frames[start:])
                            codes.extend(memo.codes[start:])
                            outside.extend(memo.outside[len(memo.outside) - beyond :])
                            chain.extend(old_chain[at:])
                            # The tail's entries hold as they are: take the dict over (the
                            # previous memo is not used again).
                            positions = memo.positions
                            if len(positions) > 2 * len(chain) + 64:  # drop lingering ones
                                positions = {a: positions[a] for a in old_chain[at:]}
                            new_memo.positions = positions
                            self._settle(positions, visits, len(frames), len(chain), len(outside))
                            return frames, new_memo
                visits.append((address, len(frames), len(chain), len(outside)))
                chain.append(address)
                raw = blob
            else:
                raw = None
                offset = 0
                for lo, hi, data in older:
                    if lo <= address and address + size <= hi:
                        raw, offset = data, address - lo
                        break
                while raw is None and older_chunk:
                    seg, older_chunk = self._older_chunk(fetch, older_chunk)
                    older.append(seg)
                    outside.append((seg[0], seg[2]))
                    if seg[0] <= address and address + size <= seg[1]:
                        raw, offset = seg[2], address - seg[0]
                if raw is None:
                    # Generator/coroutine frames and C-stack entry frames: read on their own.
                    if address in seen_outside:
                        raise TornStack("frame chain loops")
                    seen_outside.add(address)
                    try:
                        raw = fetch.get_bytes(address, size)
                    except MemoryReadError as exc:
                        raise TornStack(f"frame at {address:#x} unreadable: {exc}") from None
                    outside.append((address, raw))
            if per_thread:
                code, previous, instr, owner, copy = unpack(raw, offset)
            else:
                code, previous, instr, owner = unpack(raw, offset)
            address = previous
            if owner == generator and not previous:
                raise TornStack(SUSPENDED_GENERATOR)
            if owner in not_code:
                continue
            if owner > max_owner:
                raise TornStack(f"frame with impossible owner {owner}")
            if len(frames) >= max_depth:
                hidden += 1
                continue
            code &= mask
            used.add(code)
            entry = at_instr.get(instr)
            if entry is None or entry[0] != code:
                entry = self._resolve(code, instr, copy)
            if entry[2] and owner != generator:
                continue  # an incomplete frame: CPython hides these from tracebacks too
            if not frames:
                new_memo.innermost = (code, instr)
            frames.append(entry[1])
            codes.append(code)
        if address and not hidden:
            raise TornStack("frame chain is deeper than the limit without being that deep")
        if hidden:
            frames.append(truncation_marker(hidden, exact=not address))
            new_memo.positions = {}  # a cut walk's frames are no tail to reuse
            new_memo.chain = []
            return frames, new_memo
        self._settle(positions, visits, len(frames), len(chain), len(outside))
        return frames, new_memo

    def checks(self, memo: WalkMemo, innermost: int) -> list[Check]:
        """What of this walk to re-check afterwards to know the copy was consistent.

        Everything below the innermost frame must be byte for byte as it was (suspended
        frames do not change); of the innermost frame only its identity (code, caller,
        owner): its instruction pointer, locals and value stack move as it runs, and a
        sample of a running frame is still a true sample.
        """
        out: list[Check] = []
        if memo.chunk:
            blob = memo.blob
            if memo.chunk <= innermost < memo.chunk + len(blob):
                # One region from the chunk's start to the innermost frame's end: all of it
                # below that frame, and that frame's identity.
                prefix = innermost - memo.chunk
                inner = identity(self.identity, blob, prefix)
                spots = ((0, blob[:prefix]), *((prefix + o, v) for o, v in inner))
                out.append((memo.chunk, prefix + self.size, spots))
            else:
                out.append((memo.chunk, len(blob), ((0, blob),)))
        for address, raw in memo.outside:
            if address == innermost:
                out.append((address, len(raw), identity(self.identity, raw, 0)))
            else:
                out.append((address, len(raw), ((0, raw),)))
        return out

    def _innermost_at(
        self, memo: WalkMemo, start: int, blob: bytes, offset: int
    ) -> tuple[int, int] | None:
        """(code, instruction) of a reused walk's innermost shown frame, when it is the
        frame at `offset` (else None: the opcode of such a sample is not known)."""
        if start == 0:
            return memo.innermost
        code, _, instr, owner = self.unpack(blob, offset)[:4]
        code &= self.address_mask
        if owner in self.not_code_owners or start >= len(memo.codes) or memo.codes[start] != code:
            return None
        return code, instr

    @staticmethod
    def _settle(
        positions: dict,
        visits: list[tuple[int, int, int, int]],
        total_frames: int,
        total_chain: int,
        total_outside: int,
    ) -> None:
        """Note, for each in-chunk frame visited, how many frames, chain entries and outside
        reads lie from it outwards."""
        for address, frames_before, chain_before, outside_before in visits:
            positions[address] = (
                total_frames - frames_before,
                total_chain - chain_before,
                total_outside - outside_before,
            )

    @staticmethod
    def _tail_unchanged(
        fetch: Fetch, memo: WalkMemo, blob: bytes, prefix: int, beyond: int
    ) -> bool:
        """True when every byte the walk below this frame read last time is still the same."""
        if len(memo.blob) < prefix or not blob.startswith(memoryview(memo.blob)[:prefix]):
            return False  # (startswith on a memoryview: a memcmp, no copy)
        for address, old in memo.outside[len(memo.outside) - beyond :]:
            try:
                buf, offset = fetch.get(address, len(old))
            except MemoryReadError:
                return False
            if buf[offset : offset + len(old)] != old:
                return False
        return True

    def _older_chunk(self, fetch: Fetch, chunk: int) -> tuple[tuple[int, int, bytes], int]:
        try:
            previous, size, top = self.chunk_unpack(*fetch.get(chunk, self.chunk_header))
            used = self.chunk_data + top * 8
            if not 0 < used <= size:
                raise TornStack("older data-stack chunk has an impossible top")
            blob = fetch.get_bytes(chunk, used)
        except MemoryReadError as exc:
            raise TornStack(f"older data-stack chunk unreadable: {exc}") from None
        return (chunk, chunk + used, blob[:used]), previous
