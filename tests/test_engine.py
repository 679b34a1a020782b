"""The sampling engine against real processes: schedule, accuracy, children, faults."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import (
    TARGETS,
    independent_worth,
    looks,
    read_line,
    reap,
    require_churn,
    require_interpreter,
    wait_until,
)

from spy_magic.demos import demo_path
from spy_magic.engine import PoissonTimer, Sampler
from spy_magic.reader import NoSuchProcess, NotPython, StackReader

PYTHON = sys.executable
# Where the engine's accuracy and child-process tests run: the test's own Python, and the
# builds whose layout differs most (skipped by name where not installed).
ENGINE_TARGETS = ["this-python", "ft-3.13t", "sid-3.14", "sid-3.15"]


@pytest.fixture(params=ENGINE_TARGETS)
def target_python(request) -> list[str]:
    """The command line prefix that runs a target script under each ENGINE_TARGETS entry."""
    if request.param == "this-python":
        return [PYTHON]
    return require_interpreter(request.param).argv()


def ks_exponential(gaps: list[float], rate: float) -> float:
    """Kolmogorov–Smirnov distance between the gaps and Exp(rate)."""
    xs = sorted(gaps)
    n = len(xs)
    d = 0.0
    for i, x in enumerate(xs):
        cdf = 1 - math.exp(-rate * x)
        d = max(d, cdf - i / n, (i + 1) / n - cdf)
    return d


def ks_critical(n: int, alpha: float = 0.001) -> float:
    """Asymptotic critical value of the one-sample KS statistic."""
    return math.sqrt(-0.5 * math.log(alpha / 2)) / math.sqrt(n)


def self_shares(samples, names) -> tuple[dict[str, float], int]:
    counts: Counter[str] = Counter()
    for sample in samples:
        for trace in sample.traces:
            if trace.frames and trace.frames[0].name in names:
                counts[trace.frames[0].name] += 1
    total = sum(counts.values())
    return {n: counts[n] / total for n in names} if total else {}, total


def within_binomial(share: float, expected: float, n: float, sigmas: float = 3.0) -> bool:
    return abs(share - expected) <= sigmas * math.sqrt(expected * (1 - expected) / n) + 0.01


# --- the timer ---------------------------------------------------------------------------------


def test_timer_gaps_are_exponential():
    timer = PoissonTimer(100, seed=7)
    gaps = [timer.next_gap() for _ in range(20_000)]
    assert ks_exponential(gaps, 100) < ks_critical(len(gaps))
    assert abs(sum(gaps) / len(gaps) - 0.01) < 0.0005


def test_timer_rejects_nonsense_rates():
    for bad in (0, -5, float("nan")):
        with pytest.raises(ValueError):
            PoissonTimer(bad)


def test_timer_is_seedable():
    a = PoissonTimer(100, seed=3)
    b = PoissonTimer(100, seed=3)
    assert [a.next_gap() for _ in range(10)] == [b.next_gap() for _ in range(10)]


def test_timer_reports_lateness_and_skips_stale_deadlines():
    now = [0.0]
    timer = PoissonTimer(1000, seed=1, clock=lambda: now[0])
    now[0] = 0.0005
    # Pretend a sample took 1 s: every deadline in that second is stale.
    now[0] = 1.0
    tick = timer.wait()
    assert tick is not None and tick.late is not None and 0 <= tick.late <= 10 / 1000
    assert tick.skipped > 900  # ~1000 deadlines fell in that second


def test_sampled_gaps_follow_the_exponential(spawn):
    proc = spawn([PYTHON, demo_path("slow_script"), "--repeat", "100"])
    rate = 200
    with Sampler(proc.pid, rate=rate, duration=3.0, seed=11) as sampler:
        # Each sample's deadline: when it was taken, less how late that was.
        deadlines = [s.timestamp - (s.late or 0.0) for s in sampler]
    if sampler.dropped_stale > len(deadlines) // 100:
        # Deadlines skipped while the sampler was not run (10 periods and more) join two
        # gaps into one: that is a loaded machine's schedule, not the timer's.
        pytest.skip(f"the machine left the sampler unrun for {sampler.dropped_stale} deadlines")
    gaps = [b - a for a, b in zip(deadlines, deadlines[1:])]
    assert len(gaps) > 300
    assert ks_exponential(gaps, rate) < ks_critical(len(gaps)), "gaps are not exponential"


# --- lateness, adaptation and duration with a deliberately slow reader ----------------------


class SlowReader:
    """A real reader whose every read takes `delay` seconds longer."""

    def __init__(self, pid: int, delay: float) -> None:
        self.inner = StackReader(pid)
        self.pid = pid
        self.version = self.inner.version
        self.delay = delay

    def read(self):
        time.sleep(self.delay)
        return self.inner.read()

    def close(self):
        self.inner.close()


def test_slow_reader_makes_late_samples_and_lowers_the_rate(spawn):
    proc = spawn([PYTHON, demo_path("slow_script"), "--repeat", "100"])
    sampler = Sampler(
        proc.pid, rate=200, duration=4.0, seed=5,
        reader_factory=lambda pid: SlowReader(pid, 0.02),
    )  # fmt: skip
    started = time.monotonic()
    samples = list(sampler)
    elapsed = time.monotonic() - started
    late = [s.late for s in samples if s.late is not None]
    assert len(late) > len(samples) // 2, "a 20 ms read at 200 Hz must make most samples late"
    assert all(x >= 0 for x in late)
    assert sampler.rate_changes, "the sampler did not adapt its rate"
    first = sampler.rate_changes[0]
    assert first.new_rate < first.old_rate == 200 and first.reason
    assert sampler.rate <= 50  # 20 ms per read: at most ~25 Hz at half a core
    # Wall-clock duration: 4 s, not "N samples".
    assert 3.5 < elapsed < 6.0, elapsed


def test_duration_is_wall_clock_even_when_reads_are_slow(spawn):
    proc = spawn([PYTHON, demo_path("slow_script"), "--repeat", "100"])
    sampler = Sampler(
        proc.pid, rate=100, duration=1.0, adapt=False,
        reader_factory=lambda pid: SlowReader(pid, 0.3),
    )  # fmt: skip
    started = time.monotonic()
    samples = list(sampler)
    elapsed = time.monotonic() - started
    assert 1 <= len(samples) <= 5
    assert elapsed < 1.8, f"duration overran: {elapsed:.2f} s"


# --- accuracy ----------------------------------------------------------------------------------


def test_spec_example_self_time_shares(spawn, target_python):
    """function_a/b/c sleep 0.1/0.05/0.01 s: 62.5/31.25/6.25 % of self time, wall clock."""
    names = ("function_a", "function_b", "function_c")
    argv = [*target_python, str(demo_path("slow_script"))]
    runs, worth = record_until_worth(argv, names, rate=100)
    shares, n = self_shares([s for run in runs for s in run], names)
    for name, expected in zip(names, (0.625, 0.3125, 0.0625)):
        assert within_binomial(shares[name], expected, worth), (name, shares, n, worth)
    # A stack seen again is the same Trace object: long recordings keep one per stack.
    mains = [s.traces[0] for s in runs[0] if len(s.traces) == 1]
    repeats = [(a, b) for a, b in zip(mains, mains[1:]) if a == b]
    assert len(repeats) > len(mains) // 2
    assert all(a is b for a, b in repeats)


def record_until_worth(argv: list[str], names, rate: float, enough: float = 100) -> tuple:
    """Record `argv` (a demo of known shares) until the looks at `names` are worth `enough`
    independent samples, three recordings at most: (each recording's samples, worth). A
    loaded machine gives the sampler fewer separate moments; each recording is the same
    shares again."""
    runs: list[list] = []
    looked: list[int] = []  # the looks that saw the names, of every recording
    worth = 0.0
    for _ in range(3):
        sampler = Sampler.launch(argv, rate=rate)
        try:
            run = list(sampler)
        finally:
            reap(sampler.process)
        assert sampler.error is None
        seen = [
            s.timestamp for s in run for t in s.traces if t.frames and t.frames[0].name in names
        ]
        assert seen, f"no sample saw {names}"
        # While the demo ran (start-up has no bound on a loaded machine), it is what was
        # sampled.
        during = [s for s in run if seen[0] <= s.timestamp <= seen[-1]]
        assert len(seen) > 0.9 * len(during), (len(seen), len(during))
        runs.append(run)
        looked += looks(seen)
        worth = independent_worth(looked)
        if worth >= enough:
            return runs, worth
    pytest.skip(
        f"in 3 recordings the machine ran the sampler at moments worth {worth:.0f}"
        f" independent samples, not the {enough} a share's bound needs"
    )


def test_cpu_bound_split_three_two_one(spawn, target_python):
    names = ("function_x", "function_y", "function_z")
    argv = [*target_python, str(demo_path("cpu_split")), "--repeat", "40"]
    runs, moments = record_until_worth(argv, names, rate=200)
    samples = [s for run in runs for s in run]
    shares, n = self_shares(samples, names)
    # A loaded machine's catch-up samples are not independent: the bound is for what they
    # are worth.
    for name, expected in zip(names, (3 / 6, 2 / 6, 1 / 6)):
        assert within_binomial(shares[name], expected, moments), (name, shares, n, moments)
    # CPU-bound: the target is running (not idle) and holds the GIL (free-threaded: is
    # attached) in nearly every trace.
    main = [t for s in samples for t in s.traces if t.frames and t.frames[0].name in names]
    assert sum(t.gil for t in main) > 0.8 * len(main)
    assert sum(t.idle is False for t in main) > 0.8 * len(main)


def test_idle_false_drops_sleeping_threads(spawn):
    sampler = Sampler.launch([PYTHON, str(demo_path("slow_script")), "--repeat", "3"], idle=False)
    try:
        samples = list(sampler)
    finally:
        reap(sampler.process)
    names = {"function_a", "function_b", "function_c"}
    sleeping = [t for s in samples for t in s.traces if t.frames[0].name in names]
    if len(samples) <= 30:
        pytest.skip(f"the machine ran the sampler {len(samples)} times in the run, not 30")
    # Those functions only sleep: with idle threads dropped almost none of them remain
    # (start-up, where the interpreter runs, is not idle and may be sampled).
    assert len(sleeping) < 0.1 * len(samples), len(sleeping)


# --- child processes ---------------------------------------------------------------------------


POOL_WORKERS = 3
WORKER_SAMPLES = 50  # each worker is seen working in more than this many samples


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_workers_are_sampled_each_under_its_own_pid(method, spawn, target_python, tmp_path):
    # The workers spin until each has been seen WORKER_SAMPLES times (a fixed time gives a
    # busy machine's sampler too few looks), or 60 s: then the assertions below say who not.
    enough = tmp_path / "enough"
    sampler = Sampler.launch(
        [*target_python, str(demo_path("pool_work")), "--seconds", "1", "--until", str(enough),
         "--start-method", method],
        subprocesses=True, rate=100,
    )  # fmt: skip
    sampler.process.stdout = None
    samples = []
    working: Counter[int] = Counter()
    give_up = time.monotonic() + 60
    try:
        for sample in sampler:
            samples.append(sample)
            working.update(
                t.pid for t in sample.traces if t.frames and t.frames[0].name == "worker_task"
            )
            seen_enough = len(working) >= POOL_WORKERS and min(working.values()) > WORKER_SAMPLES
            if (seen_enough or time.monotonic() > give_up) and not enough.exists():
                enough.touch()
    finally:
        enough.touch()  # workers a failure left spinning stop too
        reap(sampler.process)
    assert len(working) == POOL_WORKERS, f"workers seen: {working}"
    assert sampler.pid not in working
    for pid, count in working.items():
        assert count > WORKER_SAMPLES, (pid, count)
    chains = {t.processes for s in samples for t in s.traces if t.pid in working}
    for chain in chains:
        assert chain[0].pid == sampler.pid and chain[-1].pid in working
    kinds = Counter(e.kind for s in samples for e in s.errors)
    assert "ProcessExited" not in kinds, kinds  # workers ending is no error


def test_non_python_children_are_ignored_quietly(spawn):
    script = "import subprocess, time\np = subprocess.Popen(['sleep', '5'])\ntime.sleep(2)\n"
    sampler = Sampler.launch([PYTHON, "-c", script], subprocesses=True, rate=100)
    try:
        samples = list(sampler)
    finally:
        reap(sampler.process)
    assert {t.pid for s in samples for t in s.traces} >= {sampler.pid}
    # Between fork and exec the child is a copy of the parent inside Popen: a loaded
    # machine makes that window long enough to be sampled. Nothing of `sleep` itself is.
    forked = Counter(
        t.frames[0].name if t.frames else None
        for s in samples
        for t in s.traces
        if t.pid != sampler.pid
    )
    assert set(forked) <= {"_execute_child"}, forked
    # The `sleep` child is probed once, found not to be Python, and never again.
    errors = [e for s in samples for e in s.errors if e.pid != sampler.pid]
    assert errors == [], errors
    assert sampler._watcher is None or sampler._watcher.probes < 10


# --- faults ------------------------------------------------------------------------------------


def test_target_killed_mid_recording_keeps_the_samples(spawn):
    proc = spawn([PYTHON, demo_path("slow_script"), "--repeat", "100"])
    sampler = Sampler(proc.pid, rate=200)
    samples = []
    for sample in sampler:
        samples.append(sample)
        if len(samples) == 100:
            proc.kill()
    assert len(samples) >= 100
    assert any(t.frames for t in samples[50].traces)
    assert sampler.end_reason == "target exited"
    assert not any(e.kind == "ProcessExited" for s in samples for e in s.errors)
    assert not sampler.running


def test_slow_starting_target_is_retried(spawn):
    # The pid is a shell for half a second before it becomes Python.
    cmd = f"sleep 0.5; exec {PYTHON} {demo_path('slow_script')} --repeat 2"
    sampler = Sampler.launch(["sh", "-c", cmd], rate=100, start_timeout=5)
    try:
        samples = list(sampler)
    finally:
        reap(sampler.process)
    assert sampler.error is None
    assert any(t.frames[0].name == "function_a" for s in samples for t in s.traces)


def test_target_that_never_becomes_python_fails_clearly(spawn):
    proc = spawn(["sleep", "30"])
    sampler = Sampler(proc.pid, start_timeout=0.3)
    assert list(sampler) == []
    assert isinstance(sampler.error, NotPython)


def test_no_such_pid_fails_clearly():
    proc = subprocess.Popen(["true"])
    proc.wait()
    sampler = Sampler(proc.pid)
    assert list(sampler) == []
    assert isinstance(sampler.error, NoSuchProcess)
    assert str(proc.pid) in str(sampler.error)


def test_stop_early_delivers_what_was_taken(spawn):
    proc = spawn([PYTHON, demo_path("slow_script"), "--repeat", "100"])
    sampler = Sampler(proc.pid, rate=100)
    got = []
    sampler.add_collector(got.append)
    sampler.start()
    # Some samples taken first, however rarely a busy machine runs the sampler.
    wait_until(lambda: sampler.samples_taken >= 10, 60, "10 samples taken")
    sampler.stop()
    sampler.join(5)
    assert not sampler.running
    assert 10 <= len(got) == sampler.samples_taken
    assert proc.poll() is None  # stopping the sampler leaves the target alone


def test_collectors_run_off_the_sampling_thread(spawn):
    proc = spawn([PYTHON, demo_path("slow_script"), "--repeat", "100"])
    threads = set()
    sampler = Sampler(proc.pid, rate=100, duration=0.5)
    sampler.add_collector(lambda s: threads.add(__import__("threading").current_thread().name))
    sampler.start()
    sampler.join(5)
    assert threads == {"spy_magic-processing"}


def test_every_interpreter_can_be_sampled(interpreter, spawn):
    interp = require_interpreter(interpreter.id)
    # A rooted interpreter is launched as `chroot ROOT PYTHON ...`: chroot execs the
    # interpreter in the same pid, which the sampler waits for to become Python.
    sampler = Sampler.launch(interp.argv(demo_path("slow_script"), "--repeat", "4"), rate=500)
    try:
        samples = list(sampler)
    finally:
        reap(sampler.process)
    assert sampler.error is None, sampler.error
    seen = {t.frames[0].name for s in samples for t in s.traces if t.frames}
    assert {"function_a", "function_b", "function_c"} <= seen


# --- modes -------------------------------------------------------------------------------------


def test_gil_mode_keeps_only_the_thread_holding_the_gil(spawn):
    script = (
        "import threading, time\n"
        "def spinner():\n"
        "    end = time.perf_counter() + 2.5\n"
        "    while time.perf_counter() < end:\n"
        "        pass\n"
        "def sleeper():\n"
        "    time.sleep(2.5)\n"
        "threads = [threading.Thread(target=spinner, name='spinner'),\n"
        "           threading.Thread(target=sleeper, name='sleeper')]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
    )
    sampler = Sampler.launch([PYTHON, "-c", script], gil=True, rate=200)
    try:
        samples = list(sampler)
    finally:
        reap(sampler.process)
    names = Counter(t.thread_name for s in samples for t in s.traces)
    assert names["spinner"] > 100, names
    # The sleeper holds the GIL only for the moments it takes to start and stop sleeping.
    assert names["sleeper"] <= 0.02 * names["spinner"], names
    assert all(t.gil for s in samples for t in s.traces)


def test_in_process_fallback_samples_its_own_threads_and_says_it_is_biased():
    import threading

    from spy_magic.engine import InProcessSampler

    stop = threading.Event()

    def busy_worker():
        while not stop.is_set():
            sum(range(1000))

    worker = threading.Thread(target=busy_worker, name="busy-worker")
    # The sampling thread waits for the GIL the worker holds: a short switch interval and no
    # load adaptation (which lowers the rate when samples come late) keep the count from
    # depending on how busy the machine is.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    worker.start()
    try:
        sampler = InProcessSampler(rate=200, duration=1.0, adapt=False)
        samples = list(sampler)
    finally:
        stop.set()
        worker.join()
        sys.setswitchinterval(switch)
    seen = Counter(t.thread_name for s in samples for t in s.traces)
    assert seen["busy-worker"] > 30, seen  # 1 s at 200 Hz, minus what the GIL hides
    assert not any(t.thread_name == "spy_magic-sampler" for s in samples for t in s.traces)
    meta = sampler.metadata()
    assert meta["mode"] == "in-process" and "GIL" in meta["bias"]
    assert any(
        f.name == "test_in_process_fallback_samples_its_own_threads_and_says_it_is_biased.<locals>"
        ".busy_worker" or f.name == "busy_worker"
        for s in samples for t in s.traces for f in t.frames
    )  # fmt: skip


# --- stacks that change faster than they can be copied ----------------------------------------


@pytest.mark.parametrize("nonblocking", [False, True], ids=["default", "nonblocking"])
def test_a_stack_too_fast_to_copy_is_read_paused_unless_nonblocking(spawn, nonblocking):
    """Deep recursion churning every µs: by default the torn reads are taken again with the
    target paused (and counted); --nonblocking never pauses and drops them as TornStack."""
    proc = spawn([PYTHON, TARGETS / "churn.py"])
    assert read_line(proc) == "ready"
    sampler = Sampler(proc.pid, rate=500, duration=1.0, nonblocking=nonblocking)
    samples = list(sampler)
    meta = sampler.metadata()
    torn = sum(e.kind == "TornStack" for s in samples for e in s.errors)
    assert meta["nonblocking"] is nonblocking
    require_churn(torn > 0 or meta["paused_reads"] > 0)
    if nonblocking:
        assert meta["paused_reads"] == 0
    else:
        assert meta["paused_reads"] > 0 and "pause_error" not in meta
        assert torn <= len(samples) // 50, f"{torn} of {len(samples)} torn though paused"


# --- many threads ------------------------------------------------------------------------------

THREAD_CHURN = r"""
import random, threading, time
def short():
    time.sleep(0.002)
keep = threading.Event()
def parked():
    keep.wait()
for _ in range(20):
    threading.Thread(target=parked, daemon=True).start()
print("ready", flush=True)
while True:
    # Thread idents are pthread addresses, which glibc's stack cache hands out again: stacks
    # of ever other sizes keep the idents new.
    threading.stack_size(random.randrange(64, 4096) * 4096)
    batch = [threading.Thread(target=short) for _ in range(10)]
    for t in batch:
        t.start()
    for t in batch:
        t.join()
"""


def test_spy_memory_follows_live_threads_not_every_thread_seen(spawn):
    """A pool that makes new threads all the time: what the spy keeps per thread id (the
    last ThreadStack and its Trace, the recent Traces) stays the size of the threads alive,
    and a parked thread's unchanged stack reads the same throughout."""
    from spy_magic.engine.spy import RECENT_TRACES, ProcessSpy

    proc = spawn([PYTHON, "-c", THREAD_CHURN], stdout=subprocess.PIPE)
    assert read_line(proc) == "ready"
    with StackReader(proc.pid) as reader:
        spy = ProcessSpy(reader)
        seen: set[int] = set()
        largest = 0
        parked_traces: dict[int, set[int]] = {}
        deadline = time.monotonic() + 30
        while len(seen) < 3 * (2 * largest + RECENT_TRACES) and time.monotonic() < deadline:
            traces: list = []
            spy.sample(traces, [])
            seen.update(t.thread_id for t in traces)
            largest = max(largest, len(traces))
            for t in traces:
                if any(f.name == "parked" for f in t.frames):
                    parked_traces.setdefault(t.thread_id, {})[id(t)] = t
            assert len(spy._last_of) <= 3 * largest + RECENT_TRACES
            assert len(spy._recent) <= 3 * largest + RECENT_TRACES
    # Thread idents are addresses and get reused: the churn is real only if many were seen.
    if len(seen) < 2 * largest + RECENT_TRACES + 1:
        pytest.skip(f"only {len(seen)} thread ids seen: too few to show the bound")
    assert len(parked_traces) >= 20
    # A parked thread's stack reads the same sample after sample: one stack, seen in at
    # most two run states (still running on its way into the wait, then blocked).
    assert all(len(set(ids.values())) <= 2 for ids in parked_traces.values())
