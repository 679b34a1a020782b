"""The bundled workloads keep the ground truth they promise, on a busy machine too."""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
from types import SimpleNamespace

from conftest import reap, wait_until

from spy_magic.demos import demo_path

SPLIT = {"function_x": 0.030, "function_y": 0.020, "function_z": 0.010}


class PausingClock:
    """A perf_counter that advances `step` a reading and, at random readings (one in
    `every`, seeded), `pause` more: a process the machine stops now and then as it spins."""

    def __init__(self, step: float, pause: float, every: int, seed: int = 1) -> None:
        self.now = 0.0
        self.step, self.pause, self.every = step, pause, every
        self._rng = random.Random(seed)

    def perf_counter(self) -> float:
        self.now += self.step
        if self._rng.randrange(self.every) == 0:
            self.now += self.pause
        return self.now


def test_cpu_split_keeps_3_2_1_when_the_machine_pauses_it():
    """A spin the machine stopped past its time is paid back in the next call: each
    function's total is its calls' worth, off by one pause (not one per call)."""
    spec = importlib.util.spec_from_file_location("cpu_split_under_test", demo_path("cpu_split"))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    clock = PausingClock(step=0.00001, pause=0.007, every=500)
    demo.time = SimpleNamespace(perf_counter=clock.perf_counter)
    spent = dict.fromkeys(SPLIT, 0.0)
    rounds = 50
    for _ in range(rounds):
        for name in SPLIT:
            began = clock.now
            getattr(demo, name)()
            spent[name] += clock.now - began
    for name, seconds in SPLIT.items():
        owed = rounds * seconds
        # at most the last call's pause unpaid, and each call's first reading (one step)
        assert owed <= spent[name] <= owed + clock.pause + rounds * clock.step, (name, spent)


class LateWakingTime:
    """A time module whose sleep wakes `late` after the time asked, every `every`th call;
    it keeps how long each caller slept."""

    def __init__(self, late: float, every: int) -> None:
        self.now, self.calls, self.late, self.every = 0.0, 0, late, every
        self.slept: dict[str, float] = {}

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.calls += 1
        took = seconds + (self.late if self.calls % self.every == 0 else 0.0)
        self.now += took
        caller = sys._getframe(1).f_code.co_name
        self.slept[caller] = self.slept.get(caller, 0.0) + took


def test_slow_script_keeps_its_shares_when_sleepers_wake_late():
    """A sleep that overran is paid back by the function's next one: each function's
    sleeping adds up to its calls' worth, off by one late wake-up (not one per call)."""
    spec = importlib.util.spec_from_file_location("slow_under_test", demo_path("slow_script"))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    clock = LateWakingTime(late=0.007, every=4)
    demo.time = clock
    rounds = 30
    for _ in range(rounds):
        demo.function_a()
    for name, seconds in {"function_a": 0.1, "function_b": 0.05, "function_c": 0.01}.items():
        owed = rounds * seconds
        assert owed - 1e-9 <= clock.slept[name] <= owed + clock.late + 1e-9, (name, clock.slept)


def spun_children(pid: int, cpu_seconds: float) -> list[int]:
    """The children of `pid` that have used at least `cpu_seconds` of CPU."""
    found = []
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state (field 3): ppid is field 4, utime 14, stime 15.
        if int(fields[1]) == pid and (int(fields[11]) + int(fields[12])) / tick >= cpu_seconds:
            found.append(int(entry))
    return found


def test_pool_workers_spin_until_told(tmp_path):
    """`--until PATH`: the workers spin on past `--seconds` until PATH exists, then end."""
    enough = tmp_path / "enough"
    cmd = [sys.executable, str(demo_path("pool_work")), "--seconds", "0", "--until", str(enough)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        # Each worker past `--seconds 0` by 0.3 s of its own CPU, however slow the machine:
        wait_until(lambda: len(spun_children(proc.pid, 0.3)) == 3, 60, "three spinning workers")
        assert proc.poll() is None, "the pool ended before PATH existed"
        enough.touch()
        out, _ = proc.communicate(timeout=60)
    finally:
        reap(proc)
    assert proc.returncode == 0
    assert len(out.split()) == 3, out  # three workers, one task each
