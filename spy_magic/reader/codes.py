"""Code objects read out of the target, decoded once and kept by address.

A code object's address can be reused after it dies, so every cached entry keeps what must
still hold for it to be right: the code's type, first line and pointers, and the characters
of its name, file name and line table. Whenever a freshly walked frame uses a code, the
reader re-checks those (in the same scatter read that verifies the snapshot); a mismatch
evicts the entry and the snapshot is taken again. That holds for a code loaded during the
snapshot too: it is read after the frames that point to it were copied, so the frame may
have returned and its code's address been reused in between (`loaded_now`).
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field

from .errors import AccessDenied, ProcessExited, ReaderError, TornStack
from .linetable import LineTable
from .memory import ProcessMemory
from .model import Frame
from .objects import ObjectReader
from .versions import KNOWN

_Q = struct.Struct("<Q")
_q = struct.Struct("<q")
_i = struct.Struct("<i")
MAX_NAME_CHARS = 1 << 16
MAX_TABLE_BYTES = 1 << 24
CHECK_BYTES = 128  # how much of a name or line table a re-check compares
MAX_CODES = 50_000  # entries kept; past that the cache starts again empty
MAX_PROOFS = 8  # prepared proofs kept (CodeCache.proof); past that they are made anew
PROOF_GAP = 512  # check regions closer than this are read as one span of a proof

# A region to re-read and the (offset, bytes) spots in it that must be unchanged.
Check = tuple[int, int, tuple[tuple[int, bytes], ...]]


@dataclass
class CodeInfo:
    """What the reader needs of one code object, decoded."""

    address: int
    name: str
    filename: str
    firstlineno: int
    table: LineTable
    checks: tuple[Check, ...]  # what must still hold for this entry to be trusted
    code_start: int = 0  # address of the first code unit (3.11+)
    code_units: int = 0  # number of code units (3.11+)
    first_traceable: int = 0  # index of the first instruction tracebacks show (3.11+)
    frames: dict[int, Frame] = field(default_factory=dict)
    loaded_in: int = 0  # the snapshot (CodeCache.generation) that loaded this entry
    # free-threaded 3.14+: thread-local bytecode copy index -> address of its first unit
    copies: dict[int, int] = field(default_factory=dict)

    def frame_at(self, byte_offset: int) -> Frame:
        """The frame at this instruction, memoised per offset."""
        frame = self.frames.get(byte_offset)
        if frame is None:
            line = self.table.line_at(byte_offset)
            frame = Frame(
                self.name, self.filename, line if line is not None else 0, self.firstlineno
            )
            if len(self.frames) < 4096:
                self.frames[byte_offset] = frame
        return frame


class CodeProof:
    """The re-check of a set of cached codes, prepared once: their check regions merged into
    spans (read as the tail of a scatter read, `Fetch`), and every spot they must hold as
    one masked integer, so the whole set is confirmed by one C-level comparison.

    Holding proves each code intact as `CodeCache.confirm` would; a mismatch proves nothing
    about which one changed (the caller then re-checks them one by one)."""

    __slots__ = ("codes", "expected", "mask", "size", "spans")

    def __init__(self, codes: frozenset[int], checks: list[Check]) -> None:
        self.codes = codes
        spans: list[tuple[int, int]] = []
        for address, size, _ in sorted(checks, key=lambda c: c[0]):
            if spans and address <= spans[-1][0] + spans[-1][1] + PROOF_GAP:
                start, length = spans[-1]
                spans[-1] = (start, max(length, address + size - start))
            else:
                spans.append((address, size))
        starts, base, offsets = [s for s, _ in spans], 0, []
        for _, length in spans:
            offsets.append(base)
            base += length
        self.spans, self.size = spans, base
        expected, mask = bytearray(base), bytearray(base)
        for address, _size, spots in checks:
            i = bisect.bisect_right(starts, address) - 1
            at = offsets[i] + address - starts[i]
            for offset, value in spots:
                expected[at + offset : at + offset + len(value)] = value
                mask[at + offset : at + offset + len(value)] = b"\xff" * len(value)
        self.mask = int.from_bytes(mask, "little")
        self.expected = int.from_bytes(expected, "little")

    def holds(self, raw: bytes) -> bool:
        """Whether `raw`, the spans as read, shows every code as it was decoded."""
        return len(raw) == self.size and int.from_bytes(raw, "little") & self.mask == self.expected


class CodeCache:
    """Decoded code objects by address, with batched re-validation."""

    def __init__(
        self,
        mem: ProcessMemory,
        version: tuple[int, int, int],
        layout: dict[str, int],
        code_type: int | None,
    ) -> None:
        self.mem = mem
        self.objects = ObjectReader(mem, version[:2], layout)
        self.layout = layout
        self.code_type = code_type
        spec = KNOWN[tuple(version[:2])]
        self.modern = spec.frames == "chunks"
        self.table_kind = spec.line_table
        table_key = "code.lnotab" if spec.line_table == "lnotab" else "code.linetable"
        name_key = "code.qualname" if self.modern else "code.name"
        self._fields = (layout[name_key], layout["code.filename"], layout[table_key])
        self._firstlineno = layout["code.firstlineno"]
        # The header check spans ob_type through the last pointer we rely on.
        self._fp_lo = layout["object.ob_type"]
        self._fp_hi = max(*self._fields, self._firstlineno) + 8
        self._entries: dict[int, CodeInfo] = {}
        self._proofs: dict[frozenset[int], CodeProof] = {}
        self.generation = 0
        self.misses = 0

    def _header_check(self, address: int, raw: bytes) -> Check:
        """The code object's type, first line and the pointers to its name, file, table."""
        spots = [(self._fp_lo, 8), (self._firstlineno, 4), *((off, 8) for off in self._fields)]
        return (address, self._fp_hi, tuple((off, raw[off : off + n]) for off, n in spots))

    def _str_check(self, address: int, text: str) -> Check:
        """A str's length and (the start of) its characters, where CPython keeps them."""
        widest = max(map(ord, text), default=0)
        kind = 1 if widest < 256 else 2 if widest < 65536 else 4
        start = self.layout["unicode.ascii_data" if widest < 128 else "unicode.compact_data"]
        codec = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]
        data = text.encode(codec, "surrogatepass")[:CHECK_BYTES]
        length = self.layout["unicode.length"]
        return (
            address,
            start + len(data),
            ((length, _q.pack(len(text))), (start, data)),
        )

    def _bytes_check(self, address: int, data: bytes) -> Check:
        size_at, start = self.layout["bytes.ob_size"], self.layout["bytes.ob_sval"]
        head = data[:CHECK_BYTES]
        return (address, start + len(head), ((size_at, _q.pack(len(data))), (start, head)))

    def get(self, address: int) -> CodeInfo:
        entry = self._entries.get(address)
        if entry is not None:
            return entry
        return self._load(address)

    def _load(self, address: int) -> CodeInfo:
        self.misses += 1
        layout = self.layout
        try:
            raw = self.mem.read(address, max(layout["code.size"], self._fp_hi))
            ob_type = _Q.unpack_from(raw, layout["object.ob_type"])[0]
            if self.code_type is not None and ob_type != self.code_type:
                raise TornStack(f"object at {address:#x} is not a code object")
            name_ptr, file_ptr, table_ptr = (_Q.unpack_from(raw, off)[0] for off in self._fields)
            firstlineno = _i.unpack_from(raw, self._firstlineno)[0]
            name, filename = self.objects.read_strs(
                [name_ptr, file_ptr], max_chars=MAX_NAME_CHARS, strict=True
            )
            table_bytes = self.objects.read_bytes(table_ptr, MAX_TABLE_BYTES)
            table = LineTable(self.table_kind, table_bytes, firstlineno)
            checks = (
                self._header_check(address, raw),
                self._str_check(name_ptr, name),
                self._str_check(file_ptr, filename),
                self._bytes_check(table_ptr, table_bytes),
            )
        except (ProcessExited, AccessDenied):
            raise
        except (ReaderError, ValueError, struct.error) as exc:
            raise TornStack(f"unreadable code object at {address:#x}: {exc}") from None
        info = CodeInfo(address, name, filename, firstlineno, table, checks)
        info.loaded_in = self.generation
        if self.modern:
            info.code_start = address + layout["code.code_adaptive"]
            info.code_units = _q.unpack_from(raw, layout["varobject.ob_size"])[0]
            info.first_traceable = _i.unpack_from(raw, layout["code.firsttraceable"])[0]
        self._entries[address] = info
        return info

    def bytecode_start(self, info: CodeInfo, copy: int, fresh: bool = False) -> int:
        """Free-threaded 3.14+: where thread-local bytecode copy `copy` of a code starts.

        Read from the code's `co_tlbc` array (entry 0 is `co_code_adaptive` itself) and
        cached; `fresh` re-reads it, since the array is replaced when it grows and a copy's
        index can be reused after its thread exits.
        """
        start = None if fresh else info.copies.get(copy)
        if start is not None:
            return start
        layout = self.layout
        try:
            array = self.mem.read_u64(info.address + layout["code.co_tlbc"])
            if not array:
                raise TornStack("thread-local bytecode array missing")
            count = self.mem.read_u64(array + layout["codearray.size"])
            if not 0 <= copy < min(count, 1 << 16):
                raise TornStack(f"thread-local bytecode copy {copy} of {count} does not exist")
            start = self.mem.read_u64(array + layout["codearray.entries"] + 8 * copy)
        except (ProcessExited, AccessDenied):
            raise
        except ReaderError as exc:
            raise TornStack(f"thread-local bytecode unreadable: {exc}") from None
        info.copies[copy] = start
        return start

    def begin_snapshot(self) -> bool:
        """Start a snapshot; True when the cache was full and starts again empty.

        Only here, between snapshots, so the reader can drop everything derived from the
        entries at once (the walkers' frames): a frame served from such a cache after its
        entry is gone would have no entry left to be checked against.
        """
        self.generation += 1
        if len(self._entries) > MAX_CODES:
            self._entries.clear()
            self._proofs.clear()
            return True
        return False

    def due(self, used: set[int]) -> list[int]:
        """The cached codes among `used`, all of which must be re-checked.

        A freed code object's address, and those of its name, file name and line table, are
        often all reused at once by the next code object (exec'd code, notebook cells), so
        neither "it was in use a moment ago" nor equal pointers prove an entry still right.
        Nor does "loaded during this snapshot": the load came after the copy of the frame
        that points to it. The walkers only report codes of frames they walked afresh (an
        unchanged stack tail is reused as a whole), which keeps this list short.
        """
        entries = self._entries
        return [address for address in used if address in entries]

    def loaded_now(self, used: set[int]) -> bool:
        """Whether any of these codes was loaded during this snapshot.

        Such a code was read after the frames of the walk that used it were copied: those
        frames must then be re-read after it (with it, `due`), not just compared with the
        snapshot's second copy. Otherwise a frame that returned in between, its code freed
        and the address given to the next code object, is named after that next code.
        """
        generation = self.generation
        entries = self._entries
        for address in used:
            entry = entries.get(address)
            if entry is not None and entry.loaded_in == generation:
                return True
        return False

    def check_regions(self, addresses: list[int]) -> list[tuple[int, int]]:
        """The memory to re-read to confirm these entries (see `confirm`), in order."""
        return [(a, size) for address in addresses for a, size, _ in self._entries[address].checks]

    def confirm(self, addresses: list[int], blobs: list[bytes | None]) -> list[int]:
        """Evict the entries whose objects changed; return their addresses.

        `blobs` are the reads of `check_regions(addresses)`. Comparing the characters, not
        just the pointers, matters: a freed code object, its name and its file name are often
        all reallocated at the very same addresses for the next code object.
        """
        evicted = []
        blob_iter = iter(blobs)
        for address in addresses:
            entry = self._entries[address]
            intact = True
            for (_a, _size, spots), blob in zip(entry.checks, blob_iter):
                if blob is None or any(blob[o : o + len(v)] != v for o, v in spots):
                    intact = False
            if not intact:
                del self._entries[address]
                evicted.append(address)
        if evicted:
            self._proofs.clear()  # a proof holds the evicted entries' bytes
        return evicted

    def proof(self, addresses: frozenset[int]) -> CodeProof | None:
        """The prepared re-check of these cached codes (None if one is not cached).

        Kept while every entry in it lives: an eviction drops them all, as a code reloaded
        at the same address has other bytes to hold."""
        found = self._proofs.get(addresses)
        if found is None:
            entries = self._entries
            if not addresses or not addresses <= entries.keys():
                return None
            if len(self._proofs) >= MAX_PROOFS:
                self._proofs.clear()
            checks = [c for address in addresses for c in entries[address].checks]
            found = self._proofs[addresses] = CodeProof(addresses, checks)
        return found

    def __len__(self) -> int:
        return len(self._entries)
