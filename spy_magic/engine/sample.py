"""What the sampling engine produces: samples of every sampled thread at one moment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..reader import Frame


@dataclass(frozen=True)
class ProcessLabel:
    """A process as a trace names it: pid plus a short command line."""

    pid: int
    command: str

    def __str__(self) -> str:
        return f"{self.command} (pid {self.pid})"


@dataclass(frozen=True)
class Trace:
    """One thread's stack in one sample. Frames are innermost first."""

    pid: int
    thread_id: int
    native_id: int | None
    thread_name: str | None
    gil: bool
    idle: bool | None
    frames: tuple[Frame, ...]
    # The chain of processes from the sampled root down to `pid` (root first); a single
    # entry unless child processes are sampled.
    processes: tuple[ProcessLabel, ...] = ()
    # The innermost frame's instruction ("LOAD_ATTR_INSTANCE_VALUE"), when sampled with
    # opcodes; None otherwise.
    opcode: str | None = None


@dataclass(frozen=True)
class SampleError:
    """A failure met while taking a sample: counted, kept, never fatal."""

    pid: int
    thread_id: int | None
    kind: str  # the ReaderError class name, e.g. "TornStack", "AccessDenied"
    message: str


class Sample:
    """The snapshot of one moment.

    `timestamp` is seconds since the sampler started (monotonic clock); `late` is None when
    the sample was taken on schedule, else how many seconds after its deadline it was taken.

    A plain slotted class (not a dataclass) because a long recording keeps one per sample:
    slots and one shared empty `errors` keep it under 100 bytes apart from its traces,
    which the engine shares between samples of the same stack.
    """

    __slots__ = ("errors", "late", "timestamp", "traces")

    def __init__(
        self,
        timestamp: float,
        traces: list[Trace] | None = None,
        late: float | None = None,
        errors: Sequence[SampleError] | None = None,
    ) -> None:
        self.timestamp = timestamp
        self.traces: list[Trace] = [] if traces is None else traces
        self.late = late
        self.errors: Sequence[SampleError] = errors if errors else _NO_ERRORS

    def _key(self) -> tuple:
        return (self.timestamp, self.traces, self.late, list(self.errors))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sample):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return (
            f"Sample(timestamp={self.timestamp!r}, traces={self.traces!r}, "
            f"late={self.late!r}, errors={list(self.errors)!r})"
        )


_NO_ERRORS: tuple[SampleError, ...] = ()


@dataclass(frozen=True)
class RateChange:
    """The sampler changed its effective rate (load adaptation), and why."""

    timestamp: float
    old_rate: float
    new_rate: float
    reason: str
