"""What `Profile.add` costs the processing thread per sample: this checkout against another.

    python benchmarks/profile_add.py                       # this checkout only
    python benchmarks/profile_add.py --rival /work/main    # and main, same samples, same run

Records 5 s at 1 kHz of a depth-85 CPU-bound target (`workloads/deep_stack.py 85 cpu`) once,
as jsonl, then in a fresh process per checkout reads it back and feeds its samples to a new
`Profile` over and over, timing CPU (`time.process_time`) per sample: rounds interleaved
between the checkouts, median and best of them. The rival runs with its own `Profile()`;
this checkout both with `keep_samples=False` (what `record -f html` now does) and `True`.
Also the views a live display polls (stack_counts + functions + summarize) once filled.
Prints a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKLOAD = HERE / "workloads" / "deep_stack.py"
sys.path.insert(0, str(HERE))
from common import git_state, loadavg, md_table, progress, say  # noqa: E402

# Runs in the measured checkout: argv = jsonl path, keep ("1", "0" or "-": not a parameter).
PROBE = r"""
import json, sys, time
from spy_magic.profile import Profile, read_jsonl
from spy_magic.profile.summary import summarize
samples = list(read_jsonl(sys.argv[1]).samples)
make = (lambda: Profile()) if sys.argv[2] == "-" else (
    lambda: Profile(keep_samples=sys.argv[2] == "1"))
p = make()
p.extend(samples)  # warm
t0 = time.process_time()
p = make()
for s in samples:
    p.add(s)
add = (time.process_time() - t0) / len(samples)
t0 = time.process_time()
for _ in range(3):
    p.stack_counts(); p.functions(by="function"); summarize(p)
views = (time.process_time() - t0) / 3
print(json.dumps({"add_us": add * 1e6, "views_ms": views * 1e3, "samples": len(samples)}))
"""


def record(tmp: Path, seconds: float) -> Path:
    target = subprocess.Popen([sys.executable, str(WORKLOAD), "85", "cpu"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "ready"
        out = tmp / "rec.jsonl"
        subprocess.run(
            [sys.executable, "-m", "spy_magic", "record", "--pid", str(target.pid), "--rate",
             "1000", "--duration", str(seconds), "-f", "jsonl", "-o", str(out)],
            check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        )  # fmt: skip
        return out
    finally:
        target.kill()
        target.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rival", type=Path, default=None, help="another checkout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="recording length")
    args = parser.parse_args()
    runs = {"this checkout, keep_samples=False": (ROOT, "0"),
            "this checkout, keep_samples=True": (ROOT, "1")}  # fmt: skip
    if args.rival is not None:
        runs[f"rival ({args.rival}), Profile()"] = (args.rival.resolve(), "-")
    say("## Profile.add CPU per sample (depth 85, 1 kHz recording)\n")
    say(f"{git_state()}; load {loadavg()}\n")
    results: dict[str, list[dict]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory(prefix="spy_add-") as tmp:
        path = record(Path(tmp), args.seconds)
        for round_ in range(args.rounds):
            for name, (checkout, keep) in runs.items():
                out = subprocess.run(
                    [sys.executable, "-c", PROBE, str(path), keep], check=True, text=True,
                    capture_output=True, env={**os.environ, "PYTHONPATH": str(checkout)},
                )  # fmt: skip
                results[name].append(json.loads(out.stdout))
            progress(f"round {round_ + 1}/{args.rounds} done")
    rows = []
    for name, got in results.items():
        adds = [r["add_us"] for r in got]
        views = [r["views_ms"] for r in got]
        rows.append([name, str(got[0]["samples"]), f"{statistics.median(adds):.2f}",
                     f"{min(adds):.2f}", f"{statistics.median(views):.1f}"])  # fmt: skip
    say(md_table(["profile", "samples", "add µs/sample (median)", "add µs (best)",
                  "views ms (median)"], rows))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
