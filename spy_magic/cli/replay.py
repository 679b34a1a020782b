"""`replay`: convert a recording (binary, or jsonl) to any format, as if it were just recorded.

A recording cut short (its recorder was killed) converts what it holds and says how many
samples that is. A damaged one converts the samples before the damage and exits 1; a file
that is no recording at all writes nothing and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from ..profile import Profile
from ..profile.exports import read_jsonl, write
from ..profile.recording import MAGIC, RecordingError, read_recording
from .record import EXTENSIONS, add_output_options, export_options


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


def load(path: str) -> tuple[Profile | None, list[str], str | None]:
    """(profile, warnings, error): the profile is what could be read, None if nothing."""
    with open(path, "rb") as f:
        head = f.read(64)
    jsonl = head.lstrip().startswith(b"{")  # a jsonl profile starts with its JSON header
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            profile: Profile | None = read_jsonl(path) if jsonl else read_recording(path)
            error = None
        except RecordingError as exc:
            profile, error = exc.profile, str(exc)
            if not head.startswith(MAGIC[:1]) and profile is None:
                error += " (nor a jsonl profile)"
        except ValueError as exc:  # read_jsonl keeps nothing of a file it cannot read
            profile, error = None, f"{exc}; no samples recovered"
    return profile, [str(w.message) for w in caught], error


def default_output(path: str, fmt: str) -> str:
    stem = os.path.basename(path)
    for ext in (".bin", ".jsonl"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    return f"{stem}.{EXTENSIONS[fmt]}"


def run(args: argparse.Namespace) -> int:
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
    write(profile, output, args.format, **export_options(args))
    print(
        f"spy_magic: {profile.sample_count} samples in {profile.duration:.2f} s; "
        f"wrote {args.format} to {os.path.abspath(output)}",
        file=sys.stderr,
    )
    return 1 if error is not None else 0
