"""Load adaptation: the sampler lowers its rate only for its own cost, and says so.

A sample that takes most of its period cannot be repeated at that rate: the rate is
lowered, with a reason naming the cost, and raised again once samples are cheap. A sampler
the machine does not run in time (other busy programs) keeps the asked rate: a lower one
would not get it scheduled sooner. Its late samples are counted by cause. The first read of
a target, which decodes every code object on its stacks, is not mistaken for either.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spy_magic.demos import demo_path
from spy_magic.engine import Sampler
from spy_magic.reader import StackReader

PYTHON = sys.executable
TARGETS_DIR = Path(__file__).parent / "targets"


class ScriptedReader:
    """A real reader whose reads take extra time, as `delay(n)` says for the n-th read."""

    def __init__(self, pid: int, delay) -> None:
        self.inner = StackReader(pid)
        self.pid = pid
        self.version = self.inner.version
        self.delay = delay
        self.reads = 0

    def read(self):
        self.reads += 1
        extra = self.delay(self.reads)
        if extra:
            time.sleep(extra)
        return self.inner.read()

    def close(self):
        self.inner.close()


@pytest.fixture
def sleeper(spawn):
    return spawn([PYTHON, demo_path("slow_script"), "--repeat", "100"])


def test_cold_first_read_skips_no_deadlines(sleeper):
    # A first read that takes 1 s (a deep stack's code objects decoded) used to leave every
    # deadline of that second stale: ~200 skipped at 200 Hz. The schedule starts after it.
    sampler = Sampler(
        sleeper.pid, rate=200, duration=2.5, seed=3,
        reader_factory=lambda pid: ScriptedReader(pid, lambda n: 1.0 if n == 1 else 0),
    )  # fmt: skip
    samples = list(sampler)
    assert sampler.rate_changes == []
    # Deadlines go stale only after 10 periods (50 ms) without being run: not the cold read's.
    assert sampler.dropped_stale < 100, sampler.metadata()
    assert len(samples) > 150


def test_own_cost_lowers_the_rate_saying_so_then_recovers(sleeper):
    started = time.monotonic()
    slow_for = 1.5  # seconds of 20 ms reads, then reads at their own cost
    sampler = Sampler(
        sleeper.pid, rate=200, duration=7.0, seed=5,
        reader_factory=lambda pid: ScriptedReader(
            pid, lambda n: 0.02 if time.monotonic() - started < slow_for else 0
        ),
    )  # fmt: skip
    list(sampler)
    changes = sampler.rate_changes
    assert changes, "20 ms reads at 200 Hz (5 ms periods) must lower the rate"
    first = changes[0]
    assert first.old_rate == 200 and first.new_rate <= 50
    assert "could not keep up" in first.reason and "µs" in first.reason
    assert changes[-1].new_rate == 200, [str(c) for c in changes]
    assert "keeps up" in changes[-1].reason
    assert sampler.late_behind > 0


def test_busy_machine_keeps_the_rate_and_counts_why_samples_were_late(spawn):
    # The sampler runs pinned to one CPU with two busy processes at a higher priority: most
    # of its deadlines come while it waits for that CPU. Lowering the rate would not help.
    target = spawn([PYTHON, "-c", "while True: pass"])
    result = subprocess.run(
        [PYTHON, str(TARGETS_DIR / "busy_sampler.py"), str(target.pid), "500", "3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    if report["late_unscheduled"] < 20:
        pytest.skip(f"the sampler was hardly ever kept waiting for its CPU: {report}")
    assert report["changes"] == [], report
    assert report["rate"] == 500
    assert report["late_unscheduled"] > report["late_behind"], report
