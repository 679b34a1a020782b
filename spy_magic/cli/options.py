"""Options shared by the sampling commands (record, top, demo) and the notebook magics."""

from __future__ import annotations

import argparse
import sys

from ..engine import DEFAULT_RATE, MAX_RATE
from ..engine.modes import MODES
from ..reader.model import ASYNC_MODES


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_sampling_options(parser: argparse.ArgumentParser, *, short_rate: bool = True) -> None:
    """The sampling options; `short_rate=False` leaves -r free (the magics' --return)."""
    parser.add_argument(
        *(("--rate", "-r") if short_rate else ("--rate",)), type=positive_float,
        default=DEFAULT_RATE,
        help=f"samples per second (default {DEFAULT_RATE:g}; at most {MAX_RATE:g}: a higher "
        "rate is sampled at that)",
    )  # fmt: skip
    parser.add_argument(
        "--duration", "-d", type=positive_float, default=None,
        help="stop after this many seconds of wall-clock time (default: until the target exits)",
    )  # fmt: skip
    parser.add_argument(
        "--subprocesses", "-s", action="store_true",
        help="also sample Python child processes (discovered every 100 ms)",
    )  # fmt: skip
    parser.add_argument(
        "--mode", "--profile-mode", dest="profile_mode", choices=MODES, default=None,
        action=_ModeAction,
        help="which threads a sample keeps: wall (all, the default), cpu (running on a CPU), "
        "gil (holding the GIL; free-threaded builds: attached, running Python), exception "
        "(handling an exception)",
    )  # fmt: skip
    parser.add_argument(
        "--idle", "--no-idle", dest="profile_mode", nargs=0, action=_ModeAction,
        help="--idle is --mode wall, --no-idle is --mode cpu",
    )  # fmt: skip
    parser.add_argument(
        "--gil", dest="profile_mode", nargs=0, action=_ModeAction, help="is --mode gil"
    )  # fmt: skip
    parser.add_argument(
        "--gc", action=argparse.BooleanOptionalAction, default=True,
        help="a <GC> frame on top of the thread running the garbage collector, while it runs "
        "(default: yes; --no-gc leaves them out)",
    )  # fmt: skip
    parser.add_argument(
        "--opcodes", action="store_true",
        help="record the instruction the innermost frame executes (shown in the flame "
        "graph's tooltip; a last frame in collapsed stacks)",
    )  # fmt: skip
    parser.add_argument(
        "--async", "--async-tasks", dest="async_tasks", nargs="?", const="running",
        choices=ASYNC_MODES, default=None,
        help="asyncio task-aware stacks (CPython 3.14+): below the running task's coroutines, "
        "a <task NAME> frame and the chain of tasks awaiting it; '--async all' also gives "
        "every waiting task a stack of its own",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=None, help="seed the sampling schedule")
    parser.add_argument(
        "--nonblocking", action="store_true",
        help="never pause the target, even for a stack that changes faster than it can be "
        "copied (such samples are dropped as torn); by default those few are read again with "
        "the target's threads paused for a moment",
    )  # fmt: skip
    parser.add_argument(
        "--start-timeout", type=positive_float, default=5.0,
        help="seconds to wait for a target's interpreter to start (default 5)",
    )  # fmt: skip


_ALIASES = {"--idle": "wall", "--no-idle": "cpu", "--gil": "gil"}


class _ModeAction(argparse.Action):
    """--mode and its older aliases (--idle, --no-idle, --gil) into one `profile_mode`.

    Two that disagree are a usage error, except --no-idle with --gil (the old way to ask for
    the running GIL holder: the holder runs), which is gil."""

    def __call__(self, parser, namespace, values, option_string=None):
        mode = _ALIASES.get(option_string, values)
        before = getattr(namespace, self.dest, None)
        if before is not None and before != mode:
            if {before, mode} == {"cpu", "gil"}:
                mode = "gil"
            else:
                parser.error(f"{option_string} asks for mode {mode}, but mode {before} was asked")
        setattr(namespace, self.dest, mode)


def clamp_rate(rate: float) -> tuple[float, str | None]:
    """The rate to sample at, and what to tell the user when it is not the one asked."""
    if rate <= MAX_RATE:
        return rate, None
    return MAX_RATE, (
        f"--rate {rate:g} is above the {MAX_RATE:g} Hz the sampler can take (one read costs "
        f"~100-250 µs); sampling at {MAX_RATE:g} Hz"
    )


def sampler_options(args: argparse.Namespace) -> dict:
    """The Sampler keywords for parsed options; a clamped rate is said once, on stderr (the
    same line from `record`, `top` and the magics)."""
    rate, note = clamp_rate(args.rate)
    if note:
        print(f"spy_magic: {note}", file=sys.stderr)
    return {
        "rate": rate,
        "duration": args.duration,
        "subprocesses": args.subprocesses,
        "profile_mode": args.profile_mode or "wall",
        "gc": args.gc,
        "opcodes": args.opcodes,
        "seed": args.seed,
        "start_timeout": args.start_timeout,
        "nonblocking": args.nonblocking,
        "async_tasks": args.async_tasks,
    }
