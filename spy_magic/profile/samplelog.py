"""The samples of a profile, stored column by column so a long recording stays small.

A sample is a timestamp, a lateness, its traces and (rarely) errors. Kept as objects, that
is ~200 bytes a sample: 600,000 of them (10 minutes at 1 kHz) would be over 100 MB. Here
timestamps and lateness live in float arrays, errors in a sparse dict, and each distinct
combination of Trace objects (the engine shares one Trace per repeated stack) is stored
once, so a sample costs about 24 bytes. Reading an item builds a `Sample` on the fly.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Sequence
from typing import overload

from ..engine.sample import Sample, SampleError, Trace

_INTERN_LIMIT = 200_000  # distinct trace combinations remembered; past that, stored as is
_NO_TRACES: tuple[Trace, ...] = ()


class SampleLog(Sequence[Sample]):
    """An append-only sequence of Samples. One writer, any number of readers: `len` only
    counts a sample once every column holds it."""

    def __init__(self) -> None:
        self._timestamps = array("d")
        self._lates = array("d")  # NaN: on time (Sample.late None)
        self._traces: list[tuple[Trace, ...]] = []
        self._errors: dict[int, tuple[SampleError, ...]] = {}
        self._combinations: dict[tuple[int, ...], tuple[Trace, ...]] = {}

    def append(self, sample: Sample) -> None:
        traces = sample.traces
        if not traces:
            shared = _NO_TRACES
        else:
            # Keyed by identity: the stored tuple keeps those objects (and so the ids) alive.
            key = tuple(map(id, traces))
            shared = self._combinations.get(key)
            if shared is None:
                shared = tuple(traces)
                if len(self._combinations) < _INTERN_LIMIT:
                    self._combinations[key] = shared
        index = len(self._traces)
        if sample.errors:
            self._errors[index] = tuple(sample.errors)
        self._timestamps.append(sample.timestamp)
        self._lates.append(math.nan if sample.late is None else sample.late)
        self._traces.append(shared)  # last: the sample now counts

    def __len__(self) -> int:
        return len(self._traces)

    def _build(self, index: int) -> Sample:
        late = self._lates[index]
        return Sample(
            self._timestamps[index],
            list(self._traces[index]),
            None if late != late else late,  # NaN
            list(self._errors.get(index, ())),
        )

    @overload
    def __getitem__(self, index: int) -> Sample: ...
    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...
    def __getitem__(self, index):
        n = len(self)
        if isinstance(index, slice):
            return [self._build(i) for i in range(*index.indices(n))]
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("sample index out of range")
        return self._build(index)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self._build(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SampleLog, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # mutable

    def timestamp(self, index: int) -> float:
        """One sample's timestamp without building the sample."""
        if index < 0:
            index += len(self)
        return self._timestamps[index]

    def timestamps(self) -> list[float]:
        return self._timestamps[: len(self)].tolist()

    def lates(self) -> list[float | None]:
        return [None if x != x else x for x in self._lates[: len(self)].tolist()]
