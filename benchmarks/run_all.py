"""The whole benchmark suite, one command: every script in turn, one Markdown report.

    python benchmarks/run_all.py           # about an hour on 2 cores (45 min without the sid root)
    python benchmarks/run_all.py --quick   # about 14 minutes: shorter runs, fewer rounds

Runs, in order, each with this Python and printing its own tables and verdicts:

1. head_to_head.py: spy_magic vs py-spy (pausing and --nonblocking) vs pyinstrument on
   workloads with a known answer: attribution error, target slowdown, torn samples, and the
   memory of a 10-minute (quick: 1-minute) 1 kHz recording.
2. engine.py: the highest rate sustained at depth 85 and the lateness at each rate, against
   py-spy in the same run.
3. reader_cost.py: what one snapshot costs, and CPU per sample against py-spy at 1 kHz.
4. When the Debian sid root with CPython 3.15 exists (tools/install_pythons.sh sid;
   SPY_MAGIC_PYTHONS moves it): head_to_head.py and reader_cost.py again with `--target
   3.15`, the targets chrooted there, and CPython 3.15's own sampler (Tachyon) among the
   tools. Without the root, those runs are skipped and the report says why.

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

from common import sid_python

HERE = Path(__file__).resolve().parent
SCRIPTS = ("head_to_head.py", "engine.py", "reader_cost.py")
# (script, its arguments): the 3.15 runs, when the sid root is there. head_to_head's memory
# run is left out (the host run has it).
TARGET_315 = (("head_to_head.py", ("--target", "3.15", "--memory-minutes", "0")),
              ("reader_cost.py", ("--target", "3.15")))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every script's --quick")
    parser.add_argument("-o", "--output", help="also write the report to this file")
    parser.add_argument("--only", choices=SCRIPTS, action="append", help="run only these")
    args = parser.parse_args()
    report: list[str] = []
    failures = []
    jobs: list[tuple[str, tuple[str, ...]]] = [(script, ()) for script in SCRIPTS]
    sid, why = sid_python(15)
    if sid is not None:
        jobs += TARGET_315
    else:
        skipped = f"\n_CPython 3.15 runs skipped: {why}_\n"
        report.append(skipped)
        sys.stdout.write(skipped)
    for script, extra in jobs:
        if args.only and script not in args.only:
            continue
        command = [sys.executable, str(HERE / script), *extra, *(["--quick"] if args.quick else [])]
        print(f"[run_all] {' '.join(command[1:])}", file=sys.stderr, flush=True)
        began = time.monotonic()
        result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        took = time.monotonic() - began
        report.append(result.stdout)
        name = " ".join([script, *extra])
        report.append(f"\n_{name}: {took / 60:.1f} minutes, exit status {result.returncode}_\n")
        sys.stdout.write(report[-2] + report[-1])
        sys.stdout.flush()
        if result.returncode != 0:
            failures.append(name)
    if args.output:
        Path(args.output).write_text("".join(report))
    if failures:
        print(f"[run_all] failed: {', '.join(failures)}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
