"""What --async costs: the sampler's CPU per sample on an asyncio target, with and without
task stacks, beside CPython 3.15's own sampler (`profiling.sampling --async-aware`) in the
same run where the target is 3.15.

The target is tests/targets/async_graph.py (five named tasks, two of them burning CPU).
Each profiler attaches to it for --duration seconds at --rate Hz, the rounds interleaved;
the figure is the profiler process's CPU (user + system, from wait4) per sample it was due.

    python benchmarks/async_cost.py [--target 3.15|3.14|host] [--rounds 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from common import md_table, resolve_target, say, wait_with_rusage

REPO = Path(__file__).resolve().parents[1]
GRAPH = REPO / "tests" / "targets" / "async_graph.py"


def spy_magic(pid: int, out: Path, rate: float, duration: float, mode: str | None) -> list:
    cmd = [sys.executable, "-m", "spy_magic", "record", "-p", str(pid), "-r", str(rate),
           "-d", str(duration), "-f", "collapsed", "-o", str(out)]  # fmt: skip
    return cmd + (["--async", mode] if mode else [])


def tachyon(target, pid: int, out: str, rate: float, duration: float, mode: str | None) -> list:
    cmd = [*target.argv, "-m", "profiling.sampling", "attach", "-r", str(int(rate)),
           "-d", str(duration), "--collapsed", "-o", out, str(pid)]  # fmt: skip
    return cmd + (["--async-aware", "--async-mode", mode] if mode else [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="3.15", help="3.15, 3.14 (sid root) or host")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--duration", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    target, why = resolve_target(args.target)
    if target is None:
        say(f"skipped: {why}")
        return 0
    with target.scratch("async-cost-") as scratch:
        stop = Path(scratch) / "stop"
        proc = subprocess.Popen(
            [*target.argv, target.script(GRAPH), target.inside(stop)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            proc.stdout.readline()  # every task runs
            runs: dict[str, list[float]] = {}
            due = args.rate * args.duration
            for _ in range(args.rounds):
                for mode in (None, "running", "all"):
                    out = Path(scratch) / "out.txt"
                    label = f"spy_magic {'--async ' + mode if mode else '(plain)'}"
                    cmd = spy_magic(proc.pid, out, args.rate, args.duration, mode)
                    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    usage = wait_with_rusage(p, args.duration + 60)
                    runs.setdefault(label, []).append((usage.ru_utime + usage.ru_stime) / due)
                    if target.minor >= 15:
                        label = (
                            f"profiling.sampling {'--async-mode ' + mode if mode else '(plain)'}"
                        )
                        inside = target.inside(Path(scratch) / "tachyon.txt")
                        cmd = tachyon(target, proc.pid, inside, args.rate, args.duration, mode)
                        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)  # fmt: skip
                        usage = wait_with_rusage(p, args.duration + 60)
                        cpu = (usage.ru_utime + usage.ru_stime) / due
                        runs.setdefault(label, []).append(cpu)
        finally:
            stop.touch()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    say(f"target: {target.label}; {args.rate:g} Hz for {args.duration:g} s, {args.rounds} rounds")
    say("CPU of the whole profiler process (start-up included) per sample it was due, ms:")
    rows = [[label, " / ".join(f"{v * 1e3:.2f}" for v in values), f"{min(values) * 1e3:.2f}"]
            for label, values in runs.items()]  # fmt: skip
    say(md_table(["profiler", "each round", "best"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
