"""The sampling helper: a separate process that samples a pid and does all the work.

A kernel that sampled itself from a thread would see its own stacks through the GIL (only
where threads let it go) and would slow the cell it measures; a kernel that received every
sample would still spend its CPU (and its GIL) decoding them. So the kernel starts this
helper, which reads the kernel from outside, trims the kernel's machinery off every stack
(`cells.py`, with the context the kernel sends), aggregates, and sends back only a small
summary about once a second and the finished profile at the end (`protocol.py`): its
aggregates, not its samples, unless the kernel asked for those (an `-o` format that needs
every sample).

It says hello first, waits for "go" before reading (so the kernel can first grant it ptrace
access), and stops on "stop", when stdin closes or stdout breaks, and when the kernel that
started it (`--parent`) is gone, even if a process the kernel forked still holds the pipes
open (see ParentWatch).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

from ..cli.options import add_sampling_options, sampler_options
from ..engine import Sampler
from ..profile import Profile
from . import protocol
from .cells import CellContext, LiveTrim

SUMMARY_EVERY_S = 1.0  # how often the live view hears from us
PARENT_POLL_S = 0.2  # how often the parent is checked (SIGHUP makes it at once)
EXIT_GRACE_S = 1.0  # for the sampler to let go of the target once the parent is gone
PR_SET_PDEATHSIG = 1


class LineWriter:
    """Writes messages to stdout, each flushed at once (there are about one a second), from
    any thread. Once stdout breaks (nobody reads any more) it writes nothing and calls
    `on_broken`."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.broken = False
        self.on_broken = None

    def write(self, line: str) -> None:
        with self.lock:
            if self.broken:
                return
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                self.broken = True
        if self.broken and self.on_broken is not None:
            self.on_broken()


def _alive(pid: int) -> bool:
    """pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            pass
        return True


class ParentWatch:
    """Ends this process once the kernel that started it is gone.

    Gone: this process's parent changed (it exited and the OS re-parented us), or `parent`
    (the kernel's pid, when an interpreter wrapper stands between) died. It is checked every
    PARENT_POLL_S, and at once on SIGHUP, which the OS sends when the parent *thread* that
    started us exits (PR_SET_PDEATHSIG; that thread may end before its process does, hence
    the check). Then a running sampler is stopped (it lets go of the target) and the process
    exits. `die_with_parent`: we were started from the parent's main thread, which ends only
    with its process, so the OS may simply kill us then (SIGKILL), whatever we are doing.
    """

    def __init__(self, parent: int | None, *, die_with_parent: bool = False) -> None:
        self.parent = parent
        self.first_ppid = os.getppid()
        self.sampler = None
        self._wake = threading.Event()
        with contextlib.suppress(OSError, ValueError, AttributeError):  # no prctl: polling
            if die_with_parent:
                death_signal = signal.SIGKILL
            else:
                death_signal = signal.SIGHUP
                signal.signal(signal.SIGHUP, lambda *_: self._wake.set())
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)
        threading.Thread(target=self._run, name="spy_magic-parent", daemon=True).start()

    def gone(self) -> bool:
        if os.getppid() != self.first_ppid:
            return True
        return self.parent is not None and not _alive(self.parent)

    def _run(self) -> None:
        while not self.gone():  # checked once before waiting: it may have died already
            self._wake.wait(PARENT_POLL_S)
            self._wake.clear()
        sampler = self.sampler
        if sampler is not None:
            sampler.stop()
            sampler.join(EXIT_GRACE_S / 2)  # each of its two threads: EXIT_GRACE_S in all
        os._exit(0)


class Recording:
    """What the helper keeps: the recording as read (aggregates, and every sample only
    when `keep_samples`) and trimmed for the cell, with the context to trim with, which the
    kernel may change while it runs (`cells.LiveTrim`)."""

    def __init__(self, context: CellContext | None, *, keep_samples: bool = False) -> None:
        self.raw = Profile(keep_samples=keep_samples)
        self.live = LiveTrim(self.raw, context)
        self.add = self.live.add  # the sampler's collector (its processing thread)
        self.set_context = self.live.set_context  # from the stdin thread

    def finish(self, sampler: Sampler) -> Profile:
        """The finished, trimmed profile (once the sampler has ended: no more `add`s)."""
        self.live.settle()
        profile = self.live.profile
        profile.metadata.update(sampler.metadata())
        for change in sampler.rate_changes:
            profile.add_rate_change(change)
        return profile


def _context(message: dict) -> CellContext | None:
    data = message.get("context")
    return None if data is None else CellContext.from_json(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spy_magic.notebook.helper")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--parent", type=int, default=None, help="exit when this pid is gone")
    parser.add_argument(
        "--die-with-parent", action="store_true",
        help="started from the parent's main thread: let the OS kill this process with it",
    )  # fmt: skip
    add_sampling_options(parser)
    args = parser.parse_args(argv)
    watch = ParentWatch(args.parent, die_with_parent=args.die_with_parent)
    out = LineWriter(sys.stdout)
    out.write(protocol.encode("hello", protocol=protocol.PROTOCOL_VERSION))
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the kernel changed its mind (or died) before we began
    try:
        go = protocol.decode(line, frozenset({"go"}))
        protocol.check_version(go, "the kernel")
        send_samples = go.get("samples") is True  # an -o format that needs every sample
        recording = Recording(_context(go), keep_samples=send_samples)
    except (protocol.ProtocolError, ValueError) as exc:
        out.write(protocol.encode("end", error=f"ProtocolError: {exc}"))
        return 2
    sampler = Sampler(args.pid, **sampler_options(args))
    watch.sampler = sampler
    out.on_broken = sampler.stop
    sampler.add_collector(recording.add)
    sampler.start()
    sampler.wait_started()
    if sampler.error is None:
        out.write(protocol.encode("started", metadata=sampler.metadata()))

    def watch_stdin() -> None:
        for text in sys.stdin:
            try:
                message = protocol.decode(text, protocol.KERNEL_MESSAGES)
                if "context" in message:
                    recording.set_context(_context(message))
            except (protocol.ProtocolError, ValueError) as exc:
                print(f"spy_magic helper: ignored a bad message: {exc}", file=sys.stderr)
                continue
            if message["type"] == "stop":
                break
        sampler.stop()

    finished = threading.Event()

    def send_summaries() -> None:
        started = time.monotonic()
        while not finished.wait(SUMMARY_EVERY_S):
            with contextlib.suppress(Exception):  # a view never ends the recording
                fields = protocol.summary(
                    recording.live.profile, elapsed=time.monotonic() - started,
                    asked_rate=sampler.asked_rate, rate_now=sampler.rate,
                )  # fmt: skip
                out.write(protocol.encode("summary", **fields))

    threading.Thread(target=watch_stdin, name="spy_magic-stdin", daemon=True).start()
    if sampler.error is None:
        threading.Thread(target=send_summaries, name="spy_magic-summary", daemon=True).start()
    sampler.join()
    finished.set()
    error = None if sampler.error is None else f"{type(sampler.error).__name__}: {sampler.error}"
    if error is None or recording.raw.sample_count:
        profile = recording.finish(sampler)
        encoded = protocol.encode_profile(profile, samples=send_samples)
        out.write(protocol.encode("profile", profile=encoded))
    out.write(protocol.encode("end", error=error))
    if out.broken:  # what is left in stdout's buffer could not be flushed at exit either
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
