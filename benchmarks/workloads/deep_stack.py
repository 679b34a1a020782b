"""A benchmark target: one thread, a Python stack of a chosen depth, busy or asleep on top.

    python deep_stack.py DEPTH [cpu|sleep]

Runs unchanged on CPython 3.8 to 3.13 (no newer syntax). The main thread recurses until the
stack holds DEPTH Python frames counting the module frame, and stays there forever. The
innermost frame prints "ready" (and flushes) once the whole stack is in place.

- cpu:   the innermost frame (`spin`) calls `leaf()` in a loop; `leaf` does a little
         pure-Python arithmetic and returns. The top of the stack changes all the time (the
         leaf frame comes and goes, line numbers move) while everything below stays put.
         The stack is DEPTH frames while inside `leaf`, DEPTH - 1 between two calls.
- sleep: the innermost frame (`doze`) sleeps in `time.sleep`, so the stack never changes.

Kill it to stop it.
"""

import sys
import time


def leaf(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def ready():
    sys.stdout.write("ready\n")
    sys.stdout.flush()


def spin():
    ready()
    while True:
        leaf(50)


def doze():
    ready()
    while True:
        time.sleep(1.0)


def recurse(remaining, work):
    if remaining <= 1:
        work()
    else:
        recurse(remaining - 1, work)


def main():
    depth = int(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else "cpu"
    if mode not in ("cpu", "sleep"):
        raise SystemExit("mode must be cpu or sleep")
    sys.setrecursionlimit(max(1000, depth + 100))
    # Frames: <module>, main, recurse * k, then spin -> leaf (cpu) or doze (sleep).
    # cpu: 2 + k + 2 == depth while inside leaf; sleep: 2 + k + 1 == depth.
    fixed = 4 if mode == "cpu" else 3
    if depth < fixed + 1:
        raise SystemExit("depth must be at least " + str(fixed + 1))
    recurse(depth - fixed, spin if mode == "cpu" else doze)


if __name__ == "__main__":
    main()
