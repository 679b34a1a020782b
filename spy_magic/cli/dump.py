"""`dump`: every thread's Python stack, once, like `py-spy dump`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from ..engine.spy import command_label
from ..reader import NotAvailable, StackReader, ThreadStack, printable


def _thread_header(thread: ThreadStack, free_threaded: bool = False) -> str:
    states = []
    if thread.idle is not None:
        states.append("idle" if thread.idle else "active")
    if thread.gil:
        # A free-threaded build has no GIL: `gil` there means attached (running Python).
        states.append("attached" if free_threaded else "gil")
    if thread.exception:
        states.append("handling an exception")
    state = f" ({', '.join(states)})" if states else ""
    name = f': "{thread.name}"' if thread.name else ""
    native = thread.native_id if thread.native_id is not None else "?"
    return f"Thread {native} [{thread.thread_id:#x}]{state}{name}"


def format_dump(
    pid: int,
    version: tuple[int, int, int],
    binary: str,
    threads: Sequence[ThreadStack],
    free_threaded: bool = False,
) -> str:
    """The stacks as text, innermost frame first; a byte of a name that is not UTF-8
    shows as U+FFFD (`printable`), so the text is valid UTF-8 whatever the names hold."""
    build = ".".join(map(str, version)) + (" free-threaded" if free_threaded else "")
    lines = [
        f"Process {pid}: {command_label(pid, limit=200)}",
        f"Python v{build} ({binary})",
        "",
    ]
    for thread in threads:
        lines.append(_thread_header(thread, free_threaded))
        if thread.error is not None:
            lines.append(f"    <error: {thread.error}>")
        for frame in thread.frames:
            lines.append(f"    {frame.name} ({frame.filename}:{frame.line})")
        lines.append("")
    return printable("\n".join(lines))


def add_parser(commands) -> None:
    parser = commands.add_parser("dump", help="print the Python stack of every thread of a process")
    parser.add_argument("--pid", "-p", type=int, required=True, help="process id to read")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def _reader(pid: int) -> StackReader:
    """A reader that also says which threads handle an exception, and shows `<GC>` while the
    collector runs; without the exception state where this build cannot tell it."""
    try:
        return StackReader(pid, exceptions=True, gc=True)
    except NotAvailable:
        return StackReader(pid, gc=True)


def run(args: argparse.Namespace) -> int:
    with _reader(args.pid) as reader:
        threads = reader.read()
        if args.json:
            # ASCII: a name's undecodable byte stays a `\udcff` escape, valid JSON that
            # json.loads turns back into the name Python itself holds.
            print(json.dumps([t.to_dict() for t in threads], indent=2, ensure_ascii=True))
        else:
            print(
                format_dump(
                    args.pid,
                    reader.version,
                    reader.interpreter.binary,
                    threads,
                    reader.free_threaded,
                )
            )
    return 0
