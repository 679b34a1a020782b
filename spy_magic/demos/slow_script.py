"""The spec's example: function_a sleeps 0.1 s, function_b 0.05 s, function_c 0.01 s.

Self time is 62.5 % / 31.25 % / 6.25 %. On a busy machine a sleeper wakes late (it waits
for a CPU): each function sleeps that much less in its next call, so its total stays its
share of the run (off by one wake-up at most). `--repeat N` runs the loop N times
(default 10); `--report FILE` writes, as JSON, each sleep as [function, began, ended] in
`time.monotonic()` seconds (the clock the sampler stamps samples with): the truth a sampled
profile of this run should match, over the very span it sampled.
"""

import json
import sys
import time

# How long each function's last sleep overran what it asked: the next one asks that less.
_overslept = {"function_a": 0.0, "function_b": 0.0, "function_c": 0.0}
# Every sleep as (function, began, ended): each function's self time, by its own clock.
sleeps = []  # (no annotation: the demos run on every target Python, 3.8 too)


def function_c():
    asked = 0.01 - _overslept["function_c"]
    began = time.monotonic()
    time.sleep(max(0.0, asked))
    ended = time.monotonic()
    took = ended - began
    sleeps.append(("function_c", began, ended))
    _overslept["function_c"] = took - asked


def function_b():
    asked = 0.05 - _overslept["function_b"]
    began = time.monotonic()
    time.sleep(max(0.0, asked))
    ended = time.monotonic()
    took = ended - began
    sleeps.append(("function_b", began, ended))
    _overslept["function_b"] = took - asked
    function_c()


def function_a():
    asked = 0.1 - _overslept["function_a"]
    began = time.monotonic()
    time.sleep(max(0.0, asked))
    ended = time.monotonic()
    took = ended - began
    sleeps.append(("function_a", began, ended))
    _overslept["function_a"] = took - asked
    function_b()


if __name__ == "__main__":
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 10
    for _ in range(repeat):
        function_a()
    if "--report" in sys.argv:
        with open(sys.argv[sys.argv.index("--report") + 1], "w", encoding="utf-8") as report:
            json.dump(sleeps, report)
