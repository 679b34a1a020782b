"""A multiprocessing pool of 3 workers, each spinning for a known time; the parent waits.

The workers start their tasks together, one task each.

Prints the worker pids at the end. `--seconds S` (default 2) is each worker's work;
`--until PATH` makes each spin on after that until PATH exists (a test that needs so many
samples of each worker creates it once it has them, whatever the machine's load);
`--start-method fork|spawn|forkserver` (default fork) how workers start.
"""

import multiprocessing
import os
import sys
import time

WORKERS = 3
_start_together = None


def _join(barrier):
    global _start_together
    _start_together = barrier


def worker_task(seconds, until=None):
    # Every worker waits for the others first: a worker that started late (a slow machine,
    # spawn's fresh interpreter) still gets its own task instead of an early one taking two.
    if _start_together is not None:  # None in a pool of the caller's own
        _start_together.wait(timeout=120)
    end = time.perf_counter() + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            if until is None or os.path.exists(until):
                break
            end = now + 0.01  # looked for once in 10 ms: the spin stays this function's
    return os.getpid()


def main(seconds, method, until=None):
    context = multiprocessing.get_context(method)
    barrier = context.Barrier(WORKERS)
    with context.Pool(WORKERS, initializer=_join, initargs=(barrier,)) as pool:
        pids = pool.starmap(worker_task, [(seconds, until)] * WORKERS, chunksize=1)
    print(" ".join(map(str, sorted(set(pids)))), flush=True)


if __name__ == "__main__":
    args = sys.argv
    seconds = float(args[args.index("--seconds") + 1]) if "--seconds" in args else 2.0
    method = args[args.index("--start-method") + 1] if "--start-method" in args else "fork"
    until = args[args.index("--until") + 1] if "--until" in args else None
    main(seconds, method, until)
