"""churn.py's recursion in two threads at once: on a free-threaded build they really run in
parallel, so a reader meets stacks changing under it on two cores at the same time.

Every stack a worker can have is [f]*k (k >= 0) + [churn] + threading's bootstrap frames, or
random's internals + [churn] + bootstrap; f calls itself only from CALL_LINE and churn calls
f only from LOOP_LINE. Anything else is a torn stack returned as if it were real.
"""

import random
import sys
import threading


def f(n, depth):
    if n < depth:
        return f(n + 1, depth)  # CALL_LINE
    total = 0
    for i in range(300):
        total += i
    return total


def churn(seed):
    rng = random.Random(seed)
    while True:
        f(0, rng.randint(0, 60))  # LOOP_LINE


workers = [
    threading.Thread(target=churn, args=(i,), name=f"churn-{i}", daemon=True) for i in range(2)
]
for worker in workers:
    worker.start()
print("ready", flush=True)
sys.stdin.readline()
