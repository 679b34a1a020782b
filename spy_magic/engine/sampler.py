"""The sampler: a background thread that takes samples on a Poisson schedule.

    with Sampler(pid, rate=100, duration=10) as sampler:
        for sample in sampler:
            ...

Sampling and processing run on separate threads joined by a queue: the sampling thread only
reads stacks and enqueues; consumers iterate, or register collectors that a dispatch thread
calls. A failed read is recorded in the sample, never raised; the target exiting ends
sampling with everything collected kept. When sampling cannot keep up, the effective rate is
lowered (and raised again when it can), each change recorded as a RateChange.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import queue
import statistics
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Callable

from ..reader import ReaderError, StackReader
from ..reader.process import process_is_gone
from .children import ChildWatcher
from .sample import ProcessLabel, RateChange, Sample, SampleError, Trace
from .spy import DEFAULT_START_TIMEOUT, ProcessSpy, ReaderFactory, attach, command_label
from .timer import DEFAULT_RATE, MAX_RATE, PoissonTimer, check_rate

Collector = Callable[[Sample], None]
_END = object()

# Load adaptation: judged over windows of this many samples.
ADAPT_WINDOW = 64
MAX_SAMPLER_CPU = 0.5  # a sample may cost at most this share of its mean period
MIN_RATE = 1.0
RECOVER_BELOW = 0.35  # raise the rate again when a sample costs under this share of its period
PR_SET_TIMERSLACK = 29


def _tighten_timer_slack() -> None:
    """Ask Linux to wake this thread within 1 ns of its deadline rather than the default
    50 µs of slack: it halves how late a sleeping sampler wakes."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(1), 0, 0, 0)
    except (OSError, AttributeError):
        pass


class BaseSampler:
    """The sampling loop shared by every way of taking a sample.

    Subclasses say how to open the target (`_open`), take one sample (`_take`), tell that
    the target is gone (`_finished`) and clean up (`_close`); this class owns the schedule,
    the threads, the queue, the collectors and load adaptation.
    """

    mode = "base"

    def __init__(
        self,
        *,
        rate: float = DEFAULT_RATE,
        duration: float | None = None,
        idle: bool = True,
        gil: bool = False,
        seed: int | None = None,
        adapt: bool = True,
        max_queue: int = 1_000_000,
    ) -> None:
        rate = check_rate(rate)
        if rate > MAX_RATE:
            raise ValueError(
                f"rate {rate:g} Hz is above the most the sampler takes, {MAX_RATE:g} Hz"
            )
        if duration is not None and not duration > 0:
            raise ValueError(f"duration must be positive, got {duration}")
        self.asked_rate = float(rate)
        self.duration = duration
        self.idle = idle
        self.gil = gil
        self.seed = seed
        self.adapt = adapt
        self.rate_changes: list[RateChange] = []
        self.samples_taken = 0
        self.dropped_stale = 0
        self.dropped_queue = 0
        self.error: BaseException | None = None  # why sampling could not start
        self.timer: PoissonTimer | None = None
        self.started_at: float | None = None  # wall-clock time.time() at start
        self.end_reason: str | None = None  # "stopped", "duration", "target exited", ...
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._collectors: list[Collector] = []
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._pending_errors: list[SampleError] = []
        self._errors_lock = threading.Lock()

    # -- control -----------------------------------------------------------------------------
    def add_collector(self, collector: Collector) -> None:
        """Call `collector(sample)` for every sample, on the processing thread."""
        if self._thread is not None:
            raise RuntimeError("add collectors before starting the sampler")
        self._collectors.append(collector)

    def start(self) -> BaseSampler:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="spy_magic-sampler", daemon=True)
        self._thread.start()
        if self._collectors:
            self._dispatcher = threading.Thread(
                target=self._dispatch, name="spy_magic-processing", daemon=True
            )
            self._dispatcher.start()
        return self

    def wait_started(self, timeout: float | None = None) -> bool:
        """Block until sampling began (or failed to: see `error`)."""
        return self._started.wait(timeout)

    def stop(self) -> None:
        """Stop sampling; samples already taken are still delivered."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        for thread in (self._thread, self._dispatcher):
            if thread is not None:
                thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def rate(self) -> float:
        """The effective rate now (lower than asked when adaptation stepped in)."""
        return self.timer.rate if self.timer is not None else self.asked_rate

    def __enter__(self) -> BaseSampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.join(timeout=10)

    def __iter__(self) -> Iterator[Sample]:
        if self._collectors:
            raise RuntimeError("a sampler with collectors cannot also be iterated")
        self.start()
        while True:
            item = self._queue.get()
            if item is _END:
                return
            yield item

    def metadata(self) -> dict:
        """What a profile should record about how it was sampled."""
        return {
            "mode": self.mode,
            "rate": self.asked_rate,
            "effective_rate": self.rate,
            "duration_limit": self.duration,
            "idle": self.idle,
            "gil": self.gil,
            "samples_taken": self.samples_taken,
            "dropped_stale": self.dropped_stale,
            "dropped_queue": self.dropped_queue,
            "started_at": self.started_at,
            "end_reason": self.end_reason,
        }

    # -- hooks -------------------------------------------------------------------------------
    def _open(self) -> None:
        """Get ready to sample; raise ReaderError when the target cannot be sampled."""

    def _take(self, traces: list[Trace], errors: list[SampleError]) -> None:
        raise NotImplementedError

    def _finished(self) -> bool:
        """True once the target is gone and sampling should end."""
        return False

    def _close(self) -> None:
        """Release what `_open` acquired (runs even when `_open` failed)."""

    # -- the sampling thread -----------------------------------------------------------------
    def _note_error(self, error: SampleError) -> None:
        with self._errors_lock:
            self._pending_errors.append(error)

    def _run(self) -> None:
        _tighten_timer_slack()
        try:
            try:
                self._open()
            except ReaderError as exc:
                self.error = exc
                self.end_reason = "could not start"
                return
            self.started_at = time.time()
            self._started.set()
            self._loop()
        finally:
            self._close()
            self._started.set()
            self._queue.put(_END)

    def _loop(self) -> None:
        timer = self.timer = PoissonTimer(self.asked_rate, seed=self.seed, stop_event=self._stop)
        costs: deque[float] = deque(maxlen=ADAPT_WINDOW)
        lates: deque[float] = deque(maxlen=ADAPT_WINDOW)
        calm_windows = 0
        while True:
            if self.duration is not None and timer.elapsed() >= self.duration:
                self.end_reason = "duration"
                return
            tick = timer.wait(end=self.duration)
            if tick is None:
                self.end_reason = "stopped" if self._stop.is_set() else "duration"
                return
            self.dropped_stale += tick.skipped
            began = timer.elapsed()
            cpu_began = time.thread_time()
            traces: list[Trace] = []
            errors: list[SampleError] = []
            self._take(traces, errors)
            if self._pending_errors:
                with self._errors_lock:
                    errors.extend(self._pending_errors)
                    self._pending_errors.clear()
            self.samples_taken += 1
            try:
                self._queue.put_nowait(Sample(began, traces, tick.late, errors))
            except queue.Full:
                self.dropped_queue += 1
            if self._finished():
                self.end_reason = "target exited"
                return
            if self.adapt:
                # CPU time, not wall time: preemption and other threads' GC pauses are not
                # what a sample costs.
                costs.append(time.thread_time() - cpu_began)
                lates.append(tick.late or 0.0)
                if len(costs) == ADAPT_WINDOW:
                    calm_windows = self._adapt(timer, costs, lates, calm_windows)
                    costs.clear()
                    lates.clear()

    def _adapt(self, timer: PoissonTimer, costs: deque, lates: deque, calm_windows: int) -> int:
        """Lower the rate when samples cost too much or lateness piles up; recover slowly.

        Returns the number of calm windows in a row (the recovery counter).
        """
        period = 1.0 / timer.rate
        cost = statistics.median(costs)
        late_share = sum(1 for x in lates if x > period) / len(lates)
        now = timer.elapsed()
        new_rate = None
        reason = ""
        if cost > MAX_SAMPLER_CPU * period:
            new_rate = max(MIN_RATE, MAX_SAMPLER_CPU / cost)
            reason = (
                f"a sample costs {cost * 1e6:.0f} µs, over half of the {period * 1e6:.0f} µs period"
            )
        elif late_share > 0.5:
            new_rate = max(MIN_RATE, timer.rate / 2)
            reason = f"{late_share:.0%} of recent samples were over a period late"
        if new_rate is not None and new_rate < timer.rate * 0.95:
            self.rate_changes.append(RateChange(now, timer.rate, new_rate, reason))
            timer.set_rate(new_rate)
            return 0
        calm = late_share < 0.05 and cost < RECOVER_BELOW * period
        if timer.rate >= self.asked_rate or not calm:
            return 0
        if calm_windows + 1 < 3:
            return calm_windows + 1
        new_rate = min(self.asked_rate, timer.rate * 1.5)
        self.rate_changes.append(RateChange(now, timer.rate, new_rate, "sampling keeps up again"))
        timer.set_rate(new_rate)
        return 0

    # -- the processing thread ---------------------------------------------------------------
    def _dispatch(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            for collector in self._collectors:
                try:
                    collector(item)
                except Exception as exc:  # a broken consumer must not stall the others
                    self._note_error(SampleError(0, None, "CollectorError", repr(exc)))


class Sampler(BaseSampler):
    """Samples a process (and optionally its Python children) from outside until stopped."""

    mode = "external"

    def __init__(
        self,
        pid: int,
        *,
        subprocesses: bool = False,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        nonblocking: bool = False,
        reader_factory: ReaderFactory = StackReader,
        process: subprocess.Popen | None = None,
        **options,
    ) -> None:
        super().__init__(**options)
        self.pid = pid
        self.subprocesses = subprocesses
        self.start_timeout = start_timeout
        # Non-blocking: never pause the target, not even for a stack that tears on every
        # copy (those samples are then dropped as TornStack). By default such a read is
        # taken once more with the target's threads paused for its few tens of µs.
        self.nonblocking = nonblocking
        if nonblocking and reader_factory is StackReader:
            reader_factory = functools.partial(StackReader, pause_when_torn=False)
        self.reader_factory = reader_factory
        self.process = process  # set when the sampler launched the target itself
        self.version: tuple[int, int, int] | None = None
        self._root: ProcessSpy | None = None
        self._watcher: ChildWatcher | None = None

    @classmethod
    def launch(cls, argv: Sequence[str], **options) -> Sampler:
        """Start `argv` as a child process and sample it from its first moments."""
        process = subprocess.Popen(list(argv))
        return cls(process.pid, process=process, **options)

    def metadata(self) -> dict:
        meta = super().metadata()
        meta.update(pid=self.pid, subprocesses=self.subprocesses, nonblocking=self.nonblocking)
        spies = [self._root] if self._root is not None else []
        if self._watcher is not None:
            spies += self._watcher.spies()
        # Of the processes still sampled (a child that exited took its count with it).
        meta["paused_reads"] = sum(getattr(spy.reader, "paused_reads", 0) for spy in spies)
        pause_errors = [e for spy in spies if (e := getattr(spy.reader, "pause_error", None))]
        if pause_errors:
            meta["pause_error"] = pause_errors[0]
        meta["python_version"] = ".".join(map(str, self.version)) if self.version else None
        return meta

    def _open(self) -> None:
        try:
            reader = attach(
                self.pid,
                timeout=self.start_timeout,
                reader_factory=self.reader_factory,
                stop=self._stop.is_set,
            )
        except ReaderError as exc:
            # With children sampled, the root may be a launcher (a shell, a non-Python
            # supervisor): sample what runs below it.
            if not (self.subprocesses and type(exc).__name__ in ("NotPython", "NotReady")):
                raise
        else:
            self.version = reader.version
            self._root = ProcessSpy(reader, idle=self.idle, gil=self.gil)
        if self.subprocesses:
            root_label = (
                self._root.label if self._root else ProcessLabel(self.pid, command_label(self.pid))
            )
            self._watcher = ChildWatcher(
                self.pid,
                (root_label,),
                lambda reader, parents: ProcessSpy(
                    reader, chain=parents, idle=self.idle, gil=self.gil
                ),
                reader_factory=self.reader_factory,
                start_timeout=self.start_timeout,
                on_error=self._note_error,
            )
            try:
                self._watcher.start()
            except Exception as exc:  # psutil: the root vanished already
                self._note_error(SampleError(self.pid, None, type(exc).__name__, str(exc)))

    def _take(self, traces: list[Trace], errors: list[SampleError]) -> None:
        if self._root is not None:
            self._root.sample(traces, errors)
        if self._watcher is not None:
            for spy in self._watcher.spies():
                spy.sample(traces, errors)
                if spy.exited:
                    self._watcher.forget(spy)

    def _finished(self) -> bool:
        if self._root is not None:
            return self._root.exited
        return process_is_gone(self.pid)

    def _close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self._root is not None:
            self._root.close()
