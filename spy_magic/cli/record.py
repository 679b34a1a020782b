"""`record`: sample a process (by pid, or a command it launches) and write a profile."""

from __future__ import annotations

import argparse
import gc
import os
import sys

from ..engine import Sampler
from ..profile import Profile
from ..profile.exports import LOSSLESS_FORMATS, write
from ..profile.recording import RecordingWriter
from .options import add_sampling_options, sampler_options

FREEZE_EVERY = 2000

EXTENSIONS = {
    "html": "html",
    "collapsed": "txt",
    "speedscope": "speedscope.json",
    "chrometrace": "trace.json",
    "jsonl": "jsonl",
    "pstats": "pstats",
    "gecko": "gecko.json",
    "binary": "bin",
}


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "record",
        help="sample a process and write a profile (flame graph by default)",
        usage="%(prog)s [options] (--pid PID | -- COMMAND [ARGS...])",
    )
    parser.add_argument("--pid", "-p", type=int, help="sample this running process")
    add_sampling_options(parser)
    add_output_options(parser)
    parser.add_argument(
        "--recording", metavar="FILE",
        help="also stream every sample to FILE as a binary recording while sampling "
        "(survives a kill; `replay` converts it); -f binary streams to -o itself",
    )  # fmt: skip
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="run this command and sample it (after --)"
    )
    parser.set_defaults(run=run)


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", "-f", choices=sorted(EXTENSIONS), default="html",
        help="output format (default html: an interactive, offline flame graph)",
    )  # fmt: skip
    parser.add_argument("--output", "-o", help="output file (default: spy_magic-PID.EXT)")
    parser.add_argument("--threads", action="store_true", help="a root frame per thread")
    parser.add_argument(
        "--function", action="store_true",
        help="aggregate by function rather than by line",
    )  # fmt: skip
    parser.add_argument(
        "--nolineno", action="store_true", help="do not show line numbers (implies --function)"
    )


def export_options(args: argparse.Namespace) -> dict:
    if args.format in LOSSLESS_FORMATS:
        return {}  # lossless: every sample as taken
    by_function = args.function or args.nolineno or args.format == "pstats"  # cProfile's unit
    options: dict = {"by": "function" if by_function else "line"}
    if args.format == "collapsed":
        options["threads"] = args.threads  # the html page has its own thread filter
    return options


def summary(profile: Profile, sampler: Sampler) -> list[str]:
    """What the user should know about how the recording went."""
    lateness = profile.lateness()
    errors = profile.error_counts()
    error_text = ", ".join(f"{kind}: {n}" for kind, n in errors.most_common()) or "none"
    lines = [
        f"{profile.sample_count} samples in {profile.duration:.2f} s "
        f"(asked {sampler.asked_rate:g} Hz, achieved {profile.effective_rate:.1f} Hz); "
        f"errors: {error_text}",
        f"lateness: {lateness['count']} late samples; p50 {lateness['p50'] * 1e3:.3f} ms, "
        f"p99 {lateness['p99'] * 1e3:.3f} ms, max {lateness['max'] * 1e3:.3f} ms",
    ]
    meta = sampler.metadata()
    if meta.get("paused_reads"):
        lines.append(
            f"paused the target for {meta['paused_reads']} reads: its stack moved faster than "
            "it could be copied (--nonblocking never pauses; those samples are then dropped)"
        )
    if meta.get("pause_error"):
        lines.append(f"could not pause the target ({meta['pause_error']}): torn reads dropped")
    if sampler.dropped_stale or sampler.dropped_queue:
        lines.append(
            f"dropped: {sampler.dropped_stale} stale deadlines, "
            f"{sampler.dropped_queue} samples the consumer could not keep"
        )
    for change in sampler.rate_changes:
        lines.append(
            f"rate {change.old_rate:g} -> {change.new_rate:g} Hz at {change.timestamp:.2f} s: "
            f"{change.reason}"
        )
    return lines


def record(sampler: Sampler, *, quiet: bool = False) -> Profile:
    """Run the sampler to the end (or Ctrl-C) and return everything it collected."""
    profile = Profile()

    def keep(sample) -> None:
        profile.add(sample)
        if profile.sample_count % FREEZE_EVERY == 0:
            # Kept samples are never freed: moving them out of the garbage collector's sight
            # spares the sampler full collections that would stall it for tens of ms.
            gc.freeze()

    sampler.add_collector(keep)
    sampler.start()
    try:
        while sampler.running:
            sampler.join(0.2)
    except KeyboardInterrupt:
        if not quiet:
            print("\nspy_magic: stopping…", file=sys.stderr)
        sampler.stop()
    sampler.join()
    profile.metadata.update(sampler.metadata())
    for change in sampler.rate_changes:
        profile.add_rate_change(change)
    return profile


def run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if (args.pid is None) == (not command):
        print("spy_magic: error: give either --pid PID or -- COMMAND", file=sys.stderr)
        return 2
    if args.recording and args.format == "binary":
        print("spy_magic: error: -f binary streams the recording to -o; drop --recording",
              file=sys.stderr)  # fmt: skip
        return 2
    options = sampler_options(args)
    if command:
        try:
            sampler = Sampler.launch(command, **options)
        except OSError as exc:
            print(f"spy_magic: error: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
            return 1
    else:
        sampler = Sampler(args.pid, **options)
    target = {
        "command": command or None,
        "target": " ".join(command) if command else f"pid {sampler.pid}",
    }
    output = args.output or f"spy_magic-{sampler.pid}.{EXTENSIONS[args.format]}"
    # The binary recording is written while sampling, so a kill leaves it readable.
    stream_path = output if args.format == "binary" else args.recording
    try:
        stream = RecordingWriter(stream_path, target) if stream_path else None
    except OSError as exc:
        print(f"spy_magic: error: cannot write {stream_path}: {exc.strerror}", file=sys.stderr)
        if sampler.process is not None:  # launched for nothing
            sampler.process.kill()
            sampler.process.wait()
        return 1
    if stream is not None:
        stream.attach(sampler)
    profile = record(sampler)
    profile.metadata.update(target)
    if stream is not None:
        stream.close(profile.metadata)
    if sampler.error is not None and profile.sample_count == 0:
        if stream_path:
            os.unlink(stream_path)  # nothing was recorded
        print(f"spy_magic: error: {sampler.error}", file=sys.stderr)
        return 1
    if args.format != "binary":
        write(profile, output, args.format, **export_options(args))
    for line in summary(profile, sampler):
        print(f"spy_magic: {line}", file=sys.stderr)
    print(f"spy_magic: wrote {args.format} to {os.path.abspath(output)}", file=sys.stderr)
    if args.recording and args.format != "binary":
        print(f"spy_magic: wrote the recording to {os.path.abspath(args.recording)}",
              file=sys.stderr)  # fmt: skip
    if sampler.process is not None and sampler.process.poll() is None:
        # --duration ended the recording, not the command: the profile is written already;
        # the command is ours to see through (Ctrl-C ends it).
        print("spy_magic: waiting for the command to exit (Ctrl-C ends it)", file=sys.stderr)
        try:
            sampler.process.wait()
        except KeyboardInterrupt:
            sampler.process.kill()
            sampler.process.wait()
    return 0
