"""The sampling helper: a separate process that samples a pid and streams samples back.

A kernel that sampled itself from a thread would see its own stacks through the GIL (only
where threads let it go) and would slow the cell it measures. So the kernel starts this
helper, which reads the kernel from outside, and streams samples as JSON lines on stdout:

    {"type": "started", "python_version": "3.11.7"}
    {"type": "trace", "id": 0, ...}      (each distinct stack once, before its first use)
    {"type": "sample", ...}              (see spy_magic.profile.exports.SampleEncoder)
    {"type": "rate_change", ...}
    {"type": "end", "metadata": {...}, "error": null}

It waits for "go" on stdin before reading (so the kernel can first grant it ptrace access),
and stops on "stop", when stdin closes or stdout breaks, and when the kernel that started it
(`--parent`) is gone, even if a process the kernel forked still holds the pipes open (see
ParentWatch).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import sys
import threading
import time

from ..cli.options import add_sampling_options, sampler_options
from ..engine import Sampler
from ..profile.exports import SampleEncoder, encode_rate_change

FLUSH_EVERY_S = 0.05
PARENT_POLL_S = 0.2  # how often the parent is checked (SIGHUP makes it at once)
EXIT_GRACE_S = 1.0  # for the sampler to let go of the target once the parent is gone
PR_SET_PDEATHSIG = 1


class LineWriter:
    """Writes records to stdout from the processing thread, flushing a few times a second.

    Once stdout breaks (nobody reads any more) it writes nothing and calls `on_broken`.
    """

    def __init__(self, stream) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.flushed_at = time.monotonic()
        self.broken = False
        self.on_broken = None

    def write(self, line: str, *, flush: bool = False) -> None:
        with self.lock:
            if self.broken:
                return
            try:
                self.stream.write(line + "\n")
                now = time.monotonic()
                if flush or now - self.flushed_at > FLUSH_EVERY_S:
                    self.stream.flush()
                    self.flushed_at = now
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
    if sys.stdin.readline().strip() != "go":
        return 0  # the kernel changed its mind (or died) before we began
    sampler = Sampler(args.pid, **sampler_options(args))
    watch.sampler = sampler
    out.on_broken = sampler.stop
    changes_sent = 0
    encoder = SampleEncoder()

    def forward(sample) -> None:
        nonlocal changes_sent
        while changes_sent < len(sampler.rate_changes):
            out.write(encode_rate_change(sampler.rate_changes[changes_sent]))
            changes_sent += 1
        for record in encoder.encode(sample):
            out.write(record)

    sampler.add_collector(forward)
    sampler.start()
    sampler.wait_started()
    if sampler.error is None:
        out.write(json.dumps({"type": "started", **sampler.metadata()}), flush=True)

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        sampler.stop()

    threading.Thread(target=watch_stdin, name="spy_magic-stdin", daemon=True).start()
    sampler.join()
    error = None if sampler.error is None else f"{type(sampler.error).__name__}: {sampler.error}"
    end = {"type": "end", "metadata": sampler.metadata(), "error": error}
    out.write(json.dumps(end, default=str), flush=True)
    if out.broken:  # what is left in stdout's buffer could not be flushed at exit either
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
