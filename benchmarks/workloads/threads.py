"""Four threads: two CPU-bound, two sleeping.

    python threads.py [--seconds S] [--truth FILE] [--now]

The CPU threads alternate crunch_big (2 units of pure-Python work) and crunch_small (1
unit); they share the GIL, so each also waits for it, inside those functions (wall clock
counts that). The sleeping threads alternate nap_long (30 ms) and nap_short (10 ms). The
main thread waits in join (not a named function). Truth: wall seconds per function, summed
over threads.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from truth import Truth, burn, option

TRUTH = Truth()
STOP = threading.Event()


def crunch_big():
    began = time.perf_counter()
    burn(2)
    TRUTH.add("crunch_big", time.perf_counter() - began)


def crunch_small():
    began = time.perf_counter()
    burn(1)
    TRUTH.add("crunch_small", time.perf_counter() - began)


def nap_long():
    began = time.perf_counter()
    time.sleep(0.03)
    TRUTH.add("nap_long", time.perf_counter() - began)


def nap_short():
    began = time.perf_counter()
    time.sleep(0.01)
    TRUTH.add("nap_short", time.perf_counter() - began)


def cruncher():
    while not STOP.is_set():
        crunch_big()
        crunch_small()


def sleeper():
    while not STOP.is_set():
        nap_long()
        nap_short()


if __name__ == "__main__":
    seconds = option(sys.argv, "--seconds", 4.0)
    TRUTH.start(sys.argv)
    workers = [threading.Thread(target=t, name=f"{t.__name__}-{i}")
               for t in (cruncher, sleeper) for i in (1, 2)]  # fmt: skip
    for w in workers:
        w.start()
    time.sleep(seconds)
    STOP.set()
    for w in workers:
        w.join()
    TRUTH.finish(sys.argv)
