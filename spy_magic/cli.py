"""Command line: `python -m spy_magic dump --pid PID [--json]`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .reader import ReaderError, StackReader, ThreadStack


def _process_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
        return " ".join(a.decode("utf-8", "replace") for a in argv if a)
    except OSError:
        return "?"


def _thread_header(thread: ThreadStack) -> str:
    states = []
    if thread.idle is not None:
        states.append("idle" if thread.idle else "active")
    if thread.gil:
        states.append("gil")
    state = f" ({', '.join(states)})" if states else ""
    name = f': "{thread.name}"' if thread.name else ""
    native = thread.native_id if thread.native_id is not None else "?"
    return f"Thread {native} [{thread.thread_id:#x}]{state}{name}"


def format_dump(
    pid: int, version: tuple[int, int, int], binary: str, threads: Sequence[ThreadStack]
) -> str:
    """The stacks as text, innermost frame first, like `py-spy dump`."""
    lines = [
        f"Process {pid}: {_process_line(pid)}",
        f"Python v{'.'.join(map(str, version))} ({binary})",
        "",
    ]
    for thread in threads:
        lines.append(_thread_header(thread))
        if thread.error is not None:
            lines.append(f"    <error: {thread.error}>")
        for frame in thread.frames:
            lines.append(f"    {frame.name} ({frame.filename}:{frame.line})")
        lines.append("")
    return "\n".join(lines)


def _dump(args: argparse.Namespace) -> int:
    with StackReader(args.pid) as reader:
        threads = reader.read()
        if args.json:
            print(json.dumps([t.to_dict() for t in threads], indent=2, ensure_ascii=False))
        else:
            print(format_dump(args.pid, reader.version, reader.interpreter.binary, threads))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(rate=args.rate, repeat=args.repeat)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spy_magic",
        description="Sampling profiler for Python processes and Jupyter notebooks.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    dump = commands.add_parser("dump", help="print the Python stack of every thread of a process")
    dump.add_argument("--pid", "-p", type=int, required=True, help="process id to read")
    dump.add_argument("--json", action="store_true", help="print JSON instead of text")
    dump.set_defaults(run=_dump)
    demo = commands.add_parser("demo", help="profile the bundled example script (no arguments)")
    demo.add_argument("--rate", type=float, default=100.0, help="samples per second")
    demo.add_argument("--repeat", type=int, default=10, help="loops of the example to run")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ReaderError as exc:
        print(f"spy_magic: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
