"""CPU-bound work split 3:2:1 between three functions (self time 50 % / 33.3 % / 16.7 %).

Each function spins on the clock for a fixed time, so the split holds whatever the machine's
speed. `--repeat N` runs the loop N times (default 20, about 1.2 s).
"""

import sys
import time


def function_x():
    end = time.perf_counter() + 0.030
    while time.perf_counter() < end:
        pass


def function_y():
    end = time.perf_counter() + 0.020
    while time.perf_counter() < end:
        pass


def function_z():
    end = time.perf_counter() + 0.010
    while time.perf_counter() < end:
        pass


if __name__ == "__main__":
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 20
    for _ in range(repeat):
        function_x()
        function_y()
        function_z()
