"""CPU-bound work split 3:2:1 between function_x, function_y and function_z.

    python cpu_split.py [--rounds N] [--deep] [--truth FILE] [--now]

Each round does a fixed amount of pure-Python work: 3, 2 and 1 units (about 1 ms each) in
the three functions, so the elapsed time measures a profiler's slowdown and the self-time
split is about 50 / 33 / 17 % (the exact truth is timed from inside). Shallow: the
functions are called from the module (stack ~5 frames). `--deep`: each is reached through
recursion, at depths 40, 60 and 85 frames. Each spins in `spin` (one frame above it; the
profilers credit a stack to its innermost named function), which times only its loop.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from truth import Truth, option

TRUTH = Truth()
ITERATIONS_PER_UNIT = 12000


def spin(name, units):
    began = time.perf_counter()
    total = 0
    for i in range(units * ITERATIONS_PER_UNIT):
        total += i * i
    TRUTH.add(name, time.perf_counter() - began)


def function_x():
    spin("function_x", 3)


def function_y():
    spin("function_y", 2)


def function_z():
    spin("function_z", 1)


def descend(levels, work):
    if levels > 0:
        return descend(levels - 1, work)
    return work()


# Frames below each function when --deep: <module> + descend levels + the function itself.
DEPTHS = {function_x: 40, function_y: 60, function_z: 85}


def run_round(deep):
    for work in (function_x, function_y, function_z):
        if deep:
            descend(DEPTHS[work] - 2, work)
        else:
            work()


if __name__ == "__main__":
    rounds = option(sys.argv, "--rounds", 400)
    deep = "--deep" in sys.argv
    TRUTH.start(sys.argv)
    for _ in range(rounds):
        run_round(deep)
    TRUTH.finish(sys.argv)
