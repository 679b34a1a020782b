"""The sampler: a background thread that takes samples on a Poisson schedule.

    with Sampler(pid, rate=100, duration=10) as sampler:
        for sample in sampler:
            ...

Sampling and processing run on separate threads joined by a queue: the sampling thread only
reads stacks and appends; consumers iterate, or register collectors that a processing thread
calls, in batches (see `_Handoff`). A failed read is recorded in the sample, never raised;
the target exiting ends sampling with everything collected kept. When a sample takes too
long to repeat at the asked rate, the effective rate is lowered (and raised again when it
can), each change recorded as a RateChange saying why; lateness from a busy machine is
counted, not acted on.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..reader import ReaderError, StackReader
from ..reader.process import process_is_gone
from .collector import Collector, CollectorLike, as_collector
from .modes import mode_filters, mode_of
from .sample import ProcessLabel, RateChange, Sample, SampleError, Trace
from .spy import DEFAULT_START_TIMEOUT, ProcessSpy, ReaderFactory, attach, command_label
from .timer import DEFAULT_RATE, MAX_RATE, PoissonTimer, check_rate

if TYPE_CHECKING:
    from .children import ChildWatcher


# Load adaptation. Only the sampler's own cost lowers the rate: a sample that takes most of
# its period cannot be repeated at that rate. Lateness from not being scheduled in time (a
# busy machine) is counted and reported, not acted on: a lower rate would not make the
# scheduler run us sooner, it would only throw samples away.
ADAPT_WINDOW = 16  # a window closes after this many measured samples (COST_EVERY) ...
ADAPT_WINDOW_SECONDS = 0.5  # ... or after this long with at least ADAPT_MIN_SAMPLES in it
ADAPT_MIN_SAMPLES = 4
MAX_SAMPLER_LOAD = 0.8  # lower the rate when a sample takes more than this share of a period
TARGET_SAMPLER_LOAD = 0.6  # ... to the rate at which it takes this share
RECOVER_BELOW = 0.4  # raise it again when a sample would take under this share at the higher rate
RECOVER_WINDOWS = 2  # calm windows in a row before raising
MIN_RATE = 1.0
COST_EVERY = 4  # measure a sample's CPU and run-queue wait on one sample in this many
HANDOFF_INTERVAL = 0.02  # seconds between two batches handed to the processing thread
PR_SET_TIMERSLACK = 29


def _tighten_timer_slack() -> None:
    """Ask Linux to wake this thread within 1 ns of its deadline rather than the default
    50 µs of slack: it halves how late a sleeping sampler wakes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # libc is loaded: no ctypes.util (20 ms)
        libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(1), 0, 0, 0)
    except (OSError, AttributeError):
        pass


class _SchedClock:
    """The sampling thread's CPU time, and how long this process's threads waited for a CPU.

    The wait is the run-queue delay of /proc/.../schedstat, each file kept open (a pread is
    ~2 µs). Every thread's wait counts, not just the sampler's: a sample that waits for the
    GIL held by one of our threads the machine did not run waited for the machine. Where the
    kernel has no schedstat, waiting reads as 0.
    """

    def __init__(self, waits: bool = True) -> None:
        # waits=False: CPU time only (in-process, where a pread that gives up the GIL costs
        # the sampler a switch interval to get it back).
        self._own = self._open("/proc/thread-self/schedstat") if waits else None
        self._others: list[int] = []
        self._own_tid = threading.get_native_id()
        self.refresh()

    @staticmethod
    def _open(path: str) -> int | None:
        try:
            return os.open(path, os.O_RDONLY)
        except OSError:
            return None

    def refresh(self) -> None:
        """Follow the process's threads as they come and go (called once per window)."""
        self._close_others()
        if self._own is None:
            return
        try:
            tids = [t for t in os.listdir("/proc/self/task") if int(t) != self._own_tid]
        except OSError:
            tids = []
        self._others = [
            fd for t in tids if (fd := self._open(f"/proc/self/task/{t}/schedstat")) is not None
        ]

    def read(self) -> tuple[float, float]:
        """(CPU seconds of this thread, seconds all our threads waited for a CPU)."""
        cpu = time.thread_time()  # schedstat's CPU time is only updated at ticks
        waited = 0.0
        for fd in (self._own, *self._others):
            if fd is not None:
                with contextlib.suppress(OSError, ValueError):  # a thread ended
                    waited += _run_delay(fd)
        return cpu, waited

    def _close_others(self) -> None:
        for fd in self._others:
            os.close(fd)
        self._others = []

    def close(self) -> None:
        self._close_others()
        if self._own is not None:
            os.close(self._own)
            self._own = None


def _run_delay(fd: int) -> float:
    """Seconds a thread spent runnable but not running, from its open schedstat."""
    return int(os.pread(fd, 96, 0).split()[1]) / 1e9


class _Handoff:
    """The queue between the sampling and the processing thread, emptied in batches.

    A `queue.Queue` wakes its consumer on every item: at 1 kHz that is a thousand futex
    wake-ups and GIL hand-offs a second, each of which can delay the next read. Here the
    sampling thread only appends to a deque (atomic, never blocks); the consumer takes
    everything there every HANDOFF_INTERVAL, and is woken early only at the end.
    """

    def __init__(self, maxsize: int) -> None:
        self._items: deque = deque()
        self._maxsize = maxsize
        self._closed = threading.Event()

    def put(self, item: object) -> bool:
        """Append an item; False (it is dropped) when the consumer is that far behind."""
        if len(self._items) >= self._maxsize:
            return False
        self._items.append(item)
        return True

    def close(self) -> None:
        """No more items: the consumer gets the rest, then `batches` ends."""
        self._closed.set()

    def batches(self) -> Iterator[list]:
        """Every item, in order, a batch at a time, until closed and drained."""
        items = self._items
        while True:
            closed = self._closed.wait(HANDOFF_INTERVAL)
            batch = []
            while items:
                batch.append(items.popleft())
            if batch:
                yield batch
            if closed and not items:
                return


class _AdaptWindow:
    """What one adaptation window saw: what each sample cost the sampler."""

    def __init__(self, opened: float = 0.0) -> None:
        self.opened = opened
        self.costs: list[float] = []
        self.wall = 0.0
        self.cpu = 0.0

    def add(self, cost: float, wall: float, cpu: float) -> None:
        self.costs.append(cost)
        self.wall += wall
        self.cpu += max(0.0, cpu)

    def full(self, now: float) -> bool:
        return len(self.costs) >= ADAPT_WINDOW or (
            len(self.costs) >= ADAPT_MIN_SAMPLES and now - self.opened >= ADAPT_WINDOW_SECONDS
        )

    def median_cost(self) -> float:
        costs = sorted(self.costs)  # (statistics would cost the CLI 8 ms of imports)
        middle = len(costs) // 2
        return costs[middle] if len(costs) % 2 else (costs[middle - 1] + costs[middle]) / 2

    def cpu_share(self) -> float:
        return min(1.0, self.cpu / self.wall) if self.wall > 0 else 1.0


class BaseSampler:
    """The sampling loop shared by every way of taking a sample.

    Subclasses say how to open the target (`_open`), take one sample (`_take`), tell that
    the target is gone (`_finished`) and clean up (`_close`); this class owns the schedule,
    the threads, the queue, the collectors and load adaptation.
    """

    mode = "base"
    # Whether a sample's cost is its CPU time alone: true in-process, where most of a
    # sample's wall time is waiting for the GIL the profiled code holds, not our cost.
    cost_is_cpu = False

    def __init__(
        self,
        *,
        rate: float = DEFAULT_RATE,
        duration: float | None = None,
        idle: bool = True,
        gil: bool = False,
        profile_mode: str | None = None,
        gc: bool = False,
        opcodes: bool = False,
        seed: int | None = None,
        adapt: bool = True,
        max_queue: int = 1_000_000,
    ) -> None:
        """`profile_mode` ("wall", "cpu", "gil", "exception": see modes.py) replaces the
        older `idle`/`gil` switches when given; `gc` adds `<GC>` frames while the target's
        collector runs, `opcodes` the innermost frame's instruction to every trace."""
        rate = check_rate(rate)
        if rate > MAX_RATE:
            raise ValueError(
                f"rate {rate:g} Hz is above the most the sampler takes, {MAX_RATE:g} Hz"
            )
        if duration is not None and not duration > 0:
            raise ValueError(f"duration must be positive, got {duration}")
        self.asked_rate = float(rate)
        self.duration = duration
        if profile_mode is not None:
            idle, gil = mode_filters(profile_mode)
        self.idle = idle
        self.gil = gil
        self.exception = profile_mode == "exception"
        self.profile_mode = profile_mode or mode_of(idle, gil)
        self.gc = gc
        self.opcodes = opcodes
        self.seed = seed
        self.adapt = adapt
        self.rate_changes: list[RateChange] = []
        self.samples_taken = 0
        self.dropped_stale = 0
        self.dropped_queue = 0
        self.late_behind = 0  # late because the previous sample was still being taken
        self.late_unscheduled = 0  # late because the sampler was not run in time
        self.error: BaseException | None = None  # why sampling could not start
        self.timer: PoissonTimer | None = None
        self.started_at: float | None = None  # wall-clock time.time() at start
        self.end_reason: str | None = None  # "stopped", "duration", "target exited", ...
        self._queue = _Handoff(max_queue)
        self._collectors: list[Collector] = []
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._pending_errors: list[SampleError] = []
        self._errors_lock = threading.Lock()

    # -- control -----------------------------------------------------------------------------
    def add_collector(self, collector: CollectorLike) -> None:
        """Feed `collector` (a `Collector`, or a callable taking each sample) on the
        processing thread: every sample and rate change in order, then `finish()`."""
        if self._thread is not None:
            raise RuntimeError("add collectors before starting the sampler")
        self._collectors.append(as_collector(collector))

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
        for batch in self._queue.batches():
            for item in batch:
                if type(item) is Sample:  # rate changes are in `rate_changes` too
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
            "profile_mode": self.profile_mode,
            "gc": self.gc,
            "opcodes": self.opcodes,
            "samples_taken": self.samples_taken,
            "dropped_stale": self.dropped_stale,
            "dropped_queue": self.dropped_queue,
            "late_behind": self.late_behind,
            "late_unscheduled": self.late_unscheduled,
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
            self._queue.close()

    def _loop(self) -> None:
        timer = self.timer = PoissonTimer(self.asked_rate, seed=self.seed, stop_event=self._stop)
        clock = _SchedClock(waits=not self.cost_is_cpu)
        try:
            self._schedule(timer, clock)
        finally:
            clock.close()

    def _schedule(self, timer: PoissonTimer, clock: _SchedClock) -> None:
        window = _AdaptWindow()
        calm_windows = 0
        busy_until = 0.0  # when the previous sample would have ended, had it run unhindered
        late_cause: str | None = None  # why the previous sample was late
        own_share = 1.0  # of a sample's wall time, the share last measured to be its own cost
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
            # Two clock readings cost ~15-60 µs (syscalls): measured on one sample in
            # COST_EVERY (and the first two), the others' cost estimated from the last share.
            measured = self.samples_taken < 2 or self.samples_taken % COST_EVERY == 0
            usage_began = clock.read() if measured else None
            if tick.late is None:
                late_cause = None
            else:
                # Late because time went by that was not ours (the machine ran something
                # else), or because the previous sample's own cost ran past this deadline.
                # A backlog keeps the cause that started it: after one long wait for a CPU,
                # the next few deadlines are due while we catch up.
                if busy_until <= tick.deadline:
                    late_cause = "unscheduled"
                elif late_cause is None:
                    late_cause = "behind"
                if late_cause == "behind":
                    self.late_behind += 1
                else:
                    self.late_unscheduled += 1
            traces: list[Trace] = []
            errors: list[SampleError] = []
            self._take(traces, errors)
            if self._pending_errors:
                with self._errors_lock:
                    errors.extend(self._pending_errors)
                    self._pending_errors.clear()
            self.samples_taken += 1
            if not self._queue.put(Sample(began, traces, tick.late, errors)):
                self.dropped_queue += 1
            if self._finished():
                self.end_reason = "target exited"
                return
            ended = timer.elapsed()
            wall = ended - began
            if usage_began is not None:
                cpu, unscheduled = (
                    after - before for after, before in zip(clock.read(), usage_began)
                )
                # What the sample cost us: its wall time less the time we waited for a CPU.
                # A read that waits (for a paused thread, for our own busy processing
                # thread) is as unrepeatable as one that computes; time the machine gave
                # others is not ours. (A thread that ended drops out of `unscheduled`.)
                cost = cpu if self.cost_is_cpu else max(cpu, wall - max(0.0, unscheduled))
                own_share = min(1.0, cost / wall) if wall > 0 else 1.0
            else:
                cost = wall * own_share
            busy_until = began + cost
            if self.samples_taken == 1:
                # The first read decodes every code object on the stacks (tens of ms on a
                # deep one): start the schedule after it instead of skipping what it overran.
                timer.restart_schedule()
                continue
            if self.adapt and usage_began is not None:
                window.add(cost, wall, cpu)
                if window.full(ended):
                    calm_windows = self._adapt(timer, window, calm_windows)
                    window = _AdaptWindow(ended)
                    clock.refresh()

    def _adapt(self, timer: PoissonTimer, window: _AdaptWindow, calm_windows: int) -> int:
        """Lower the rate when samples take too long to repeat at it; recover when calm.

        Returns the number of calm windows in a row (the recovery counter).
        """
        period = 1.0 / timer.rate
        cost = window.median_cost()
        now = timer.elapsed()
        if cost > MAX_SAMPLER_LOAD * period:
            new_rate = max(MIN_RATE, TARGET_SAMPLER_LOAD / cost)
            if new_rate < timer.rate * 0.95:
                reason = (
                    f"the sampler could not keep up: a sample takes {cost * 1e6:.0f} µs "
                    f"({window.cpu_share():.0%} of it CPU), {cost / period:.0%} of the "
                    f"{period * 1e6:.0f} µs period"
                )
                self._note_rate_change(RateChange(now, timer.rate, new_rate, reason))
                timer.set_rate(new_rate)
                return 0
        if timer.rate >= self.asked_rate:
            return 0
        higher = min(self.asked_rate, timer.rate * 2)
        if cost >= RECOVER_BELOW / higher:
            return 0
        if calm_windows + 1 < RECOVER_WINDOWS:
            return calm_windows + 1
        reason = f"a sample takes {cost * 1e6:.0f} µs again: the sampler keeps up"
        self._note_rate_change(RateChange(now, timer.rate, higher, reason))
        timer.set_rate(higher)
        return 0

    def _note_rate_change(self, change: RateChange) -> None:
        """Keep the change, and queue it for the collectors between the samples around it."""
        self.rate_changes.append(change)
        if self._collectors:
            self._queue.put(change)  # dropped only when full: still in rate_changes

    # -- the processing thread ---------------------------------------------------------------
    def _dispatch(self) -> None:
        collectors = self._collectors
        adds = [c.add for c in collectors]
        for batch in self._queue.batches():
            for item in batch:
                if type(item) is Sample:
                    for add in adds:
                        try:
                            add(item)
                        except Exception as exc:  # a broken consumer must not stall others
                            self._note_error(SampleError(0, None, "CollectorError", repr(exc)))
                else:
                    for collector in collectors:
                        self._deliver(collector.add_rate_change, item)
        for collector in collectors:
            self._deliver(collector.finish)

    def _deliver(self, method, *args) -> None:
        try:
            method(*args)
        except Exception as exc:
            self._note_error(SampleError(0, None, "CollectorError", repr(exc)))


def _async_warning(spies: list[ProcessSpy]) -> str | None:
    """What --async could not do: each process it could not read, or, when no process ran
    an event loop while sampled, that."""
    notes = [spy.async_warning for spy in spies]
    unsupported = [n for n, spy in zip(notes, spies) if n and spy.tasks is None]
    if unsupported:
        return "; ".join(unsupported)
    if spies and all(notes):
        return "; ".join(n for n in notes if n)
    return None


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
        async_tasks: str | None = None,
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
        if reader_factory is StackReader:
            reader_factory = functools.partial(
                StackReader,
                pause_when_torn=not nonblocking,
                exceptions=self.exception,
                gc=self.gc,
                opcodes=self.opcodes,
            )
        self.reader_factory = reader_factory
        self.async_tasks = async_tasks  # --async: "running", "all" or None
        self.process = process  # set when the sampler launched the target itself
        self.version: tuple[int, int, int] | None = None
        self._root: ProcessSpy | None = None
        self._watcher: ChildWatcher | None = None

    def _filters(self) -> dict:
        return {
            "idle": self.idle,
            "gil": self.gil,
            "exception": self.exception,
            "async_tasks": self.async_tasks,
        }

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
        if self.async_tasks:
            meta["async_tasks"] = self.async_tasks
            meta["async_warning"] = _async_warning(spies)
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
            self._root = ProcessSpy(reader, **self._filters())
        if self.subprocesses:
            root_label = (
                self._root.label if self._root else ProcessLabel(self.pid, command_label(self.pid))
            )
            from .children import ChildWatcher  # psutil: only with children (24 ms)

            self._watcher = ChildWatcher(
                self.pid,
                (root_label,),
                lambda reader, parents: ProcessSpy(reader, chain=parents, **self._filters()),
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
