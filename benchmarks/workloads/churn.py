"""A stack that changes every few microseconds, to count torn samples.

    python churn.py [--seconds S] [--now]

Each call rushes down to a random depth (0-60), works a few µs there, and unwinds, so most
of the time frames are being pushed or popped. Every stack this program can have is known
(`stack_problem` says why one cannot be): a profiler that shows anything else showed a torn
read as if it were a real stack.
"""

import random
import sys
import time

MAX_DEPTH = 60


def f(n, depth):
    if n < depth:
        return f(n + 1, depth)  # CALL_LINE
    total = 0
    for i in range(300):
        total += i
    return total


def churn(seconds):
    rng = random.Random(1)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(50):
            f(0, rng.randint(0, MAX_DEPTH))  # LOOP_LINE


def _line_of(tag):
    with open(__file__) as fh:
        return next(i for i, text in enumerate(fh, 1) if text.rstrip().endswith("# " + tag))


def stack_problem(frames):
    """Why `frames` ((function, line) pairs, innermost first, from this file only) cannot be
    a stack of this program, or None if it can. Frames of other files must be left out by
    the caller; a stack with none of this file's frames is not judged."""
    call_line, loop_line = _line_of("CALL_LINE"), _line_of("LOOP_LINE")
    names = [name for name, _ in frames]
    if "churn" not in names:
        return None  # start-up or shut-down: not the churning part
    inner = frames[: names.index("churn")]
    outer = frames[names.index("churn") :]
    if [name for name, _ in outer[:1]] != ["churn"] or any(
        name not in ("churn", "<module>") for name, _ in outer
    ):
        return f"unexpected frames below churn: {outer}"
    if not inner:
        return None
    if any(name != "f" for name, _ in inner):
        return f"a foreign frame among f's: {names}"
    if len(inner) > MAX_DEPTH + 1:
        return f"{len(inner)} frames of f, at most {MAX_DEPTH + 1} are possible"
    if outer[0][1] not in (loop_line, loop_line - 1):
        return f"churn at line {outer[0][1]} while f runs"
    if any(line != call_line for _, line in inner[1:]):
        return f"an outer f not at its call line: {[line for _, line in inner]}"
    return None


if __name__ == "__main__":
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if "--now" not in sys.argv:
        sys.stdin.readline()
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 4
    churn(seconds)
