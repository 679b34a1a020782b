"""CPU-bound work split 3:2:1 between three functions (self time 50 % / 33.3 % / 16.7 %).

Each function spins on the clock for a fixed time, so the split holds whatever the machine's
speed. On a busy machine a spin ends late (the process was not running when its time was
up): each function pays that back in its next call, so its total stays its share of the
run (off by one call's lateness at most). `--repeat N` runs the loop N times (default 20,
about 1.2 s).
"""

import sys
import time

# How long each function's last call overran its time: the next call spins that much less.
_overran = {"function_x": 0.0, "function_y": 0.0, "function_z": 0.0}


def function_x():
    end = time.perf_counter() + 0.030 - _overran["function_x"]
    while (now := time.perf_counter()) < end:
        pass
    _overran["function_x"] = now - end


def function_y():
    end = time.perf_counter() + 0.020 - _overran["function_y"]
    while (now := time.perf_counter()) < end:
        pass
    _overran["function_y"] = now - end


def function_z():
    end = time.perf_counter() + 0.010 - _overran["function_z"]
    while (now := time.perf_counter()) < end:
        pass
    _overran["function_z"] = now - end


if __name__ == "__main__":
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 20
    for _ in range(repeat):
        function_x()
        function_y()
        function_z()
