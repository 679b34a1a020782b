"""spy_magic only reads its target: CPython 3.15's own sampler writes into it, we never do.

3.15's sampler caches unchanged frames by writing `last_profiled_frame` into every thread
state of the process it samples. The field starts NULL and nothing but such a profiler sets
it, so it tells whether a profiler wrote to the target: after spy_magic it is still NULL
(reads with the threads paused included); after 3.15's sampler (the control, which shows the
check can fail) it is not.
"""

from __future__ import annotations

import struct
import subprocess
import time

import pytest
from conftest import TARGETS, read_line, require_interpreter

from spy_magic.reader import StackReader
from spy_magic.reader.layouts import LAYOUTS

CHURN = TARGETS / "churn.py"


def last_profiled_frames(reader: StackReader) -> list[int]:
    """Every thread state's `last_profiled_frame`, at the offset the target itself gives."""
    raw = reader.mem.read(reader.interpreter.runtime_address, LAYOUTS["3.15"]["debug.size"])
    position = LAYOUTS["3.15"]["debug.thread_state.last_profiled_frame"]
    offset = struct.unpack_from("<Q", raw, position)[0]
    assert 0 < offset < reader.layout["tstate.size"]
    values, tstate = (
        [],
        reader.mem.read_u64(reader.interp_address + reader.layout["interp.threads_head"]),
    )
    while tstate and len(values) < 1000:
        values.append(reader.mem.read_u64(tstate + offset))
        tstate = reader.mem.read_u64(tstate + reader.layout["tstate.next"])
    return values


def test_sampling_never_writes_to_the_target(spawn):
    interp = require_interpreter("sid-3.15")
    proc = spawn(interp.argv(CHURN))
    assert read_line(proc) == "ready"
    with StackReader(proc.pid) as reader:
        assert last_profiled_frames(reader) == [0]
        deadline = time.monotonic() + 1.5
        reads = 0
        while time.monotonic() < deadline:
            reader.read()
            reads += 1
        assert reads > 100
        paused = reader.paused_reads
        assert last_profiled_frames(reader) == [0], "spy_magic wrote into its target"

        # The control: 3.15's own sampler, on the same process, does write there.
        out = "/tmp/spy_magic-read-only-control.txt"
        control = subprocess.run(
            ["chroot", interp.root, interp.path, "-m", "profiling.sampling", "attach",
             "-d", "1", "-r", "1000", "--collapsed", "-o", out, str(proc.pid)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if control.returncode != 0:
            pytest.skip(f"3.15's sampler could not attach for the control: {control.stderr[-300:]}")
        assert any(last_profiled_frames(reader)), "the control wrote nothing: the check is blind"
    print(f"{reads} reads ({paused} paused) left last_profiled_frame NULL")
