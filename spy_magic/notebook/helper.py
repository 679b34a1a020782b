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
and stops on "stop" or when stdin closes (so it never outlives a dead kernel).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from ..cli.options import add_sampling_options, sampler_options
from ..engine import Sampler
from ..profile.exports import SampleEncoder, encode_rate_change

FLUSH_EVERY_S = 0.05


class LineWriter:
    """Writes records to stdout from the processing thread, flushing a few times a second."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.flushed_at = time.monotonic()

    def write(self, line: str, *, flush: bool = False) -> None:
        with self.lock:
            self.stream.write(line + "\n")
            now = time.monotonic()
            if flush or now - self.flushed_at > FLUSH_EVERY_S:
                self.stream.flush()
                self.flushed_at = now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spy_magic.notebook.helper")
    parser.add_argument("--pid", type=int, required=True)
    add_sampling_options(parser)
    args = parser.parse_args(argv)
    out = LineWriter(sys.stdout)
    if sys.stdin.readline().strip() != "go":
        return 0  # the kernel changed its mind (or died) before we began
    sampler = Sampler(args.pid, **sampler_options(args))
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
