"""One snapshot's memory traffic: prefetch last snapshot's regions in one scatter read.

Stacks change little between samples, so the regions a snapshot needed (thread states, the
used part of each data-stack chunk, frames outside chunks) are a good guess for the next one.
Reading them all in one `process_vm_readv` makes a snapshot cost about one syscall, and makes
the copy nearly atomic, which keeps torn stacks rare. Nearby regions are merged into one span
first: the kernel's cost is per iovec and per page, not per byte. A second copy, to check
against, is taken only of the stacks that moved since the last snapshot (`copy_again`): a
stack whose every byte is as it was needs no walk and no check.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from .codes import CodeProof
from .memory import ProcessMemory, Scatter

CHUNK_SLACK = 1024  # read this much past a chunk's used top, for the next sample to grow into
MERGE_GAP = 512  # regions closer than this are read as one span
_ALIGN = 256
MAX_AGAIN = 16  # second-copy scatter reads kept prepared per plan


@dataclass
class Plan:
    """Regions to prefetch, merged into spans; `where` maps a region to its place in the read."""

    regions: dict[int, int]
    lead: frozenset[int]
    spans: list[tuple[int, int]]
    where: dict[int, tuple[int, int]]  # region address -> (offset in the buffer, size)
    span_ends: list[int]  # cumulative buffer offset at the end of each span
    # The spans as a prepared scatter read, built on first use and run for every copy.
    scatter: Scatter | None = field(default=None, compare=False, repr=False)
    # The same with a code proof's spans behind them: (the proof, that scatter read).
    with_proof: tuple[CodeProof, Scatter] | None = field(default=None, compare=False, repr=False)
    # Second copies (Fetch.copy_again) prepared by their regions: a moving stack asks for
    # the same ones snapshot after snapshot.
    again: dict[tuple[int, ...], Scatter] = field(default_factory=dict, compare=False, repr=False)

    def prepared(self, proof: CodeProof | None = None) -> Scatter:
        """The prepared scatter read of the spans, followed by `proof`'s when given."""
        if proof is None:
            if self.scatter is None:
                self.scatter = Scatter(self.spans)
            return self.scatter
        if self.with_proof is None or self.with_proof[0] is not proof:
            self.with_proof = (proof, Scatter(self.spans + proof.spans))
        return self.with_proof[1]

    @classmethod
    def build(cls, regions: dict[int, int], lead: set[int]) -> Plan:
        """Spans for `regions`, those in `lead` first (they are copied before the others).

        A region within MERGE_GAP of a lead region is copied with the lead ones, in the same
        span: each span costs the kernel about as much as a page of bytes (3.12's current
        frame slot and entry frame share a few bytes of each thread's C stack)."""
        spans: list[tuple[int, int]] = []
        members: list[list[tuple[int, int]]] = []
        leading = sorted((a, s) for a, s in regions.items() if a in lead)
        starts = [a for a, _ in leading]
        first: set[int] = set(starts)
        for address, size in regions.items():
            if address in first:
                continue
            i = bisect.bisect_right(starts, address) - 1
            if (i >= 0 and address <= starts[i] + leading[i][1] + MERGE_GAP) or (
                i + 1 < len(starts) and starts[i + 1] <= address + size + MERGE_GAP
            ):
                first.add(address)
        for group_lead in (True, False):
            group_start = len(spans)
            for address, size in sorted(regions.items()):
                if (address in first) != group_lead:
                    continue
                if len(spans) > group_start:
                    start, length = spans[-1]
                    if address <= start + length + MERGE_GAP:
                        spans[-1] = (start, max(length, address + size - start))
                        members[-1].append((address, size))
                        continue
                spans.append((address, size))
                members.append([(address, size)])
        where: dict[int, tuple[int, int]] = {}
        span_ends: list[int] = []
        base = 0
        for (start, length), group in zip(spans, members):
            for address, size in group:
                where[address] = (base + address - start, size)
            base += length
            span_ends.append(base)
        return cls(dict(regions), frozenset(lead), spans, where, span_ends)


class Fetch:
    """Memory for one snapshot: served from the prefetch where possible, read otherwise.

    `get` returns (buffer, offset) so callers unpack in place, without copying regions out.
    """

    def __init__(
        self, mem: ProcessMemory, plan: Plan | None, proof: CodeProof | None = None
    ) -> None:
        """`proof`: code objects to re-check, read right behind the planned spans in the
        same syscall (so after every frame that points to them): `proven` holds them when
        their bytes came back as decoded."""
        self.mem = mem
        self.proven: frozenset[int] = frozenset()
        self.raw = b""
        self.where: dict[int, tuple[int, int]] = {}
        self.complete = False  # every planned region arrived
        self.extra: dict[int, bytes] = {}
        self._planned: dict[int, int] = {} if plan is None else plan.regions
        self._planned_lead: frozenset[int] = frozenset() if plan is None else plan.lead
        self._again = None if plan is None else plan.again
        # A second copy of the regions of the stacks that moved since the last snapshot,
        # taken by `copy_again` right after the first copy: what their walks use is compared
        # against it (see StackReader). A second call, not one call listing the regions twice:
        # the gap between them is what lets a stack that keeps moving show up as a difference.
        self.raw_again = b""
        self.where_again: dict[int, tuple[int, int]] = {}
        if plan is not None and plan.spans:
            scatter = plan.prepared(proof)
            total = scatter.total
            if proof is None:
                self.raw, got = mem.read_scatter(scatter)
            else:
                total -= proof.size
                self.raw, tail, got = mem.read_scatter_split(scatter, total)
                if got >= scatter.total and proof.holds(tail):
                    self.proven = proof.codes
            if got >= total:
                self.where = plan.where
                self.complete = True
            else:
                # Keep only regions whose spans arrived whole.
                complete = 0
                while complete < len(plan.span_ends) and plan.span_ends[complete] <= got:
                    complete += 1
                limit = plan.span_ends[complete - 1] if complete else 0
                self.where = {a: w for a, w in plan.where.items() if w[0] + w[1] <= limit}
        self.next_regions: dict[int, int] = {}
        self.lead: set[int] = set()

    def get(self, address: int, size: int) -> tuple[bytes, int]:
        """(buffer, offset) holding `size` bytes at `address`; reads them if not prefetched."""
        plan = self.next_regions
        if plan.get(address, 0) < size:
            plan[address] = size
        hit = self.where.get(address)
        if hit is not None and hit[1] >= size:
            return self.raw, hit[0]
        blob = self.extra.get(address)
        if blob is None or len(blob) < size:
            blob = self.mem.read(address, size)
            self.extra[address] = blob
        return blob, 0

    def copy_again(self, addresses: list[int]) -> None:
        """The second copy: these prefetched regions (their planned size) read once more."""
        where, planned = self.where, self._planned
        wanted = tuple(a for a in dict.fromkeys(addresses) if a in where)
        if not wanted:
            return
        regions = [(a, planned[a]) for a in wanted]
        prepared = self._again
        scatter = prepared.get(wanted) if prepared is not None else None
        if scatter is None:
            scatter = Scatter(regions)
            if prepared is not None:
                if len(prepared) >= MAX_AGAIN:
                    prepared.clear()
                prepared[wanted] = scatter
        self.raw_again, got = self.mem.read_scatter(scatter)
        offset = 0
        for address, size in regions:
            if offset + size > got:
                break
            self.where_again[address] = (offset, size)
            offset += size

    def again_holds(
        self, address: int, size: int, spots: tuple[tuple[int, bytes], ...]
    ) -> bool | None:
        """Whether the second copy of the region holds every (offset, bytes) spot; None if
        the region was not in that copy. Compared in place (a memcmp a spot, no copy)."""
        hit = self.where_again.get(address)
        if hit is None or hit[1] < size:
            return None
        raw, base = self.raw_again, hit[0]
        return all(raw.startswith(value, base + offset) for offset, value in spots)

    def planned_now(self, addresses: list[int]) -> tuple[dict[int, int], tuple[int, ...]]:
        """How the next snapshot will prefetch these regions: {address: size}, and which of
        them lead: what the reader plans again for a stack that holds still."""
        plan, lead = self.next_regions, self.lead
        return (
            {a: plan[a] for a in addresses if a in plan},
            tuple(a for a in addresses if a in lead),
        )

    def plan_leads(self, addresses: list[int], size: int) -> None:
        """Plan regions of one size that lead the next prefetch (the thread states)."""
        self.next_regions.update(dict.fromkeys(addresses, size))
        self.lead.update(addresses)

    def first_copy(self, address: int, size: int) -> bytes | None:
        """The region's bytes as this snapshot used them (prefetched or read on demand)."""
        hit = self.where.get(address)
        if hit is not None and hit[1] >= size:
            return self.raw[hit[0] : hit[0] + size]
        blob = self.extra.get(address)
        return None if blob is None or len(blob) < size else blob[:size]

    def get_lead(self, address: int, size: int) -> tuple[bytes, int]:
        """Like get, for a region the next prefetch copies before all others: the thread
        states (and 3.11/3.12's current-frame slots) that locate each stack lead both copies,
        with the stacks they locate right behind them.
        """
        self.lead.add(address)
        return self.get(address, size)

    def get_bytes(self, address: int, size: int) -> bytes:
        buf, offset = self.get(address, size)
        return buf[offset : offset + size] if (offset or len(buf) != size) else buf

    def note(self, addresses: list[int], size: int) -> None:
        """Plan regions that a walker served straight from `where` (its fast path)."""
        plan = self.next_regions
        for address in addresses:
            if plan.get(address, 0) < size:
                plan[address] = size

    def get_growing(self, address: int, size: int, limit: int) -> bytes:
        """`size` bytes of a region that grows between samples (a data-stack chunk).

        Reads only the part the prefetch missed, and plans slack for the next sample, up to
        `limit` bytes (the chunk's real size, so the prefetch never runs past its mapping).
        """
        hit = self.where.get(address)
        if hit is not None:
            offset, have = hit
            if have >= size:
                blob = self.raw[offset : offset + size]
            else:
                tail = self.mem.read(address + have, size - have)
                blob = self.raw[offset : offset + have] + tail
        else:
            blob = self.mem.read(address, size)
        if hit is None or hit[1] < size:
            self.extra[address] = blob
        planned = min(limit, (size + CHUNK_SLACK + _ALIGN - 1) // _ALIGN * _ALIGN)
        if self.next_regions.get(address, 0) < planned:
            self.next_regions[address] = planned
        return blob

    def plan(self, previous: Plan | None) -> Plan:
        """The next snapshot's plan; the previous one is reused when nothing changed."""
        if (
            previous is not None
            and previous.regions == self.next_regions
            and previous.lead == self.lead
        ):
            return previous
        return Plan.build(self.next_regions, self.lead)
