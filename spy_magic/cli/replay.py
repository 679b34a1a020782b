"""`replay`: convert a recording (binary, or jsonl) to any format, as if it were just recorded.

A recording cut short (its recorder was killed) converts what it holds and says how many
samples that is. A damaged one converts the samples before the damage and exits 1; a file
that is no recording at all writes nothing and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..profile.exports import write
from .record import (
    BASELINE_FORMATS,
    EXTENSIONS,
    add_output_options,
    export_options,
    resolve_format,
)

__all__ = ["add_parser", "default_output", "run"]


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "replay",
        help="convert a recording (record -f binary / --recording, or jsonl) to another format",
        usage="%(prog)s FILE [--format F] [-o OUT] [options]",
    )
    parser.add_argument("file", metavar="FILE", help="a binary recording or a jsonl profile")
    add_output_options(parser)
    for action in parser._actions:
        if action.dest == "output":
            action.help = "output file (default: FILE's name with the format's extension)"
    parser.set_defaults(run=run)


def default_output(path: str, fmt: str) -> str:
    stem = os.path.basename(path)
    for ext in (".bin", ".jsonl"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    return f"{stem}.{EXTENSIONS[fmt]}"


def run(args: argparse.Namespace) -> int:
    from .loading import baseline_diff, load, load_baseline  # only replay needs them

    problem = resolve_format(args)
    if problem:
        print(f"spy_magic: error: {problem}", file=sys.stderr)
        return 2
    if args.baseline and args.format not in BASELINE_FORMATS:
        print(f"spy_magic: error: --baseline draws a diff flame graph: use -f html, not "
              f"{args.format}", file=sys.stderr)  # fmt: skip
        return 2
    baseline = None
    if args.baseline:
        baseline = load_baseline(args.baseline)
        if baseline is None:
            return 2
    try:
        profile, notes, error = load(args.file)
    except OSError as exc:
        print(f"spy_magic: error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"spy_magic: warning: {args.file}: {note}", file=sys.stderr)
    if error is not None:
        print(f"spy_magic: error: {args.file}: {error}", file=sys.stderr)
    if profile is None or (error is not None and profile.sample_count == 0):
        return 1
    output = args.output or default_output(args.file, args.format)
    if os.path.abspath(output) == os.path.abspath(args.file):
        print(f"spy_magic: error: {output} is the input; give another -o", file=sys.stderr)
        return 2
    options = export_options(args)
    if baseline is not None:
        diff = baseline_diff(profile, baseline, args.baseline)
        if diff is None:
            error = error or "no diff"
        else:
            options["baseline"] = diff
    write(profile, output, args.format, **options)
    print(
        f"spy_magic: {profile.sample_count} samples in {profile.duration:.2f} s; "
        f"wrote {args.format} to {os.path.abspath(output)}",
        file=sys.stderr,
    )
    return 1 if error is not None else 0
