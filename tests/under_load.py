"""Run a command while busy processes keep every core loaded: the suite must pass like this.

    python tests/under_load.py [--hogs N] -- python -m pytest [ARGS...]

Starts N (default: twice the number of cores) processes that spin at normal priority, runs
the command, stops them, and exits with the command's status. A test that needs a quiet
machine to pass is a bug: it must force the condition it depends on, or skip saying why.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys


def _spin() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    n = 0
    while True:
        n = (n * 1103515245 + 12345) & 0xFFFFFFFF


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hogs", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.hogs)]
    for hog in hogs:
        hog.start()
    print(f"under_load: {args.hogs} busy processes on {os.cpu_count()} cores", file=sys.stderr)
    try:
        return subprocess.call(command)
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.join()


if __name__ == "__main__":
    sys.exit(main())
