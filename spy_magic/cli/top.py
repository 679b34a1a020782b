"""`top`: a live table of where a process spends its time, refreshed until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter

from ..engine import Sample, Sampler
from ..reader import printable
from .options import add_sampling_options, sampler_options
from .signals import terminating_signals

REFRESH_S = 1.0
_CLEAR = "\x1b[H\x1b[2J"


class TopCounts:
    """Own and total sample counts per function, fed by the sampler's processing thread."""

    def __init__(self) -> None:
        self.own: Counter = Counter()
        self.total: Counter = Counter()
        self.traces = 0
        self.samples = 0
        self.errors = 0
        self._lock = threading.Lock()

    def add(self, sample: Sample) -> None:
        with self._lock:
            self.samples += 1
            self.errors += len(sample.errors)
            for trace in sample.traces:
                if not trace.frames:
                    continue
                self.traces += 1
                keys = [(f.name, f.filename, f.firstlineno) for f in trace.frames]
                self.own[keys[0]] += 1
                self.total.update(set(keys))

    def rows(self, limit: int, sort: str = "own") -> list[tuple[float, float, str, str]]:
        with self._lock:
            traces = self.traces or 1
            table = self.own if sort == "own" else self.total
            keys = [k for k, _ in table.most_common(limit)]
            return [
                (
                    100 * self.own[k] / traces,
                    100 * self.total[k] / traces,
                    k[0],
                    f"{_short(k[1])}:{k[2]}",
                )
                for k in keys
            ]


def _short(path: str) -> str:
    parts = path.split(os.sep)
    return os.sep.join(parts[-2:]) if len(parts) > 2 else path


def render(counts: TopCounts, sampler: Sampler, elapsed: float, width: int, height: int) -> str:
    header = (
        f"spy_magic top — pid {sampler.pid}  {elapsed:6.1f} s  "
        f"{counts.samples} samples ({sampler.rate:g} Hz)  {counts.errors} errors"
    )
    lines = [header[:width], "", f"{'%Own':>7} {'%Total':>7}  {'Function (file:line)'}"]
    for own, total, name, where in counts.rows(max(1, height - 5)):
        lines.append(f"{own:7.2f} {total:7.2f}  {name} ({where})"[:width])
    if counts.traces == 0:
        lines.append("  (no Python stacks yet)")
    return printable("\n".join(lines))


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "top",
        help="live view of the functions taking the most time",
        description="A live table of where a process spends its time, until Ctrl-C, SIGTERM "
        "or SIGHUP.",
    )
    parser.add_argument("--pid", "-p", type=int, required=True, help="process to watch")
    add_sampling_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    counts = TopCounts()
    sampler = Sampler(args.pid, **sampler_options(args))
    sampler.add_collector(counts.add)
    started = time.monotonic()
    import shutil  # here, not at the top: every other command starts without it

    interactive = sys.stdout.isatty()
    with terminating_signals():
        try:
            sampler.start()
            while sampler.running:
                sampler.join(REFRESH_S)
                size = shutil.get_terminal_size((100, 30))
                elapsed = time.monotonic() - started
                text = render(counts, sampler, elapsed, size.columns, size.lines)
                if interactive:
                    sys.stdout.write(_CLEAR + text + "\n")
                else:
                    sys.stdout.write(text + "\n\n")
                sys.stdout.flush()
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: the table ends, no traceback
            sampler.stop()
        sampler.join()
    if sampler.error is not None and counts.samples == 0:
        print(f"spy_magic: error: {sampler.error}", file=sys.stderr)
        return 1
    return 0
