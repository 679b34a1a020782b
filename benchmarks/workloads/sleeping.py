"""The spec's example: function_a sleeps 0.1 s, function_b 0.05 s, function_c 0.01 s.

    python sleeping.py [--repeat N] [--truth FILE] [--now]

Self time 62.5 / 31.25 / 6.25 %, wall clock (the functions sleep: a profiler must count
idle time to see them). See truth.py for the protocol.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from truth import Truth, option

TRUTH = Truth()


def timed_sleep(name, seconds):
    began = time.perf_counter()
    time.sleep(seconds)
    TRUTH.add(name, time.perf_counter() - began)


def function_c():
    timed_sleep("function_c", 0.01)


def function_b():
    timed_sleep("function_b", 0.05)
    function_c()


def function_a():
    timed_sleep("function_a", 0.1)
    function_b()


if __name__ == "__main__":
    TRUTH.start(sys.argv)
    for _ in range(option(sys.argv, "--repeat", 20)):
        function_a()
    TRUTH.finish(sys.argv)
