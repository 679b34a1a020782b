"""What a snapshot of a process with many threads costs StackReader: reads per second.

    python benchmarks/many_threads.py                    # 1000 threads, pyenv 3.9 and 3.12
    python benchmarks/many_threads.py --threads 200 --busy 0,20 --seconds 5
    python benchmarks/many_threads.py --python /usr/bin/python3.11

The target (benchmarks/workloads/many_threads.py) starts --threads threads, parked on an
event a few calls deep, the first --busy of them computing in short bursts between 1 ms
sleeps. For each target the reader of this checkout reads back to back for --seconds and
prints, per interpreter and busy count: reads per second (wall clock), the median and p90
wall ms per read, the median CPU ms per read (what the read costs, whatever else the
machine runs), snapshots whose stacks were all kept as they were, and syscalls per read.
A sample is due every 10 ms at 100 Hz: CPU ms per read under 10 means the reader keeps up.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKLOAD = HERE / "workloads" / "many_threads.py"
sys.path.insert(0, str(ROOT))  # measure this checkout
from common import fmt, git_state, loadavg, md_table, percentile, progress, say  # noqa: E402

from spy_magic.reader import StackReader  # noqa: E402

DEFAULT_PYTHONS = (
    "/root/.pyenv/versions/3.9*/bin/python",
    "/root/.pyenv/versions/3.12*/bin/python",
)


def measure(python: str, threads: int, busy: int, seconds: float) -> list[str]:
    proc = subprocess.Popen(
        [python, str(WORKLOAD), str(threads), str(busy)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        ready = proc.stdout.readline()
        if not ready.startswith(b"ready"):
            return ["target did not start", "", "", "", "", ""]
        with StackReader(proc.pid) as reader:
            for _ in range(5):  # the first reads walk every thread with single reads
                reader.read()
            walls: list[float] = []
            cpus: list[float] = []
            syscalls = reader.syscalls
            seen = errors = 0
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                c0, t0 = time.process_time(), time.perf_counter()
                stacks = reader.read()
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                seen = len(stacks)
                errors += sum(1 for s in stacks if s.error is not None)
            syscalls = (reader.syscalls - syscalls) / len(walls)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return [
        str(seen),
        fmt(len(walls) / sum(walls)),
        f"{fmt(1e3 * statistics.median(walls), 1)} / {fmt(1e3 * percentile(walls, 90), 1)}",
        fmt(1e3 * statistics.median(cpus), 1),
        fmt(syscalls, 1),
        str(errors),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1000)
    ap.add_argument("--busy", default="0,50", help="busy thread counts, comma-separated")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--python", action="append", help="target interpreter(s)")
    args = ap.parse_args(argv)
    pythons = args.python or [
        sorted(glob.glob(pattern))[-1] for pattern in DEFAULT_PYTHONS if glob.glob(pattern)
    ]
    say(f"# StackReader with {args.threads} threads ({git_state()}, load {loadavg()})")
    say()
    rows = []
    for python in pythons:
        for busy in (int(b) for b in args.busy.split(",")):
            progress(f"{python}: {args.threads} threads, {busy} busy")
            version = os.path.basename(os.path.dirname(os.path.dirname(python))) or python
            rows.append([version, str(busy), *measure(python, args.threads, busy, args.seconds)])
    headers = ["Python", "busy", "threads read", "reads/s", "wall ms med / p90", "CPU ms med",
               "syscalls/read", "thread errors"]  # fmt: skip
    say(md_table(headers, rows))
    say()
    say(f"Load average at the end: {loadavg()}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
