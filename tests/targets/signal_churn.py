"""churn.py's recursion, counting the SIGUSR1s it receives; SIGUSR2 prints the count.

A reader that pauses the threads must hand back a signal that arrives while they are held:
every SIGUSR1 sent (spaced, so none coalesce) must be counted.
"""

import random
import signal
import sys

received = 0


def count(signum, frame):
    global received
    received += 1


def report(signum, frame):
    print(received, flush=True)
    sys.exit(0)


def f(n, depth):
    if n < depth:
        return f(n + 1, depth)
    total = 0
    for i in range(300):
        total += i
    return total


signal.signal(signal.SIGUSR1, count)
signal.signal(signal.SIGUSR2, report)
rng = random.Random(1)
print("ready", flush=True)
while True:
    f(0, rng.randint(0, 60))
