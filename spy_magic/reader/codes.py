"""Code objects read out of the target, decoded once and kept by address.

A code object's address can be reused after it dies, so every cached entry keeps a small
fingerprint (type, name/filename/line-table pointers, first line) that the reader re-checks in
batches; a mismatch evicts the entry.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from .errors import AccessDenied, ProcessExited, ReaderError, TornStack
from .linetable import LineTable, kind_for_version
from .memory import ProcessMemory
from .model import Frame
from .objects import ObjectReader

_Q = struct.Struct("<Q")
_q = struct.Struct("<q")
_i = struct.Struct("<i")
MAX_NAME_CHARS = 1 << 16
MAX_TABLE_BYTES = 1 << 24
REVALIDATE_AFTER_S = 0.5  # how stale a reused code address may go unnoticed


@dataclass
class CodeInfo:
    """What the reader needs of one code object, decoded."""

    address: int
    name: str
    filename: str
    firstlineno: int
    table: LineTable
    fingerprint: bytes
    code_start: int = 0  # address of the first code unit (3.11+)
    code_units: int = 0  # number of code units (3.11+)
    first_traceable: int = 0  # index of the first instruction tracebacks show (3.11+)
    frames: dict[int, Frame] = field(default_factory=dict)

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
        self.modern = version[:2] >= (3, 11)
        self.table_kind = kind_for_version(version[0], version[1])
        table_key = "code.lnotab" if version[:2] <= (3, 9) else "code.linetable"
        name_key = "code.qualname" if self.modern else "code.name"
        self._fields = (layout[name_key], layout["code.filename"], layout[table_key])
        self._firstlineno = layout["code.firstlineno"]
        # The fingerprint spans ob_type through the last pointer we rely on.
        self._fp_lo = layout["object.ob_type"]
        self._fp_hi = max(*self._fields, self._firstlineno) + 8
        self._entries: dict[int, CodeInfo] = {}
        self._swept_at = time.monotonic()
        self.misses = 0

    def _fingerprint(self, raw: bytes) -> bytes:
        parts = [raw[self._fp_lo : self._fp_lo + 8], raw[self._firstlineno : self._firstlineno + 4]]
        parts.extend(raw[off : off + 8] for off in self._fields)
        return b"".join(parts)

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
            table = LineTable(
                self.table_kind, self.objects.read_bytes(table_ptr, MAX_TABLE_BYTES), firstlineno
            )
        except (ProcessExited, AccessDenied):
            raise
        except (ReaderError, ValueError, struct.error) as exc:
            raise TornStack(f"unreadable code object at {address:#x}: {exc}") from None
        info = CodeInfo(address, name, filename, firstlineno, table, self._fingerprint(raw))
        if self.modern:
            info.code_start = address + layout["code.code_adaptive"]
            info.code_units = _q.unpack_from(raw, layout["varobject.ob_size"])[0]
            info.first_traceable = _i.unpack_from(raw, layout["code.firsttraceable"])[0]
        if len(self._entries) > 50_000:
            self._entries.clear()
        self._entries[address] = info
        return info

    def sweep(self, now: float) -> bool:
        """Every REVALIDATE_AFTER_S, re-check all fingerprints in one scatter read.

        Returns True when an entry was evicted (its address now holds something else), so
        callers can drop what they derived from it.
        """
        if now - self._swept_at < REVALIDATE_AFTER_S or not self._entries:
            return False
        self._swept_at = now
        addresses = list(self._entries)
        blobs = self.mem.read_many([(a, self._fp_hi) for a in addresses])
        evicted = False
        for address, raw in zip(addresses, blobs):
            entry = self._entries[address]
            if raw is None or self._fingerprint(raw) != entry.fingerprint:
                del self._entries[address]
                evicted = True
        return evicted

    def __len__(self) -> int:
        return len(self._entries)
