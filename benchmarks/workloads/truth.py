"""What a workload really did, measured from inside: the ground truth profilers are held to.

Each workload times its named functions' own work with `time.perf_counter` (calls last
milliseconds, so the timing costs nothing measurable) and, at exit, writes one JSON object:

    {"elapsed": seconds of the fixed work, "self": {"function_x": seconds, ...}}

Start-up protocol shared by every workload: it prints "ready", then waits for a line on
stdin before it starts working, so a profiler can attach by pid first (`--now` skips the
wait, for in-process profilers that start the script themselves).
"""

import json
import sys
import threading
import time


class Truth:
    def __init__(self):
        self.self_time = {}
        self._lock = threading.Lock()
        self.started = None
        self.elapsed = None

    def add(self, name, seconds):
        with self._lock:
            self.self_time[name] = self.self_time.get(name, 0.0) + seconds

    def start(self, argv):
        """Print ready, wait for the go-ahead (unless --now), start the clock."""
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        if "--now" not in argv:
            sys.stdin.readline()
        self.started = time.perf_counter()

    def finish(self, argv):
        self.elapsed = time.perf_counter() - self.started
        path = option(argv, "--truth", None)
        record = {"elapsed": self.elapsed, "self": self.self_time}
        if path:
            with open(path, "w") as fh:
                json.dump(record, fh)


def option(argv, name, default):
    """The value after `name` in argv, of default's type (a str if default is None)."""
    if name not in argv:
        return default
    value = argv[argv.index(name) + 1]
    return value if default is None else type(default)(value)


def burn(units):
    """About `units` ms of pure-Python arithmetic (the same work whatever the clock says)."""
    total = 0
    for i in range(units * 12000):
        total += i * i
    return total
