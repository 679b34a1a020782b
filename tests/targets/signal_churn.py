"""churn.py's recursion, counting the SIGUSR1s it receives; SIGUSR2 prints the count.

A reader that pauses the threads must hand back a signal that arrives while they are held:
every SIGUSR1 sent (spaced, so none coalesce in the kernel) must be counted. They are counted
at C level, one byte each through the wakeup fd: Python-level handlers run later, at the eval
loop's next check, and two signals delivered before it would run the handler once.
"""

import os
import random
import signal
import sys

wakeup_read, wakeup_write = os.pipe()
os.set_blocking(wakeup_write, False)
signal.set_wakeup_fd(wakeup_write)


def count(signum, frame):
    pass


def report(signum, frame):
    os.set_blocking(wakeup_read, False)
    data = b""
    while True:
        try:
            chunk = os.read(wakeup_read, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    print(data.count(bytes([signal.SIGUSR1])), flush=True)
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
