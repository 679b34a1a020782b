"""`demo`: record the bundled example with default settings and show where its time went.

It launches the spec's example script (function_a/b/c sleeping 0.1/0.05/0.01 s), samples
it at 100 Hz, writes an interactive flame graph and prints each function's share of the
samples next to the true share.
"""

from __future__ import annotations

import argparse
import os
import sys

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
    sampler = Sampler.launch([sys.executable, str(script), "--repeat", str(args.repeat)])
    profile = record(sampler, keep_samples=False)  # the html page needs only aggregates
    sampler.process.wait()
    if sampler.error is not None and profile.sample_count == 0:
        print(f"spy_magic: error: {sampler.error}", file=sys.stderr)
        return 1
    profile.metadata["target"] = f"{script.name} (bundled demo)"
    write(profile, args.output, "html")
    for line in summary(profile, sampler):
        print(line)
    own = {f.name: f.self_count for f in profile.functions(by="function")}
    total = sum(own.values()) or 1
    print(f"\n{'function':<14}{'self %':>9}{'expected %':>12}")
    for name, expected in EXPECTED.items():
        print(f"{name:<14}{100 * own.get(name, 0) / total:>9.2f}{expected:>12.2f}")
    print(f"\nflame graph: {os.path.abspath(args.output)}")
    return 0
