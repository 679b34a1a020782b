"""What the per-thread extras cost a snapshot: `<GC>` frames (the CLI's default), opcodes,
exception mode; against the plain reader, in the same run, on the same target process.

    python benchmarks/extras_cost.py            # pyenv 3.8-3.13, the sid root's 3.14/3.15
    python benchmarks/extras_cost.py --rounds 5

Per interpreter one target (workloads/deep_stack.py, depth 30, asleep or busy on top); one
StackReader per variant, interleaved A B C D A B C D ... in rounds of 200 reads each, CPU
time of this thread per read (thread_time: a busy machine's waiting does not count), median
over the rounds, and syscalls per read (the reader's own count: exact, whatever the load).
Prints a Markdown table on stdout, progress on stderr.
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
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from common import TargetPython, md_table, progress, python_version, sid_python  # noqa: E402

from spy_magic.reader import StackReader  # noqa: E402

WORKLOAD = HERE / "workloads" / "deep_stack.py"
VARIANTS = {
    "plain": {},
    "gc": {"gc": True},
    "gc + opcodes": {"gc": True, "opcodes": True},
    "exception": {"exceptions": True},
}


def targets() -> list[TargetPython]:
    found = []
    for path in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python"))):
        version = python_version([path])
        if version and version >= (3, 8):
            found.append(TargetPython(".".join(map(str, version)), (path,), version))
    for minor in (14, 15):
        target, _why = sid_python(minor)
        if target is not None:
            found.append(target)
    return found


def measure(target: TargetPython, kind: str, rounds: int) -> dict[str, float]:
    argv = [*target.argv, target.script(WORKLOAD), "30", kind]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.2)
        readers = {name: StackReader(proc.pid, **kw) for name, kw in VARIANTS.items()}
        for reader in readers.values():
            reader.read()
        per_read: dict[str, list[float]] = {name: [] for name in readers}
        calls = {name: 0 for name in readers}
        for _ in range(rounds):
            for name, reader in readers.items():
                before = reader.syscalls
                start = time.thread_time()
                for _ in range(200):
                    reader.read()
                per_read[name].append((time.thread_time() - start) / 200)
                calls[name] += reader.syscalls - before
        for reader in readers.values():
            reader.close()
        cost = {name: statistics.median(values) for name, values in per_read.items()}
        return cost, {name: n / (200 * rounds) for name, n in calls.items()}
    finally:
        proc.kill()
        proc.wait()


def _cell(cost: dict[str, float], name: str) -> str:
    """ "119 (+21%)": µs per read, and the change from the plain reader."""
    text = f"{cost[name] * 1e6:.0f}"
    if name != "plain":
        text += f" ({(cost[name] - cost['plain']) / cost['plain']:+.0%})"
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    rows = []
    for target in targets():
        for kind in ("sleep", "cpu"):
            progress(f"{target.label} {kind}")
            cost, calls = measure(target, kind, args.rounds)
            cells = [f"{_cell(cost, name)} · {calls[name]:.1f}" for name in VARIANTS]
            rows.append([target.label, kind, *cells])
    headers = ["target", "top of stack", *(f"{n}: µs · syscalls" for n in VARIANTS)]
    print(md_table(headers, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
