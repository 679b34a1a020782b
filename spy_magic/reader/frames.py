"""Walking one thread's Python frames, for both frame models CPython has had.

- 3.8–3.10: frames are heap objects (PyFrameObject) linked by f_back.
- 3.11+: frames live in per-thread data-stack chunks, linked by `previous`; generator and
  coroutine frames live inside their generator objects, entry frames (3.12+) on the C stack.
  Each chunk's used part is read in one piece and frames are parsed out of that copy.

Both walkers return frames innermost first and raise TornStack when what they read cannot be
a consistent stack (a cycle, a pointer to something that is not a code object, an
instruction pointer outside its code, a stack deeper than the limit).
"""

from __future__ import annotations

import struct

from .codes import CodeCache
from .errors import MemoryReadError, TornStack
from .fetch import Fetch
from .model import Frame

DEFAULT_MAX_DEPTH = 16_384

_FORMATS = {1: "B", 4: "i", 8: "Q"}


def field_struct(fields: list[tuple[int, int]]) -> tuple[struct.Struct, list[int]]:
    """A Struct that unpacks several (offset, size) fields at once, plus their output order."""
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
    return struct.Struct(fmt), order


def _unpacker(fields: list[tuple[int, int]]):
    st, order = field_struct(fields)
    inverse = [order.index(i) for i in range(len(fields))]
    if inverse == list(range(len(fields))):
        return st.unpack_from, st.size

    def unpack(buf, offset=0):
        values = st.unpack_from(buf, offset)
        return tuple(values[j] for j in inverse)

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
        self.lasti_scale = 2 if version[:2] == (3, 10) else 1
        self.use_f_lineno = version[:2] == (3, 10)
        lasti_size = layout.get("frame.f_lasti_size", 4)
        self.unpack, self.size = _unpacker(
            [
                (layout["frame.f_back"], 8),
                (layout["frame.f_code"], 8),
                (layout["frame.f_lasti"], lasti_size),
                (layout["frame.f_lineno"], 4),
            ]
        )

    def walk(self, fetch: Fetch, frame_address: int) -> tuple[list[Frame], set[int]]:
        frames: list[Frame] = []
        codes_seen: set[int] = set()
        seen: set[int] = set()
        address = frame_address
        get_code = self.codes.get
        while address:
            if len(frames) >= self.max_depth or address in seen:
                raise TornStack("frame chain loops or is deeper than the limit")
            seen.add(address)
            try:
                raw = fetch.get(address, self.size)
            except MemoryReadError as exc:
                raise TornStack(f"frame at {address:#x} unreadable: {exc}") from None
            back, code, lasti, lineno = self.unpack(raw)
            info = get_code(code)
            codes_seen.add(code)
            if self.use_f_lineno and lineno > 0:
                frames.append(Frame(info.name, info.filename, lineno, info.firstlineno))
            else:
                frames.append(info.frame_at(lasti * self.lasti_scale if lasti >= 0 else -1))
            address = back
        return frames, codes_seen


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
        self.owned_by_cstack = layout.get("const.FRAME_OWNED_BY_CSTACK", -1)
        self.owned_by_generator = layout.get("const.FRAME_OWNED_BY_GENERATOR", 1)
        self.unpack, self.size = _unpacker(
            [
                (layout["iframe.code"], 8),
                (layout["iframe.previous"], 8),
                (layout["iframe.instr_ptr"], 8),
                (layout["iframe.owner"], 1),
            ]
        )
        self.chunk_unpack, self.chunk_header = _unpacker(
            [
                (layout["chunk.previous"], 8),
                (layout["chunk.size"], 8),
                (layout["chunk.top"], 8),
            ]
        )
        self.chunk_data = layout["chunk.data"]

    def walk(
        self, fetch: Fetch, frame_address: int, chunk: int, stack_top: int
    ) -> tuple[list[Frame], set[int]]:
        frames: list[Frame] = []
        codes_seen: set[int] = set()
        # Copies of data-stack chunks: (low address, high address, bytes); the current chunk
        # first, older ones when a frame pointer leads there.
        segments: list[tuple[int, int, bytes]] = []
        next_chunk: int | None = None
        if chunk:
            if not chunk < stack_top <= chunk + (1 << 30):
                raise TornStack("data-stack top lies outside its chunk")
            try:
                head = fetch.get(chunk, self.chunk_header)
                prev_chunk, chunk_size, _ = self.chunk_unpack(head)
                if not stack_top - chunk <= chunk_size:
                    raise TornStack("data-stack top lies outside its chunk")
                blob = fetch.get_growing(chunk, stack_top - chunk, chunk_size)
            except MemoryReadError as exc:
                raise TornStack(f"data-stack chunk unreadable: {exc}") from None
            segments.append((chunk, stack_top, blob))
            next_chunk = prev_chunk

        size = self.size
        unpack = self.unpack
        get_code = self.codes.get
        cstack = self.owned_by_cstack
        generator = self.owned_by_generator
        seen: set[int] = set()
        address = frame_address
        steps = 0
        while address:
            steps += 1
            if steps > self.max_depth or address in seen:
                raise TornStack("frame chain loops or is deeper than the limit")
            seen.add(address)
            for lo, hi, blob in segments:
                if lo <= address and address + size <= hi:
                    raw, offset = blob, address - lo
                    break
            else:
                raw = None
                offset = 0
                # Frames of callers that overflowed into an older chunk.
                while next_chunk and raw is None:
                    seg, next_chunk = self._older_chunk(fetch, next_chunk)
                    segments.append(seg)
                    if seg[0] <= address and address + size <= seg[1]:
                        raw, offset = seg[2], address - seg[0]
                if raw is None:
                    # Generator/coroutine frames and C-stack entry frames: read on their own.
                    try:
                        raw = fetch.get(address, size)
                    except MemoryReadError as exc:
                        raise TornStack(f"frame at {address:#x} unreadable: {exc}") from None
            code, previous, instr, owner = unpack(raw, offset)
            address = previous
            if owner == cstack:
                continue
            if owner > 3:
                raise TornStack(f"frame with impossible owner {owner}")
            info = get_code(code)
            codes_seen.add(code)
            index = (instr - info.code_start) >> 1
            if not -1 <= index < info.code_units:
                raise TornStack("instruction pointer outside its code object")
            if owner != generator and index < info.first_traceable:
                continue  # an incomplete frame: CPython hides these from tracebacks too
            frames.append(info.frame_at(index * 2 if index >= 0 else -1))
        return frames, codes_seen

    def _older_chunk(self, fetch: Fetch, chunk: int) -> tuple[tuple[int, int, bytes], int]:
        try:
            head = fetch.get(chunk, self.chunk_header)
            previous, size, top = self.chunk_unpack(head)
            used = self.chunk_data + top * 8
            if not 0 < used <= size:
                raise TornStack("older data-stack chunk has an impossible top")
            blob = fetch.get(chunk, used)
        except MemoryReadError as exc:
            raise TornStack(f"older data-stack chunk unreadable: {exc}") from None
        return (chunk, chunk + used, blob), previous
