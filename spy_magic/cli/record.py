"""`record`: sample a process (by pid, or a command it launches) and write a profile."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

from ..engine import Sampler
from ..profile import Profile
from ..profile.exports import LOSSLESS_FORMATS, NEEDS_SAMPLES
from ..profile.sources import SourceCollector
from .options import add_sampling_options, sampler_options
from .output import output_problem, save
from .signals import Terminated, signal_name, terminating_signals

if TYPE_CHECKING:
    from ..profile.diff import ProfileDiff

FREEZE_EVERY = 2000
END_GRACE_S = 5.0  # a launched command told to end has this long before it is killed

EXTENSIONS = {
    "html": "html",
    "collapsed": "txt",
    "speedscope": "speedscope.json",
    "chrometrace": "trace.json",
    "jsonl": "jsonl",
    "pstats": "pstats",
    "gecko": "gecko.json",
    "binary": "bin",
    "heatmap": "heatmap.html",
}
BASELINE_FORMATS = ("html",)  # the diff flame graph is a page
# An -o suffix names its format when -f is not given (longest suffix first: a .heatmap.html
# is a heat map, a .html a flame graph); a bare .json could be three formats.
SUFFIX_FORMATS = {
    **{f".{ext}": fmt for fmt, ext in EXTENSIONS.items()},
    ".collapsed": "collapsed", ".folded": "collapsed", ".prof": "pstats",
}  # fmt: skip
AMBIGUOUS_SUFFIXES = {".json": ("speedscope", "chrometrace", "gecko")}
DEFAULT_FORMAT = "html"


def resolve_format(args: argparse.Namespace) -> str | None:
    """Set `args.format` from -f, else from -o's suffix, else html. Returns an error message
    for a suffix that could be several formats (the user says which with -f)."""
    if args.format is not None:
        return None
    name = os.path.basename(args.output or "").lower()
    for suffix in sorted(SUFFIX_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            args.format = SUFFIX_FORMATS[suffix]
            return None
    for suffix, formats in AMBIGUOUS_SUFFIXES.items():
        if name.endswith(suffix):
            return (f"-o {args.output}: a {suffix} file could be " + ", ".join(formats)
                    + "; say which with -f (or name it .speedscope.json, .trace.json or "
                    ".gecko.json)")  # fmt: skip
    if "." in name:
        print(f"spy_magic: note: -o {args.output}: no format writes that extension; "
              f"writing {DEFAULT_FORMAT} (choose one with -f)", file=sys.stderr)  # fmt: skip
    args.format = DEFAULT_FORMAT
    return None


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "record",
        help="sample a process and write a profile (flame graph by default)",
        usage="%(prog)s [options] (--pid PID | -- COMMAND [ARGS...])",
        description="Sample a process and write a profile. Ctrl-C, SIGTERM or SIGHUP stop "
        "the recording and write what was collected (a launched command gets SIGTERM and "
        "SIGHUP passed on).",
        epilog="Exit status: with -- COMMAND, the command's own (128+N when signal N ended "
        "it), as time(1) gives it; 1 when sampling failed or the profile had to be written "
        "elsewhere than -o; 2 for bad options.",
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
        "--format", "-f", choices=sorted(EXTENSIONS), default=None,
        help="output format (default: from -o's extension, e.g. .txt/.collapsed, "
        ".speedscope.json, .pstats, .bin; else html, an interactive, offline flame graph)",
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
    parser.add_argument(
        "--baseline", metavar="OLD",
        help="a diff flame graph against OLD (a binary recording or jsonl profile of the "
        "same program): each function coloured by its change in own share, noise grey",
    )  # fmt: skip


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
    if meta.get("late_unscheduled"):
        lines.append(
            f"late: {meta['late_unscheduled']} samples because the machine did not run the "
            f"sampler in time (busy CPUs; the rate was kept), {meta.get('late_behind', 0)} "
            "because a sample cost more than the gap to the next"
        )
    if meta.get("paused_reads"):
        lines.append(
            f"paused the target for {meta['paused_reads']} reads: its stack moved faster than "
            "it could be copied (--nonblocking never pauses; those samples are then dropped)"
        )
    if meta.get("async_warning"):
        lines.append(f"warning: --async: {meta['async_warning']}")
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


class _Recorder:
    """The profile's collector in `record`: says when samples arrive, and keeps kept
    samples out of the garbage collector's sight."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.first_sample = threading.Event()
        self.add_rate_change = profile.add_rate_change
        self.finish = profile.finish

    def add(self, sample) -> None:
        profile = self.profile
        profile.add(sample)
        self.first_sample.set()
        if profile.keep_samples and profile.sample_count % FREEZE_EVERY == 0:
            # Kept samples are never freed: moving them out of the garbage collector's sight
            # spares the sampler full collections that would stall it for tens of ms.
            gc.freeze()


def keeps_samples(args: argparse.Namespace) -> bool:
    """Whether the profile must keep every sample: only for a format that shows them in
    time order (the binary recording streams them instead); else aggregates only, so
    memory stays flat however long the recording."""
    return args.format in NEEDS_SAMPLES and args.format != "binary"


def record(sampler: Sampler, *, quiet: bool = False, keep_samples: bool = True) -> Profile:
    """Run the sampler to the end (or Ctrl-C, SIGTERM, SIGHUP) and return what it collected."""
    profile = Profile(keep_samples=keep_samples)
    recorder = _Recorder(profile)
    first_sample = recorder.first_sample
    sampler.add_collector(recorder)  # rate changes come through it, in order
    sources = SourceCollector()  # the sampled files, read while the target runs (heat map)
    sampler.add_collector(sources)
    sampler.start()
    try:
        announced = quiet
        while sampler.running:
            if announced:
                sampler.join(0.2)
            elif first_sample.wait(0.2):  # said once samples arrive, not merely expected
                announced = True
                print(f"spy_magic: sampling pid {sampler.pid} at {sampler.rate:g} Hz; "
                      "Ctrl-C stops and writes the profile", file=sys.stderr)  # fmt: skip
    except KeyboardInterrupt as exc:
        if not quiet:
            why = f"{signal_name(exc.signum)}, " if isinstance(exc, Terminated) else ""
            print(f"\nspy_magic: {why}stopping…", file=sys.stderr)
        profile.metadata["stopped_by"] = (
            signal_name(exc.signum) if isinstance(exc, Terminated) else "SIGINT"
        )
        sampler.stop()
    sampler.join()
    profile.metadata.update(sampler.metadata())
    profile.metadata.update(sources.metadata(profile))
    return profile


def exit_status(returncode: int) -> int:
    """A command's status as a shell reports it: its exit code, or 128+N for signal N."""
    return 128 - returncode if returncode < 0 else returncode


def end_command(process: subprocess.Popen, signum: int | None = signal.SIGTERM) -> None:
    """Send `signum` (None: it was sent already), give the command END_GRACE_S to exit, then
    kill it; reaped either way."""
    if process.poll() is None:
        try:
            if signum is not None:
                process.send_signal(signum)
            process.wait(END_GRACE_S)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            process.kill()
    process.wait()


def see_command_through(process: subprocess.Popen, signum: int | None, exited: bool) -> int:
    """Wait for a launched command that outlived the recording; its exit status.

    After SIGTERM or SIGHUP (`signum`, already passed on to it) it has END_GRACE_S to end.
    After a --duration or Ctrl-C it is the user's: waited for, and a Ctrl-C then kills it.
    `exited`: the sampler saw it go (its exit may not be reapable yet).
    """
    if process.poll() is None:
        if signum is not None:
            print(f"spy_magic: waiting up to {END_GRACE_S:g} s for the command to exit on "
                  f"{signal_name(signum)}", file=sys.stderr)  # fmt: skip
            end_command(process, None)
        else:
            if not exited:  # one the sampler saw go may just not be reapable yet
                print(
                    "spy_magic: waiting for the command to exit (Ctrl-C ends it)", file=sys.stderr
                )
            try:
                process.wait()
            except Terminated as exc:
                end_command(process, exc.signum)
            except KeyboardInterrupt:
                process.kill()
                process.wait()
    return exit_status(process.returncode)


def run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if (args.pid is None) == (not command):
        print("spy_magic: error: give either --pid PID or -- COMMAND", file=sys.stderr)
        return 2
    problem = resolve_format(args)
    if problem:
        print(f"spy_magic: error: {problem}", file=sys.stderr)
        return 2
    if args.recording and args.format == "binary":
        print("spy_magic: error: -f binary streams the recording to -o; drop --recording",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.baseline and args.format not in BASELINE_FORMATS:
        print(f"spy_magic: error: --baseline draws a diff flame graph: use -f html, not "
              f"{args.format}", file=sys.stderr)  # fmt: skip
        return 2
    # Before anything runs: a bad -o, --recording or --baseline must not cost the recording.
    # What only some recordings use is imported only by them: the first sample comes sooner.
    from .loading import baseline_diff, load_baseline

    baseline = load_baseline(args.baseline) if args.baseline else None
    if args.baseline and baseline is None:
        return 2
    for flag, path in (("-o", args.output), ("--recording", args.recording)):
        problem = output_problem(path) if path else None
        if problem:
            print(f"spy_magic: error: cannot write {flag} {path}: {problem}", file=sys.stderr)
            return 2
    options = sampler_options(args)
    with terminating_signals():
        if command:
            try:
                sampler = Sampler.launch(command, **options)
            except OSError as exc:
                print(f"spy_magic: error: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
                return 1
        else:
            sampler = Sampler(args.pid, **options)
        process = sampler.process
        try:
            target = {
                "command": command or None,
                "target": " ".join(command) if command else f"pid {sampler.pid}",
            }
            output = args.output or f"spy_magic-{sampler.pid}.{EXTENSIONS[args.format]}"
            # The binary recording is written while sampling, so a kill leaves it readable.
            stream_path = output if args.format == "binary" else args.recording
            try:
                if stream_path:
                    from ..profile.recording import RecordingWriter

                    stream = RecordingWriter(stream_path, target)
                else:
                    stream = None
            except OSError as exc:
                print(f"spy_magic: error: cannot write {stream_path}: {exc.strerror}",
                      file=sys.stderr)  # fmt: skip
                if process is not None:  # launched for nothing
                    end_command(process)
                return 1
            if stream is not None:
                stream.attach(sampler)
            profile = record(sampler, keep_samples=keeps_samples(args))
            profile.metadata.update(target)
            if stream is not None:
                stream.close(profile.metadata)
            stopped_by = profile.metadata.get("stopped_by")
            signum = None if stopped_by in (None, "SIGINT") else signal.Signals[stopped_by]
            if signum is not None and process is not None and process.poll() is None:
                process.send_signal(signum)  # it was started for the recording: it ends too
            if sampler.error is not None and profile.sample_count == 0:
                if stream_path:
                    with contextlib.suppress(OSError):
                        os.unlink(stream_path)  # nothing was recorded
                print(f"spy_magic: error: {sampler.error}", file=sys.stderr)
                if process is not None and process.poll() is None:
                    # It cannot be sampled; left alone it would run on unseen.
                    print(f"spy_magic: ending the command (pid {sampler.pid})", file=sys.stderr)
                    end_command(process)
                return 1
            diff = baseline_diff(profile, baseline, args.baseline) if baseline else None
            written = _write(args, profile, sampler, output, diff)
            written = written and (diff is not None or baseline is None)
        except BaseException:
            # Whatever went wrong (a second Ctrl-C while writing included), the command we
            # launched does not outlive us.
            if process is not None:
                end_command(process)
            raise
        if process is None:
            return 0 if written else 1
        exited = sampler.end_reason == "target exited"
        return see_command_through(process, signum, exited) or (0 if written else 1)


def _write(args: argparse.Namespace, profile: Profile, sampler: Sampler, output: str,
           diff: ProfileDiff | None = None) -> bool:  # fmt: skip
    """Write the profile (against `diff`'s baseline when given) and say how the recording
    went; False when it went elsewhere than asked (or nowhere: not even the fallback could
    be written)."""
    if args.format == "binary":  # streamed while sampling, to a path checked beforehand
        saved_path, problem = os.path.abspath(output), None
    else:
        options = export_options(args)
        if diff is not None:
            options["baseline"] = diff
        try:
            saved = save(profile, output, args.format, **options)
        except OSError as exc:
            print(f"spy_magic: error: {exc}", file=sys.stderr)
            return False
        saved_path, problem = saved.path, saved.problem
    for line in summary(profile, sampler):
        print(f"spy_magic: {line}", file=sys.stderr)
    if args.recording:
        print(f"spy_magic: wrote the recording to {os.path.abspath(args.recording)}",
              file=sys.stderr)  # fmt: skip
    if problem:
        print(f"spy_magic: error: {problem}; wrote {args.format} to {saved_path} "
              "instead", file=sys.stderr)  # fmt: skip
        return False
    print(f"spy_magic: wrote {args.format} to {saved_path}", file=sys.stderr)
    return True
