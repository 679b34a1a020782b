"""`demo`: record the bundled example with default settings and show where its time went.

It launches the spec's example script (function_a/b/c sleeping 0.1/0.05/0.01 s), samples
it at 100 Hz, writes an interactive flame graph and prints each function's share of the
samples next to the true share: the share of the sampled span it really slept, by the
script's own clock (a loaded machine stretches sleeps), and the share it was written to
sleep.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from ..demos import demo_path
from ..engine import Sampler
from ..profile.exports import write
from .record import record, summary

EXPECTED = {"function_a": 62.5, "function_b": 31.25, "function_c": 6.25}


def add_parser(commands) -> None:
    parser = commands.add_parser("demo", help="profile the bundled example script")
    parser.add_argument("--output", "-o", default="spy_magic-demo.html", help="flame graph file")
    parser.add_argument("--repeat", type=int, default=10, help="loops of the example to run")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    script = demo_path("slow_script")
    with tempfile.TemporaryDirectory(prefix="spy_magic-demo-") as scratch:
        report = os.path.join(scratch, "slept.json")
        argv = [sys.executable, str(script), "--repeat", str(args.repeat), "--report", report]
        sampler = Sampler.launch(argv)
        profile = record(sampler, keep_samples=False)  # the html page needs only aggregates
        sampler.process.wait()
        sleeps = _read_report(report)
    if sampler.error is not None and profile.sample_count == 0:
        print(f"spy_magic: error: {sampler.error}", file=sys.stderr)
        return 1
    profile.metadata["target"] = f"{script.name} (bundled demo)"
    write(profile, args.output, "html")
    for line in summary(profile, sampler):
        print(line)
    own = {f.name: f.self_count for f in profile.functions(by="function")}
    total = sum(own.values()) or 1
    slept = _slept_within(sleeps, sampler, profile)
    slept_total = sum(slept.values()) or 1
    print(f"\n{'function':<14}{'sampled %':>10}{'timed %':>10}{'designed %':>12}")
    for name, designed in EXPECTED.items():
        timed = f"{100 * slept[name] / slept_total:.2f}" if name in slept else "?"
        print(f"{name:<14}{100 * own.get(name, 0) / total:>10.2f}{timed:>10}{designed:>12.2f}")
    print("(timed: the share of the sampled span each function slept, by the script's own clock)")
    print(f"\nflame graph: {os.path.abspath(args.output)}")
    return 0


def _read_report(path: str) -> list[tuple[str, float, float]]:
    """The script's sleeps as (function, began, ended), [] if it wrote none (it was killed,
    or ended before its loop did)."""
    try:
        with open(path, encoding="utf-8") as report:
            return [
                (str(name), float(began), float(ended)) for name, began, ended in json.load(report)
            ]
    except (OSError, ValueError, TypeError):
        return []


def _slept_within(sleeps, sampler: Sampler, profile) -> dict[str, float]:
    """Seconds each function slept between the first sample and the last: the span the
    samples stand for (a slow first read leaves the script's start unsampled)."""
    first = profile.first_timestamp()
    if first is None or sampler.timer is None:
        return {}
    start = sampler.timer.start + first
    end = start + profile.duration
    slept: dict[str, float] = {}
    for name, began, ended in sleeps:
        overlap = min(ended, end) - max(began, start)
        if overlap > 0:
            slept[name] = slept.get(name, 0.0) + overlap
    return slept
