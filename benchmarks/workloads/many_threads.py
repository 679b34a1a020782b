"""Many threads for benchmarks/many_threads.py: argv[1] threads, the first argv[2] busy.

Parked threads wait on an event a few calls deep; busy ones compute for ~50 µs between 1 ms
sleeps, so their stacks keep moving. Prints "ready" once every thread has started.
"""

import sys
import threading
import time

count, busy = int(sys.argv[1]), int(sys.argv[2])
threading.stack_size(256 * 1024)
park = threading.Event()
started = threading.Semaphore(0)


def parked(depth):
    if depth:
        return parked(depth - 1)
    started.release()
    park.wait()


def busy_worker():
    started.release()
    while True:
        total = 0
        for i in range(1000):
            total += i
        time.sleep(0.001)


for i in range(count):
    target, args = (busy_worker, ()) if i < busy else (parked, (i % 5,))
    threading.Thread(target=target, args=args, name=f"worker-{i}", daemon=True).start()
for _ in range(count):
    started.acquire()
print("ready", flush=True)
park.wait()
