"""Spins in three functions for the shares given (`--split 3:2:1`: 50 %, 33 %, 17 %), so two
runs with different splits differ by known amounts; `steady` takes the same time in every
split (a change within noise; each function spins in its own body, so its time is its own). Lines of each function are known to the heat map tests."""

import sys
import time


def function_x(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def function_y(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def function_z(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def steady(seconds=0.004):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def main():
    split = [float(x) for x in sys.argv[sys.argv.index("--split") + 1].split(":")]
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 40
    loop = float(sys.argv[sys.argv.index("--loop") + 1]) if "--loop" in sys.argv else 0.03
    unit = loop / sum(split)
    for _ in range(repeat):
        function_x(unit * split[0])
        function_y(unit * split[1])
        function_z(unit * split[2])
        steady(loop / 8)


if __name__ == "__main__":
    main()
