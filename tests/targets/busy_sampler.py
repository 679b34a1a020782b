"""Sample PID from a process that must share one CPU with two busy processes, at nice +10.

    python busy_sampler.py PID RATE SECONDS

Forces what a loaded machine does to a sampler: it is not run when its deadlines come.
Prints one JSON line: samples, rate changes, final rate, late counts by cause, stale skips.
"""

import json
import multiprocessing
import os
import sys
import time

from spy_magic.engine import Sampler


def spin():
    while True:
        pass


if __name__ == "__main__":
    pid, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    hogs = [multiprocessing.Process(target=spin, daemon=True) for _ in range(2)]
    for hog in hogs:
        hog.start()
    os.nice(10)
    time.sleep(0.2)
    sampler = Sampler(pid, rate=rate, duration=seconds)
    samples = len(list(sampler))
    for hog in hogs:
        hog.terminate()
    meta = sampler.metadata()
    print(json.dumps({
        "samples": samples,
        "changes": [change.reason for change in sampler.rate_changes],
        "rate": sampler.rate,
        "late_behind": meta.get("late_behind"),
        "late_unscheduled": meta.get("late_unscheduled"),
        "stale": meta["dropped_stale"],
    }))
