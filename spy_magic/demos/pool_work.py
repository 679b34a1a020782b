"""A multiprocessing pool of 3 workers, each spinning for a known time; the parent waits.

Prints the worker pids at the end. `--seconds S` (default 2) is each worker's work;
`--start-method fork|spawn|forkserver` (default fork) how workers start.
"""

import multiprocessing
import os
import sys
import time


def worker_task(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return os.getpid()


def main(seconds, method):
    context = multiprocessing.get_context(method)
    with context.Pool(3) as pool:
        pids = pool.map(worker_task, [seconds] * 3, chunksize=1)
    print(" ".join(map(str, sorted(set(pids)))), flush=True)


if __name__ == "__main__":
    args = sys.argv
    seconds = float(args[args.index("--seconds") + 1]) if "--seconds" in args else 2.0
    method = args[args.index("--start-method") + 1] if "--start-method" in args else "fork"
    main(seconds, method)
