"""The whole benchmark suite, one command: every script in turn, one Markdown report.

    python benchmarks/run_all.py           # about 45 minutes on 2 cores
    python benchmarks/run_all.py --quick   # about 8 minutes: shorter runs, fewer rounds

Runs, in order, each with this Python and printing its own tables and verdicts:

1. head_to_head.py: spy_magic vs py-spy (pausing and --nonblocking) vs pyinstrument on
   workloads with a known answer: attribution error, target slowdown, torn samples, and the
   memory of a 10-minute (quick: 1-minute) 1 kHz recording.
2. engine.py: the highest rate sustained at depth 85 and the lateness at each rate, against
   py-spy in the same run.
3. reader_cost.py: what one snapshot costs, and CPU per sample against py-spy at 1 kHz.

Needs `pip install -e '.[bench]'` (py-spy and pyinstrument). The report goes to stdout
(`-o FILE` also writes it there); progress to stderr. A script that fails is reported and
the suite carries on; the exit status says whether all of them succeeded.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("head_to_head.py", "engine.py", "reader_cost.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every script's --quick")
    parser.add_argument("-o", "--output", help="also write the report to this file")
    parser.add_argument("--only", choices=SCRIPTS, action="append", help="run only these")
    args = parser.parse_args()
    report: list[str] = []
    failures = []
    for script in args.only or SCRIPTS:
        command = [sys.executable, str(HERE / script), *(["--quick"] if args.quick else [])]
        print(f"[run_all] {' '.join(command[1:])}", file=sys.stderr, flush=True)
        began = time.monotonic()
        result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        took = time.monotonic() - began
        report.append(result.stdout)
        report.append(f"\n_{script}: {took / 60:.1f} minutes, exit status {result.returncode}_\n")
        sys.stdout.write(report[-2] + report[-1])
        sys.stdout.flush()
        if result.returncode != 0:
            failures.append(script)
    if args.output:
        Path(args.output).write_text("".join(report))
    if failures:
        print(f"[run_all] failed: {', '.join(failures)}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
