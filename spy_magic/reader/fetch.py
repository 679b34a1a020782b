"""One snapshot's memory traffic: prefetch last snapshot's regions in one scatter read.

Stacks change little between samples, so the regions a snapshot needed (thread states, the
used part of each data-stack chunk, frames outside chunks) are a good guess for the next one.
Reading them all in one `process_vm_readv` makes a snapshot cost about one syscall, and makes
the copy nearly atomic, which keeps torn stacks rare.
"""

from __future__ import annotations

from .memory import ProcessMemory

CHUNK_SLACK = 1024  # read this much past a chunk's used top, for the next sample to grow into
_ALIGN = 256


class Fetch:
    """Memory for one snapshot: served from the prefetch where possible, read otherwise."""

    def __init__(self, mem: ProcessMemory, plan: list[tuple[int, int]]) -> None:
        self.mem = mem
        self.data: dict[int, bytes] = {}
        if plan:
            for (address, _size), blob in zip(plan, mem.read_many(plan)):
                if blob is not None:
                    self.data[address] = blob
        self.next_plan: dict[int, int] = {}

    def get(self, address: int, size: int) -> bytes:
        """`size` bytes at `address` (raises MemoryReadError/ProcessExited when unreadable)."""
        blob = self.data.get(address)
        if blob is None or len(blob) < size:
            blob = self.mem.read(address, size)
            self.data[address] = blob
        if self.next_plan.get(address, 0) < size:
            self.next_plan[address] = size
        return blob

    def get_growing(self, address: int, size: int, limit: int) -> bytes:
        """Like get, for a region that grows between samples (a data-stack chunk).

        Reads only the part the prefetch missed, and plans slack for the next sample, up to
        `limit` bytes (the chunk's real size, so the prefetch never runs past its mapping).
        """
        blob = self.data.get(address)
        if blob is None:
            blob = self.mem.read(address, size)
        elif len(blob) < size:
            blob = blob + self.mem.read(address + len(blob), size - len(blob))
        elif len(blob) > size:
            blob = blob[:size]
        self.data[address] = blob
        planned = min(limit, (size + CHUNK_SLACK + _ALIGN - 1) // _ALIGN * _ALIGN)
        if self.next_plan.get(address, 0) < planned:
            self.next_plan[address] = planned
        return blob

    def plan(self) -> list[tuple[int, int]]:
        return list(self.next_plan.items())
