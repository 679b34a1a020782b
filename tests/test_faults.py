"""Fault matrix for the pause path: a pause that goes wrong must still let the target go.

The reader's last resort (spy_magic/reader/pause.py) ptrace-seizes every thread of the target
for one snapshot. Each test here forces one fault on that path and checks what a user would
see afterwards: no thread of the target left traced by us or stopped, every signal sent to it
delivered (counted at C level, as it arrives), and the reader still pausing once the fault is
gone. Test names read `test_fault_<what goes wrong>_<what must still hold>`.

The fault that matters most: another tracer (a second sampler, py-spy, gdb, strace) holds
some of the threads, so a pause meets `PTRACE_SEIZE` -> EPERM partway through, after it has
seized the threads before that one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, TARGETS, read_line, require_interpreter, wait_until

from spy_magic.reader import StackReader, pause
from spy_magic.reader.pause import PauseFailed, ThreadPauser

# Oldest walker, newest standard build, a free-threaded build (threads really run in
# parallel), and a chrooted sid build.
INTERPRETERS = ["pyenv-3.8", "pyenv-3.12", "ft-3.13t", "sid-3.14"]

SIGNAL_TIMEOUT = 5.0  # seconds for one signal to be handled (a loaded machine is slow)
LONGEST_STOP = 1.5  # seconds a thread may be seen stopped at a stretch (a pause is µs-ms)
_WALL = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture(scope="module", params=INTERPRETERS)
def interpreter(request):
    return require_interpreter(request.param)


# The target: churn.py's deep recursion in the main thread and in `workers` more threads, each
# SIGUSR1 counted as it is delivered: the C-level handler writes one byte to the wakeup fd, the
# write end of a pipe whose read end the test holds (argv[1]), whichever thread takes it.
SIGNAL_THREADS = r"""
import os, random, signal, sys, threading

wakeup = int(sys.argv[1])
os.set_blocking(wakeup, False)
signal.set_wakeup_fd(wakeup)
signal.signal(signal.SIGUSR1, lambda signum, frame: None)


def f(n, depth):
    if n < depth:
        return f(n + 1, depth)
    total = 0
    for i in range(300):
        total += i
    return total


def churn(seed):
    rng = random.Random(seed)
    while True:
        f(0, rng.randint(0, 60))


for i in range(int(sys.argv[2])):
    threading.Thread(target=churn, args=(i + 1,), daemon=True).start()
print("ready", flush=True)
churn(0)
"""

# Another tracer, holding the threads given and handing their signals on, as strace does.
TRACER = TARGETS / "tracer.py"


# --- looking at the target from /proc ----------------------------------------------------------


def tasks(pid: int) -> list[int]:
    """The target's thread ids, in the order /proc lists them (the pauser's order)."""
    try:
        return [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return []


def tracer_of(pid: int, tid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return 0


def state_of(pid: int, tid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    except OSError:
        return "gone"
    return stat.rsplit(")", 1)[1].split()[0]


def threads_view(pid: int) -> str:
    return ", ".join(
        f"{tid}: {state_of(pid, tid)} traced by {tracer_of(pid, tid)}" for tid in tasks(pid)
    )


def assert_let_go(pid: int, other_tracer: int | None = None) -> None:
    """No thread is traced by us, none is stopped but those another tracer holds."""
    for tid in tasks(pid):
        tracer = tracer_of(pid, tid)
        assert tracer in (0, other_tracer), (
            f"thread {tid} is still traced by pid {tracer} (this test is {os.getpid()}, the "
            f"other tracer {other_tracer}): {threads_view(pid)}"
        )
        if tracer == 0:
            wait_until(
                lambda tid=tid: state_of(pid, tid) != "t",
                2.0,
                f"thread {tid} to leave its ptrace stop ({threads_view(pid)})",
            )


class StopWatch:
    """Polls every thread's state: the longest stretch any was seen in a ptrace stop (`t`).

    A stretch counts only while polls come close together: after a gap (this process was not
    scheduled), nothing says the thread stayed stopped in between.
    """

    GAP = 0.02

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.stopped: dict[int, tuple[float, float]] = {}  # tid -> (first, last) seen in `t`
        self.longest = 0.0
        self.worst = ""

    def poll(self) -> None:
        now = time.monotonic()
        for tid in tasks(self.pid):
            if state_of(self.pid, tid) != "t":
                self.stopped.pop(tid, None)
                continue
            first, last = self.stopped.get(tid, (now, now))
            if now - last > self.GAP:
                first = now
            self.stopped[tid] = (first, now)
            if now - first > self.longest:
                self.longest = now - first
                self.worst = f"thread {tid} (traced by {tracer_of(self.pid, tid)})"


class Signals:
    """Sends SIGUSR1 to the target, one at a time, and sees each arrive at C level."""

    def __init__(self, pid: int, read_fd: int) -> None:
        self.pid = pid
        self.fd = read_fd
        self.sent = 0
        self.arrived = 0

    def send_and_wait(self, timeout: float = SIGNAL_TIMEOUT, watch: StopWatch | None = None):
        """Send one; True once it was handled. The next is sent only after the last arrived,
        so no two are ever pending at once (standard signals would coalesce)."""
        os.kill(self.pid, signal.SIGUSR1)
        self.sent += 1
        deadline = time.monotonic() + timeout
        while self.arrived < self.sent:
            if time.monotonic() > deadline:
                return False
            if select.select([self.fd], [], [], 0.002)[0]:
                self.arrived += os.read(self.fd, 4096).count(bytes([signal.SIGUSR1]))
            if watch is not None:
                watch.poll()
        return True

    def send_to_thread(self, tid: int) -> None:
        """Send one SIGUSR1 to thread `tid` only (tgkill); see it arrive with `wait`."""
        if _libc.tgkill(self.pid, tid, signal.SIGUSR1) != 0:
            raise OSError(ctypes.get_errno(), f"tgkill {self.pid} {tid}")
        self.sent += 1

    def arrived_all(self) -> bool:
        while select.select([self.fd], [], [], 0)[0]:
            self.arrived += os.read(self.fd, 4096).count(bytes([signal.SIGUSR1]))
        return self.arrived >= self.sent

    def check(self, count: int, watch: StopWatch | None = None) -> None:
        for _ in range(count):
            assert self.send_and_wait(watch=watch), (
                f"SIGUSR1 #{self.sent} was not handled within {SIGNAL_TIMEOUT}s "
                f"({self.arrived} of {self.sent} arrived): {threads_view(self.pid)}"
            )


def free_our_tracees(pid: int) -> None:
    """Only when a pause left threads traced by this process (the bug under test): kill the
    target and collect those threads, or reaping it would wait for this process to exit."""
    ours = [tid for tid in tasks(pid) if tracer_of(pid, tid) == os.getpid()]
    if not ours:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while ours and time.monotonic() < deadline:  # all at once: the leader's exit comes last
        for tid in list(ours):
            try:
                waited, status = os.waitpid(tid, os.WNOHANG | _WALL)
            except ChildProcessError:
                ours.remove(tid)
                continue
            if waited == tid and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
                ours.remove(tid)
        time.sleep(0.001)


@pytest.fixture
def signal_target(interpreter, spawn):
    """`signal_target(workers)`: (process, Signals) for a started SIGNAL_THREADS target."""
    started: list[tuple[subprocess.Popen, int]] = []

    def start(workers: int = 2):
        read_fd, write_fd = os.pipe()
        try:
            proc = spawn(
                interpreter.argv("-c", SIGNAL_THREADS, write_fd, workers), pass_fds=(write_fd,)
            )
        finally:
            os.close(write_fd)
        started.append((proc, read_fd))
        assert read_line(proc) == "ready"
        wait_until(lambda: len(tasks(proc.pid)) >= workers + 1, 10, "the workers to start")
        return proc, Signals(proc.pid, read_fd)

    try:
        yield start
    finally:
        for proc, read_fd in started:
            free_our_tracees(proc.pid)
            os.close(read_fd)


def hold(spawn, tids) -> subprocess.Popen:
    """Another tracer, holding `tids` (and handing their signals on)."""
    tracer = spawn([sys.executable, TRACER, *map(str, tids)])
    assert read_line(tracer) == "holding"
    return tracer


class ForcedTearing:
    """Makes every read of `reader` tear unless taken paused, so every read asks for a pause
    (whether a loaded machine lets the real stacks move during a copy or not); counts the
    pauses that failed."""

    def __init__(self, reader: StackReader) -> None:
        self.failures: list[PauseFailed] = []
        self.in_pause = False
        pauser = reader._pauser
        real_paused, real_snapshot = pauser.paused, reader._snapshot

        @contextlib.contextmanager
        def paused():
            with contextlib.ExitStack() as stack:
                try:
                    stack.enter_context(real_paused())
                except PauseFailed as exc:
                    self.failures.append(exc)
                    raise
                self.in_pause = True
                try:
                    yield
                finally:
                    self.in_pause = False

        def snapshot():
            threads, changed = real_snapshot()
            if not self.in_pause:
                changed = {stack.thread_id for stack in threads}
            return threads, changed

        pauser.paused = paused
        reader._snapshot = snapshot


# --- the matrix --------------------------------------------------------------------------------


def test_fault_pause_meets_another_tracer_midway_releases_every_thread(signal_target, spawn):
    """The pauser seizes the first threads, then meets one another tracer holds: every thread
    it seized is let go (not left seized, to stop at its next signal), no signal is lost."""
    proc, signals = signal_target(workers=2)
    tids = tasks(proc.pid)
    held = tids[-1]
    tracer = hold(spawn, [held])
    pauser = ThreadPauser(proc.pid)
    order = [tid for tid in tids if tid != held] + [held]
    pauser._thread_ids = lambda: order  # the held thread last: the others are seized first
    with pytest.raises(PauseFailed) as failed, pauser.paused():
        pytest.fail("paused every thread although another tracer holds one")
    assert failed.value.errno == errno.EPERM
    assert "another tracer" in str(failed.value)
    assert_let_go(proc.pid, other_tracer=tracer.pid)
    signals.check(20)
    assert_let_go(proc.pid, other_tracer=tracer.pid)
    assert tracer_of(proc.pid, held) == tracer.pid, "the other tracer's hold broke"


def test_fault_pause_meets_another_tracer_then_pauses_again_once_it_is_gone(signal_target, spawn):
    """A pause that met another tracer is tried again on later reads (never given up for the
    rest of the recording), and succeeds once that tracer has let go."""
    proc, signals = signal_target(workers=2)
    tids = tasks(proc.pid)
    held = tids[-1]
    tracer = hold(spawn, [held])
    with StackReader(proc.pid) as reader:
        forced = ForcedTearing(reader)
        order = [tid for tid in tids if tid != held] + [held]
        reader._pauser._thread_ids = lambda: order
        deadline = time.monotonic() + 10.0
        while len(forced.failures) < 3 and time.monotonic() < deadline:
            reader.read()
        assert len(forced.failures) >= 3, (
            f"{len(forced.failures)} pause(s) tried in 10 s of torn reads: pausing was given "
            f"up after the first failure ({reader.pause_error})"
        )
        assert reader.paused_reads == 0
        assert all(exc.errno == errno.EPERM for exc in forced.failures)
        assert reader.pause_error is not None and "another tracer" in reader.pause_error
        assert_let_go(proc.pid, other_tracer=tracer.pid)
        signals.check(5)

        tracer.kill()
        tracer.wait()
        wait_until(lambda: tracer_of(proc.pid, held) == 0, 10, "the other tracer to let go")
        deadline = time.monotonic() + 5.0
        while reader.paused_reads == 0 and time.monotonic() < deadline:
            reader.read()
        assert reader.paused_reads > 0, "no pause succeeded after the other tracer let go"
        assert_let_go(proc.pid)
        signals.check(5)


def test_fault_two_samplers_on_one_target_never_leave_it_stopped(signal_target, spawn, tmp_path):
    """Two `spy_magic record` at 2 kHz on one deep-recursion target: each meets the other's
    hold now and then. The target is never left stopped for more than a pause, and every
    signal sent meanwhile is handled at once."""
    proc, signals = signal_target(workers=6)
    record = [sys.executable, "-m", "spy_magic", "record", "--pid", proc.pid, "--rate", "2000",
              "-d", "5", "--format", "collapsed", "-o"]  # fmt: skip
    samplers = [
        spawn([*record, tmp_path / f"sampler{i}.txt"], cwd=REPO, stdout=subprocess.DEVNULL)
        for i in range(2)
    ]
    watch = StopWatch(proc.pid)
    while any(sampler.poll() is None for sampler in samplers):
        signals.check(1, watch)
        assert watch.longest < LONGEST_STOP, (
            f"{watch.worst} stayed stopped {watch.longest:.2f}s: {threads_view(proc.pid)}"
        )
        watch.poll()
    summaries = []
    for sampler in samplers:
        sampler.stderr_file.seek(0)
        summaries.append(sampler.stderr_file.read().decode("utf-8", "replace"))
        assert sampler.wait() == 0, summaries[-1]
    assert_let_go(proc.pid)
    signals.check(3)
    if not any("paused the target" in summary for summary in summaries):
        pytest.skip(
            "neither sampler paused the target (a loaded machine: no read tore), so they "
            f"never contended for it: {summaries}"
        )


def test_fault_a_thread_stops_too_late_for_the_pause_is_let_go_when_it_does(
    signal_target, monkeypatch
):
    """One thread takes longer to stop than the pause waits (uninterruptible sleep, or not
    scheduled on a loaded machine): the pause gives up, the others are let go at once, and
    that thread is let go as soon as it does stop, with the signal it stopped for."""
    proc, signals = signal_target(workers=2)
    tids = tasks(proc.pid)
    late = tids[-1]
    held_back = {"interrupt": True}
    real_call = pause._call

    def call(request: int, tid: int, data: int = 0) -> int:
        if request == pause.PTRACE_INTERRUPT and tid == late and held_back["interrupt"]:
            return 0  # as if it took effect only later: the thread goes on running, seized
        return real_call(request, tid, data)

    monkeypatch.setattr(pause, "_call", call)
    monkeypatch.setattr(pause, "STOP_TIMEOUT", 0.3)
    with StackReader(proc.pid) as reader:
        forced = ForcedTearing(reader)
        reader._pauser._thread_ids = lambda: tids
        reader.read()
        assert [exc.errno for exc in forced.failures] == [errno.ETIMEDOUT]
        assert reader.pause_error is not None and "did not stop" in reader.pause_error
        others = [tid for tid in tids if tid != late]
        wait_until(
            lambda: all(tracer_of(proc.pid, tid) == 0 for tid in others),
            5,
            f"the threads that did stop to be let go ({threads_view(proc.pid)})",
        )
        # Now `late` stops, for a signal sent to it alone: reads go on, and let it go with it.
        signals.send_to_thread(late)
        deadline = time.monotonic() + SIGNAL_TIMEOUT
        while not signals.arrived_all() and time.monotonic() < deadline:
            reader.read()
        assert signals.arrived_all(), (
            f"the SIGUSR1 sent to thread {late}, seized by the failed pause, was not handled "
            f"within {SIGNAL_TIMEOUT}s of reads: {threads_view(proc.pid)}"
        )
        held_back["interrupt"] = False  # it would stop in time now: the next reads let it go
        deadline = time.monotonic() + 5.0
        while tracer_of(proc.pid, late) != 0 and time.monotonic() < deadline:
            reader.read()
        assert tracer_of(proc.pid, late) == 0, f"{late} not let go: {threads_view(proc.pid)}"
        assert_let_go(proc.pid)
        signals.check(5)

        with reader._pauser.paused():  # and a pause works again
            assert all(state_of(proc.pid, tid) == "t" for tid in tasks(proc.pid))
    assert_let_go(proc.pid)
    signals.check(5)


# A sampler that pauses its target over and over, as fast as it can: what a kill -9 of
# `record` or of the notebook's helper at the worst moment leaves behind.
_PAUSE_FOREVER = """
import sys
from spy_magic.reader.pause import ThreadPauser
pauser = ThreadPauser(int(sys.argv[1]))
print("pausing", flush=True)
while True:
    with pauser.paused():
        pass
"""


def test_fault_sampler_killed_while_pausing_leaves_the_target_running(signal_target, spawn):
    """SIGKILL of a sampler in the middle of its pauses, ten times at random moments: the OS
    lets go of a dead tracer's threads, and the target runs on, every signal handled."""
    import random

    proc, signals = signal_target(workers=3)
    rng = random.Random(7)
    for _ in range(10):
        sampler = spawn([sys.executable, "-c", _PAUSE_FOREVER, proc.pid], cwd=REPO)
        assert read_line(sampler).strip() == "pausing"
        time.sleep(rng.uniform(0.0, 0.05))
        sampler.kill()
        sampler.wait()
        assert_let_go(proc.pid)
        signals.check(1)
