"""The spec's example: function_a sleeps 0.1 s, function_b 0.05 s, function_c 0.01 s.

Self time is 62.5 % / 31.25 % / 6.25 %. On a busy machine a sleeper wakes late (it waits
for a CPU): each function sleeps that much less in its next call, so its total stays its
share of the run (off by one wake-up at most). `--repeat N` runs the loop N times
(default 10).
"""

import sys
import time

# How long each function's last sleep overran what it asked: the next one asks that less.
_overslept = {"function_a": 0.0, "function_b": 0.0, "function_c": 0.0}


def function_c():
    asked = 0.01 - _overslept["function_c"]
    began = time.perf_counter()
    time.sleep(max(0.0, asked))
    _overslept["function_c"] = time.perf_counter() - began - asked


def function_b():
    asked = 0.05 - _overslept["function_b"]
    began = time.perf_counter()
    time.sleep(max(0.0, asked))
    _overslept["function_b"] = time.perf_counter() - began - asked
    function_c()


def function_a():
    asked = 0.1 - _overslept["function_a"]
    began = time.perf_counter()
    time.sleep(max(0.0, asked))
    _overslept["function_a"] = time.perf_counter() - began - asked
    function_b()


if __name__ == "__main__":
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 10
    for _ in range(repeat):
        function_a()
