"""Memory of a long `record`: does the sampler process stay flat? This checkout against another.

    python benchmarks/memory.py                     # 30 minutes
    python benchmarks/memory.py --minutes 8         # shorter
    python benchmarks/memory.py --rival /work/main  # the checkout to compare with (default:
                                                    # none; give one to see its growth)

Runs `python -m spy_magic record --pid PID --rate 1000 -f html` on a depth-85 CPU-bound
target (`workloads/deep_stack.py 85 cpu`, one target per recorder so that they do not share
pauses), for this checkout and for the rival side by side, in the same minutes. Every 10 s it
reads each recorder's resident memory (VmRSS of the sampler process). Goal: after the first
minute, within ±5 MB of the size at 1 minute. Prints a Markdown table on stdout (RSS per
minute, samples, the largest departure from the 1-minute size, the verdict, and how long
after sampling ended the profile was written); progress goes to stderr. The recorders are
waited for however long their write takes (give the run that much more time).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKLOAD = HERE / "workloads" / "deep_stack.py"
sys.path.insert(0, str(HERE))
from common import git_state, loadavg, md_table, progress, say  # noqa: E402

EVERY_S = 10.0
FLAT_MIB = 5.0
SETTLE_MIN = 1.0


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def start_target(python: str) -> subprocess.Popen:
    proc = subprocess.Popen([python, str(WORKLOAD), "85", "cpu"], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("the target did not start")
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    parser.add_argument("--rate", type=float, default=1000.0, help="Hz (default 1000)")
    parser.add_argument("--rival", type=Path, default=None,
                        help="another checkout to run side by side (e.g. /work/main)")  # fmt: skip
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for recorders and targets (default: this)")  # fmt: skip
    args = parser.parse_args()
    seconds = args.minutes * 60
    checkouts = {"this checkout": ROOT}
    if args.rival is not None:
        checkouts[f"rival ({args.rival})"] = args.rival.resolve()
    say(f"## Memory of a {args.minutes:g}-minute {args.rate:g} Hz `record` (depth 85, cpu)\n")
    say(f"{git_state()}; load {loadavg()}; RSS read every {EVERY_S:g} s\n")
    targets, recorders = {}, {}
    with tempfile.TemporaryDirectory(prefix="spy_memory-") as tmp:
        try:
            for name, checkout in checkouts.items():
                targets[name] = start_target(args.python)
                out = Path(tmp) / f"{len(recorders)}.html"
                env = {**os.environ, "PYTHONPATH": str(checkout)}
                recorders[name] = subprocess.Popen(
                    [args.python, "-m", "spy_magic", "record", "--pid", str(targets[name].pid),
                     "--rate", str(args.rate), "--duration", str(seconds), "-f", "html",
                     "-o", str(out)],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                    cwd=tmp,
                )  # fmt: skip
            series: dict[str, list[tuple[float, float]]] = {name: [] for name in recorders}
            began = time.monotonic()
            tick = 0
            while time.monotonic() - began < seconds:
                tick += 1
                time.sleep(max(0.0, began + tick * EVERY_S - time.monotonic()))
                at = time.monotonic() - began
                for name, proc in recorders.items():
                    mib = rss_mib(proc.pid) if proc.poll() is None else None
                    if mib is not None and at <= seconds:
                        series[name].append((at, mib))
                if tick % 6 == 0:
                    shown = {n: f"{s[-1][1]:.1f}" for n, s in series.items() if s}
                    progress(f"{at / 60:.1f} min: RSS MiB {shown}")
            for target in targets.values():  # sampled for long enough: free their CPUs
                target.kill()
            outputs, writing = {}, {}
            for name, proc in recorders.items():  # the profile is written after sampling
                outputs[name] = proc.communicate()[0]
                writing[name] = time.monotonic() - began - seconds
                progress(f"{name}: done {writing[name]:.0f} s after the recording's end")
        finally:
            for proc in (*recorders.values(), *targets.values()):
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
    marks = sorted({m for m in (0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60) if m < args.minutes}
                   | {args.minutes})  # fmt: skip
    rows = []
    for name, points in series.items():

        def at(minute: float, points=points) -> float | None:
            near = [mib for t, mib in points if abs(t - minute * 60) <= EVERY_S / 2 + 1]
            if not near and points and minute >= args.minutes:
                return points[-1][1]
            return near[0] if near else None

        base = at(SETTLE_MIN)
        later = [mib for t, mib in points if t > SETTLE_MIN * 60]
        spread = max((abs(mib - base) for mib in later), default=0.0) if base else float("nan")
        found = re.search(r"(\d+) samples in ([\d.]+) s", outputs[name])
        samples = found.group(1) if found else "?"
        cells = [f"{v:.1f}" if v is not None else "-" for v in map(at, marks)]
        verdict = "flat" if spread <= FLAT_MIB else f"grows ({spread:+.1f} MiB)"
        rows.append([name, *cells, samples, f"{spread:.1f}", verdict, f"{writing[name]:.0f}"])
    headers = ["recorder", *(f"RSS MiB at {m:g} min" for m in marks), "samples",
               f"most off the {SETTLE_MIN:g}-min RSS, MiB", f"±{FLAT_MIB:g} MiB",
               "s from the end to written"]  # fmt: skip
    say(md_table(headers, rows))
    for name, out in outputs.items():
        progress(f"{name}: {out.strip().splitlines()[-3:] if out else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
