"""`top`: a live table of where a process spends its time, refreshed until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..engine import Sampler
from ..profile.model import Profile
from ..profile.top import top_rows
from ..reader import printable
from .options import add_sampling_options, sampler_options
from .signals import terminating_signals

REFRESH_S = 1.0
_CLEAR = "\x1b[H\x1b[2J"


def _short(path: str) -> str:
    parts = path.split(os.sep)
    return os.sep.join(parts[-2:]) if len(parts) > 2 else path


def render(profile: Profile, sampler: Sampler, elapsed: float, width: int, height: int) -> str:
    """The table as text: the shared top rows (`profile/top.py`) of what came in so far."""
    errors = sum(profile.error_counts().values())
    header = (
        f"spy_magic top — pid {sampler.pid}  {elapsed:6.1f} s  "
        f"{profile.sample_count} samples ({sampler.rate:g} Hz)  {errors} errors"
    )
    lines = [header[:width], "", f"{'%Own':>7} {'%Total':>7}  {'Function (file:line)'}"]
    rows = top_rows(profile, max(1, height - 5))
    for row in rows:
        where = _short(row.filename) + (f":{row.first_line}" if row.first_line else "")
        lines.append(f"{row.own_pct:7.2f} {row.total_pct:7.2f}  {row.name} ({where})"[:width])
    if not rows:
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
    # The live table needs no sample twice: aggregates only, memory flat however long it runs.
    profile = Profile(keep_samples=False)
    sampler = Sampler(args.pid, **sampler_options(args))
    sampler.add_collector(profile)
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
                text = render(profile, sampler, elapsed, size.columns, size.lines)
                if interactive:
                    sys.stdout.write(_CLEAR + text + "\n")
                else:
                    sys.stdout.write(text + "\n\n")
                sys.stdout.flush()
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: the table ends, no traceback
            sampler.stop()
        sampler.join()
    if sampler.error is not None and profile.sample_count == 0:
        print(f"spy_magic: error: {sampler.error}", file=sys.stderr)
        return 1
    return 0
