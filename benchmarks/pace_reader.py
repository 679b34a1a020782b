"""Sample another process with spy_magic's StackReader at a fixed rate, like a profiler would.

    python benchmarks/pace_reader.py PID RATE_HZ DURATION_S

Builds a StackReader for PID, then takes RATE * DURATION snapshots (`read()`), one every
1/RATE seconds on an absolute schedule, sleeping in between, and prints one JSON line:

    {"samples", "errors", "loop_wall_s", "loop_cpu_s", "start_cpu_s", "import_cpu_s",
     "construct_cpu_s", "syscalls"}

`loop_cpu_s` is this process's user+sys CPU time in the sampling loop (reads, sleeps,
pacing). What came before it: `start_cpu_s` (interpreter start-up, until main() runs),
`import_cpu_s` (importing spy_magic.reader) and `construct_cpu_s` (StackReader(pid)). The
parent measures the whole process's CPU itself (os.wait4): that is the figure to compare with
py-spy's.

The schedule is py-spy's: when a read runs late the following ones are taken back to back
until the schedule is met again, so the number of samples is fixed and a sampler that cannot
keep up simply takes longer; `samples / loop_wall_s` is the rate actually achieved.

The stacks are not aggregated or written anywhere: this measures the reader alone.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    start_cpu = cpu_seconds()
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    pid, rate, duration = int(argv[0]), float(argv[1]), float(argv[2])
    # Measure the checkout this file lives in, whether or not it is the one pip installed.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from spy_magic.reader import StackReader

    imported_cpu = cpu_seconds()
    reader = StackReader(pid)
    syscalls_at_start = getattr(reader, "syscalls", reader.mem.syscalls)
    period = 1.0 / rate
    total = max(1, round(rate * duration))
    errors = 0
    clock = time.perf_counter
    sleep = time.sleep
    setup_cpu = cpu_seconds()
    start = clock()
    for i in range(total):
        due = start + i * period
        now = clock()
        if due > now:
            sleep(due - now)
        for thread in reader.read():
            if thread.error is not None:
                errors += 1
    loop_wall = clock() - start
    loop_cpu = cpu_seconds() - setup_cpu
    syscalls = getattr(reader, "syscalls", reader.mem.syscalls) - syscalls_at_start
    reader.close()
    print(
        json.dumps(
            {
                "samples": total,
                "errors": errors,
                "loop_wall_s": loop_wall,
                "loop_cpu_s": loop_cpu,
                "start_cpu_s": start_cpu,
                "import_cpu_s": imported_cpu - start_cpu,
                "construct_cpu_s": setup_cpu - imported_cpu,
                "syscalls": syscalls,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
