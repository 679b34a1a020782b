"""What a process with many threads costs: StackReader reads per second, then whole-process
`record` runs of spy_magic and py-spy at 100 Hz in the same run.

    python benchmarks/many_threads.py                    # 1000 threads, pyenv 3.9 and 3.12
    python benchmarks/many_threads.py --threads 200 --busy 0,20 --seconds 5
    python benchmarks/many_threads.py --python /usr/bin/python3.11 --record-seconds 0

The target (benchmarks/workloads/many_threads.py) starts --threads threads, parked on an
event a few calls deep, the first --busy of them computing in short bursts between 1 ms
sleeps. For each target the reader of this checkout reads back to back for --seconds and
prints, per interpreter and busy count: reads per second (wall clock), the median and p90
wall ms per read, the median CPU ms per read (what the read costs, whatever else the
machine runs), snapshots whose stacks were all kept as they were, and syscalls per read.
A sample is due every 10 ms at 100 Hz: CPU ms per read under 10 means the reader keeps up.

Then, on one target per interpreter and busy count, the recorders one after another (the
order turned round on each round, --rounds): `spy_magic record` (pausing, its default, and
--nonblocking) and py-spy (--nonblocking, and pausing, its default), each for
--record-seconds at --rate. Per run: samples achieved / asked, the sampler process's CPU
per sample (os.wait4 rusage: start-up, the engine and the output included), samples per
second of the run's wall time (start-up included), and the threads each sample held
(~ --threads + 1 when every thread is read; py-spy's own count is of thread stacks,
so its sampling moments are taken as its stacks over --threads + 1). py-spy takes
rate x duration samples however long that takes: a run is interrupted (SIGINT, it then
writes its output) past twice its
duration.
"""

from __future__ import annotations

import argparse
import glob
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKLOAD = HERE / "workloads" / "many_threads.py"
sys.path.insert(0, str(ROOT))  # measure this checkout
from common import (  # noqa: E402
    fmt,
    git_state,
    loadavg,
    md_table,
    percentile,
    progress,
    say,
    wait_with_rusage,
)
from profilers import PySpy, SpyMagic  # noqa: E402

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


def record_runs(python: str, threads: int, busy: int, seconds: int, rate: int, rounds: int):
    """{tool name: [(samples, asked, CPU s, threads per sample, wall s), ...]} on one target."""
    tools = [SpyMagic(), SpyMagic(nonblocking=True), PySpy(nonblocking=True), PySpy(False)]
    tools = [t for t in tools if getattr(t, "binary", True)]  # py-spy only where installed
    proc = subprocess.Popen(
        [python, str(WORKLOAD), str(threads), str(busy)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    out: dict[str, list[tuple[int, int, float, float, float]]] = {t.name: [] for t in tools}
    try:
        if not proc.stdout.readline().startswith(b"ready"):
            return out
        with tempfile.TemporaryDirectory(prefix="spy_magic-threads-") as tmp:
            for round_ in range(rounds):
                for tool in tools if round_ % 2 == 0 else tools[::-1]:
                    progress(f"  {tool.name}: {seconds} s at {rate} Hz, round {round_ + 1}")
                    path, log = Path(tmp) / "out", Path(tmp) / "log"
                    with open(log, "wb") as console:
                        began = time.monotonic()
                        sampler = subprocess.Popen(
                            tool.command(proc.pid, rate, path, seconds),
                            stdout=console,
                            stderr=subprocess.STDOUT,
                            env=tool.env(),
                            cwd=ROOT,
                        )
                        # py-spy stops after rate x seconds samples, however long they take:
                        # past twice the duration it is interrupted (it then writes its output).
                        usage = wait_with_rusage(sampler, 2 * seconds + 5, signal.SIGINT)
                        wall = time.monotonic() - began
                    traces = 0

                    def visit(frames, count):
                        nonlocal traces
                        traces += count

                    text = log.read_text(errors="replace")
                    recording = tool.read(path, text, visit) if path.exists() else None
                    samples = recording.samples if recording else 0
                    if isinstance(tool, PySpy):
                        # Its "Samples:" counts thread stacks: sampling moments are those over
                        # the threads (all of them are in every sample, idle ones included).
                        samples = round(traces / (threads + 1))
                    out[tool.name].append(
                        (samples, rate * seconds, usage.ru_utime + usage.ru_stime,
                         traces / samples if samples else 0.0, wall)
                    )  # fmt: skip
                    path.unlink(missing_ok=True)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1000)
    ap.add_argument("--busy", default="0,50", help="busy thread counts, comma-separated")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--python", action="append", help="target interpreter(s)")
    ap.add_argument("--record-seconds", type=int, default=10, help="0: reads only")
    ap.add_argument("--rate", type=int, default=100, help="record's sampling rate, Hz")
    ap.add_argument("--rounds", type=int, default=1, help="record runs per tool and target")
    ap.add_argument("--record-busy", default="0,10", help="busy counts for the record runs")
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
    if args.record_seconds > 0:
        say(f"## Whole-process record, {args.rate} Hz, {args.record_seconds} s a run")
        say()
        rows = []
        for python in pythons:
            version = os.path.basename(os.path.dirname(os.path.dirname(python))) or python
            for busy in (int(b) for b in args.record_busy.split(",")):
                progress(f"{python}: record, {args.threads} threads, {busy} busy")
                runs = record_runs(python, args.threads, busy, args.record_seconds, args.rate,
                                   args.rounds)  # fmt: skip
                for name, results in runs.items():
                    if not results:
                        continue
                    rows.append([
                        version, str(busy), name,
                        " / ".join(f"{s} of {a}" for s, a, *_ in results),
                        " / ".join(fmt(s / a, 2) for s, a, *_ in results),
                        " / ".join(fmt(s / w) for s, _, _, _, w in results),
                        " / ".join(fmt(1e3 * c / s, 2) if s else "-"
                                   for s, _, c, *_ in results),
                        " / ".join(fmt(t) for _, _, _, t, _ in results),
                    ])  # fmt: skip
        headers = ["Python", "busy", "tool", "samples", "achieved / asked", "Hz (wall)",
                   "CPU ms per sample", "threads per sample"]  # fmt: skip
        say(md_table(headers, rows))
        say()
    say(f"Load average at the end: {loadavg()}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
