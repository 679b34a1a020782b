"""Pausing the target for a read that keeps tearing: it must always be let go, intact.

The reader's last resort (spy_magic/reader/pause.py) ptrace-stops every thread for one
snapshot. These tests check what a user would fear from that: the target left stopped or
traced, a signal swallowed, a debugger's hold broken.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import TARGETS, read_line, require_churn

from spy_magic.reader import StackReader, TornStack

CHURN = TARGETS / "churn.py"
SIGNAL_CHURN = TARGETS / "signal_churn.py"


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def test_paused_target_is_let_go_and_keeps_running(interpreter, spawn):
    proc = spawn(interpreter.argv(CHURN))
    assert read_line(proc) == "ready"
    with StackReader(proc.pid) as reader:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            reader.read()
        require_churn(reader.paused_reads > 0)
        assert reader.pause_error is None
        ticks = int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[11])
    assert status_field(proc.pid, "TracerPid") == "0"
    time.sleep(0.3)
    state = status_field(proc.pid, "State")
    assert state[0] in "RS", f"target left in state {state}"
    later = int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[11])
    assert later > ticks, "the target stopped running after the reads"


def sigusr1_pending(pid: int) -> bool:
    """SIGUSR1 is pending for the process or its main thread (/proc status masks)."""
    bit = 1 << (signal.SIGUSR1 - 1)
    masks = (status_field(pid, "ShdPnd"), status_field(pid, "SigPnd"))
    return any(int(mask, 16) & bit for mask in masks)


def test_signals_sent_during_pauses_all_arrive(interpreter, spawn):
    proc = spawn(interpreter.argv(SIGNAL_CHURN))
    assert read_line(proc) == "ready"
    sent = 0
    with StackReader(proc.pid) as reader:
        deadline = time.monotonic() + 2.0
        next_signal = time.monotonic()
        while time.monotonic() < deadline:
            reader.read()
            # Spaced, and never while the last one is still pending: two standard signals
            # pending at once coalesce in the kernel (a loaded machine can leave the target
            # unscheduled for longer than any spacing), which would be no fault of a pause.
            if time.monotonic() >= next_signal and not sigusr1_pending(proc.pid):
                os.kill(proc.pid, signal.SIGUSR1)
                sent += 1
                next_signal = time.monotonic() + 0.005
        paused = reader.paused_reads
        assert reader.pause_error is None
    if paused <= 50:
        pytest.skip(
            f"only {paused} reads were paused (a loaded machine: target and reader shared a "
            "CPU, so few reads tore): too few to have raced any signal"
        )
    time.sleep(0.1)
    proc.send_signal(signal.SIGUSR2)
    assert int(read_line(proc)) == sent


TRACER = TARGETS / "tracer.py"  # holds the given threads, handing signals on


def test_a_target_held_by_another_tracer_is_read_without_pausing(interpreter, spawn):
    proc = spawn(interpreter.argv(CHURN))
    assert read_line(proc) == "ready"
    tids = os.listdir(f"/proc/{proc.pid}/task")
    tracer = spawn([sys.executable, TRACER, *tids])
    assert read_line(tracer) == "holding"
    whole = torn = 0
    with StackReader(proc.pid) as reader:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            (thread,) = reader.read()
            if thread.error is None:
                whole += 1
            else:
                assert isinstance(thread.error, TornStack)
                torn += 1
        assert reader.paused_reads == 0
        require_churn(torn > 0)  # no read tore: no pause was ever tried
        assert reader.pause_error is not None and "another tracer" in reader.pause_error
    assert status_field(proc.pid, "TracerPid") == str(tracer.pid), "the debugger's hold broke"
    tracer.kill()
