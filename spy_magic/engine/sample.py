"""What the sampling engine produces: samples of every sampled thread at one moment."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class SampleError:
    """A failure met while taking a sample: counted, kept, never fatal."""

    pid: int
    thread_id: int | None
    kind: str  # the ReaderError class name, e.g. "TornStack", "AccessDenied"
    message: str


@dataclass
class Sample:
    """The snapshot of one moment.

    `timestamp` is seconds since the sampler started (monotonic clock); `late` is None when
    the sample was taken on schedule, else how many seconds after its deadline it was taken.
    """

    timestamp: float
    traces: list[Trace] = field(default_factory=list)
    late: float | None = None
    errors: list[SampleError] = field(default_factory=list)


@dataclass(frozen=True)
class RateChange:
    """The sampler changed its effective rate (load adaptation), and why."""

    timestamp: float
    old_rate: float
    new_rate: float
    reason: str
