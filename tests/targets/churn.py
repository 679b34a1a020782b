"""A stack that changes every few microseconds: recursion of random depth, forever.

Each call rushes down to a random depth, works a few µs there, and unwinds: most of the time
frames are being pushed or popped.

Every stack this program can have is [f]*k (k >= 1) + [<module>] or [random internals] +
[<module>]; f calls itself only from CALL_LINE. A reader that returns anything else returned
a torn stack as if it were real.
"""

import random
import sys


def f(n, depth):
    if n < depth:
        return f(n + 1, depth)  # CALL_LINE
    total = 0
    for i in range(300):  # a few µs at the top: a window in which the stack holds still
        total += i
    return total


rng = random.Random(1)
print("ready", flush=True)
while True:
    f(0, rng.randint(0, 60))  # MAIN_LINE
