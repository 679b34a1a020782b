"""The spec's example: function_a sleeps 0.1 s, function_b 0.05 s, function_c 0.01 s.

Self time is 62.5 % / 31.25 % / 6.25 %. `--repeat N` runs the loop N times (default 10).
"""

import sys
import time


def function_c():
    time.sleep(0.01)


def function_b():
    time.sleep(0.05)
    function_c()


def function_a():
    time.sleep(0.1)
    function_b()


if __name__ == "__main__":
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 10
    for _ in range(repeat):
        function_a()
