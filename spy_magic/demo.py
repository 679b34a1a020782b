"""`python -m spy_magic demo`: run the bundled example and show where its time went.

It launches the spec's example script, reads its stacks from outside at a steady rate with
the stack reader, and prints each function's share of the samples next to the true share.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter

from .demos import demo_path
from .reader import NotReady, StackReader

EXPECTED = {"function_a": 62.5, "function_b": 31.25, "function_c": 6.25}


def _attach(pid: int, timeout: float = 5.0) -> StackReader:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return StackReader(pid)
        except NotReady:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def run_demo(rate: float = 100.0, repeat: int = 10, python: str = sys.executable) -> int:
    script = demo_path("slow_script")
    proc = subprocess.Popen([python, str(script), "--repeat", str(repeat)])
    own: Counter[str] = Counter()
    samples = errors = 0
    try:
        reader = _attach(proc.pid)
        # Wait until the script's own code runs, so start-up does not count.
        while proc.poll() is None and not any(
            f.filename == str(script) for t in reader.read() for f in t.frames
        ):
            time.sleep(0.002)
        period = 1.0 / rate
        next_at = time.monotonic()
        while proc.poll() is None:
            try:
                threads = reader.read()
            except Exception:
                break
            samples += 1
            for thread in threads:
                if thread.error is not None:
                    errors += 1
                elif thread.frames:
                    own[thread.frames[0].name] += 1
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        reader.close()
    finally:
        proc.wait()
    total = sum(own.values()) or 1
    print(f"{samples} samples at {rate:g} Hz of {script.name} ({errors} errors)\n")
    print(f"{'function':<14}{'self %':>9}{'expected %':>12}")
    for name, count in own.most_common():
        expected = EXPECTED.get(name)
        exp = f"{expected:.2f}" if expected is not None else "-"
        print(f"{name:<14}{100 * count / total:>9.2f}{exp:>12}")
    return 0
