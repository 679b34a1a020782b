"""The profilers the benchmarks run, one class each: the command that starts one on a pid, and
how to read what it wrote. head_to_head.py and reader_cost.py share them.

- `SpyMagic`: `python -m spy_magic record` of this checkout (jsonl), optionally --nonblocking.
- `SpyMagicReader`: `pace_reader.py`, spy_magic's StackReader alone on a fixed schedule (no
  engine, no profile kept): reader_cost.py's measure of the reader.
- `PySpy`: `py-spy record --format raw --idle`, pausing (its default) or --nonblocking.
- `Tachyon`: CPython 3.15's own sampler, `python3.15 -m profiling.sampling attach`, run
  inside the Debian sid root (it reads only targets of its own version), non-blocking (its
  default) or --blocking (ptrace-stops every thread for each sample).
- `PyInstrument`: in-process (it starts the script itself), where the target Python has it.

Every tool says why it cannot profile a given target Python (`unsupported`): a static reason
where there is one, else the result of a one-shot `dump` of a probe process started by that
Python (`check_tools`). Such tools are left out with the reason printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import ROOT, TargetPython, find_pyspy, run_text, sid_python, target_preexec

PYTHON = sys.executable  # the host Python, which runs spy_magic
PACER = ROOT / "benchmarks" / "pace_reader.py"

Frames = list[tuple[str, int, str]]  # (function, line, file name), innermost first
Visit = Callable[[Frames, int], None]  # called with each distinct stack and its count


@dataclass
class Recording:
    """What a tool said about one run, besides its stacks."""

    samples: int = 0  # sampling moments it took, by its own count
    errors: int = 0  # of those, detected as bad and dropped
    seconds: float | None = None  # the time it sampled for, when it says
    paused: int | None = None  # spy_magic: reads taken with the target paused
    extra: dict = field(default_factory=dict)


class Tool:
    name = ""
    attaches = True  # by pid, to a target started by the benchmark
    writes_output = True  # to `out`; else its report is its console output
    runs_checkout = False  # imports spy_magic from this checkout

    def env(self) -> dict[str, str]:
        """Its environment: the checkout on PYTHONPATH for spy_magic, none for the others (a
        chrooted Python would look for it inside the root)."""
        base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return {**base, "PYTHONPATH": str(ROOT)} if self.runs_checkout else base

    def command(self, pid: int, rate: int, out: Path, duration: float | None = None) -> list[str]:
        raise NotImplementedError

    def read(self, out: Path, text: str, visit: Visit) -> Recording:
        """`text` is what it printed (stdout and stderr, as one)."""
        raise NotImplementedError

    def probe(self, pid: int) -> list[str] | None:
        """A one-shot dump of `pid`: it must succeed and show the probe's `doze` frame."""
        return None

    def unsupported(self, target: TargetPython) -> str | None:
        """A reason known without trying, why this tool cannot profile `target`'s processes."""
        return None


class SpyMagic(Tool):
    runs_checkout = True

    def __init__(self, nonblocking: bool = False) -> None:
        self.nonblocking = nonblocking
        self.name = "spy_magic --nonblocking" if nonblocking else "spy_magic"

    def command(self, pid, rate, out, duration=None):
        cmd = [PYTHON, "-m", "spy_magic", "record", "--pid", str(pid), "-r", str(rate),
               "-f", "jsonl", "-o", str(out)]  # fmt: skip
        if duration is not None:
            cmd += ["-d", str(duration)]
        return [*cmd, "--nonblocking"] if self.nonblocking else cmd

    def read(self, out, text, visit):
        from spy_magic.profile import read_jsonl

        profile = read_jsonl(out)
        for _, _, trace in profile.iter_traces():
            visit([(f.name, f.line, os.path.basename(f.filename)) for f in trace.frames], 1)
        return Recording(
            samples=profile.sample_count,
            errors=sum(profile.error_counts().values()),
            seconds=profile.duration or None,
            paused=profile.metadata.get("paused_reads"),
            extra={"rate_changes": len(profile.rate_changes)},
        )

    def probe(self, pid):
        return [PYTHON, "-m", "spy_magic", "dump", "--pid", str(pid)]


class SpyMagicReader(Tool):
    """pace_reader.py: RATE x DURATION `StackReader.read()` calls on a fixed schedule."""

    name = "spy_magic (reader alone)"
    writes_output = False
    runs_checkout = True

    def command(self, pid, rate, out, duration=None):
        return [PYTHON, str(PACER), str(pid), str(rate), str(duration or 5)]

    def read(self, out, text, visit):
        report = json.loads(next(ln for ln in reversed(text.splitlines()) if ln.startswith("{")))
        return Recording(
            samples=report["samples"],
            errors=report["errors"],
            seconds=report["loop_wall_s"],
            extra={
                "loop_cpu_s": report["loop_cpu_s"],
                "setup_cpu_ms": {k: report[k + "_cpu_s"] * 1e3
                                 for k in ("start", "import", "construct")},
            },
        )  # fmt: skip

    def probe(self, pid):
        return SpyMagic().probe(pid)


class PySpy(Tool):
    def __init__(self, nonblocking: bool) -> None:
        self.nonblocking = nonblocking
        self.name = "py-spy --nonblocking" if nonblocking else "py-spy"
        self.binary = find_pyspy()

    def command(self, pid, rate, out, duration=None):
        cmd = [self.binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
               "--idle", "-o", str(out)]  # fmt: skip
        if duration is not None:
            cmd += ["--duration", str(int(duration))]
        return [*cmd, "--nonblocking"] if self.nonblocking else cmd

    def read(self, out, text, visit):
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = []
            for label in reversed(stack.split(";")):  # innermost first
                name, _, where = label.partition(" (")
                filename, _, lineno = where.rstrip(")").rpartition(":")
                frames.append((name, int(lineno) if lineno.isdigit() else 0, filename))
            visit(frames, int(count))
        recording = Recording()
        m = re.search(r"Samples: (\d+) Errors: (\d+)", text)
        if m:
            recording.samples, recording.errors = int(m.group(1)), int(m.group(2))
        return recording

    def probe(self, pid):
        return [self.binary, "dump", "--pid", str(pid)]

    def unsupported(self, target):
        return None if self.binary else "not installed (pip install py-spy)"


class Tachyon(Tool):
    """CPython 3.15's `profiling.sampling`, run by the sid root's python3.15."""

    def __init__(self, blocking: bool) -> None:
        self.blocking = blocking
        self.name = "Tachyon --blocking" if blocking else "Tachyon"
        self.sampler, self.why_absent = sid_python(15)

    def command(self, pid, rate, out, duration=None):
        assert self.sampler is not None
        cmd = [*self.sampler.argv, "-m", "profiling.sampling", "attach", "-a", "-r", str(rate),
               "--collapsed", "-o", self.sampler.inside(out)]  # fmt: skip
        if duration is not None:
            cmd += ["-d", str(int(duration))]  # it takes whole seconds only
        if self.blocking:
            cmd.append("--blocking")
        return [*cmd, str(pid)]

    def read(self, out, text, visit):
        # Lines "tid:N;file:function:line;... count", outermost first; special frames
        # (<GC>, <native>) are a bare name.
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = []
            for label in reversed(stack.split(";")[1:]):
                parts = label.rsplit(":", 2)
                if len(parts) == 3 and parts[2].isdigit():
                    frames.append((parts[1], int(parts[2]), parts[0]))
                else:
                    frames.append((label, 0, ""))
            visit(frames, int(count))
        recording = Recording()
        m = re.search(r"Captured ([\d,.]+) samples? in ([\d.,]+) seconds", text)
        if m:
            recording.samples = int(re.sub(r"\D", "", m.group(1)))
            recording.seconds = float(m.group(2).replace(",", ""))
        m = re.search(r"Error rate: ([\d.,]+)", text)  # a percentage of the samples
        if m:
            recording.errors = round(float(m.group(1).replace(",", "")) * recording.samples / 100)
        return recording

    def probe(self, pid):
        assert self.sampler is not None
        return [*self.sampler.argv, "-m", "profiling.sampling", "dump", str(pid)]

    def unsupported(self, target):
        if self.sampler is None:
            return f"needs CPython 3.15 in the Debian sid root: {self.why_absent}"
        if target.version[:2] != self.sampler.version[:2]:
            mine = ".".join(map(str, self.sampler.version[:2]))
            theirs = ".".join(map(str, target.version[:2]))
            return f"reads only Python {mine} targets (its own version); the targets are {theirs}"
        return None


class PyInstrument(Tool):
    name = "pyinstrument"
    attaches = False

    def __init__(self, target: TargetPython) -> None:
        self.target = target

    def command(self, pid, rate, out, duration=None):
        return [*self.target.argv, "-m", "pyinstrument", "-i", str(1 / rate), "-r", "json",
                "-o", self.target.inside(out)]  # fmt: skip

    def read(self, out, text, visit):
        raise NotImplementedError  # it reports time per call tree node: see head_to_head.py

    def unsupported(self, target):
        check = run_text([*target.argv, "-c", "import pyinstrument; print('ok')"])
        last = (check.splitlines() or ["?"])[-1]
        return None if check == "ok" else f"not installed for the target Python ({last[:120]})"


PROBE = "import time\nprint('ready', flush=True)\ndef doze():\n    time.sleep(120)\ndoze()\n"


def check_tools(tools: list[Tool], target: TargetPython) -> tuple[list[Tool], list[list[str]]]:
    """The tools that can profile `target`'s processes, and [name, reason] for the others.

    A tool with no static objection must `dump` a probe process (started by `target`) and
    show its frame; the last line it printed otherwise is the reason."""
    usable: list[Tool] = []
    skipped: list[list[str]] = []
    probe_proc = None
    try:
        for tool in tools:
            reason = tool.unsupported(target)
            if reason is None and tool.probe(0) is not None:
                if probe_proc is None:
                    probe_proc = subprocess.Popen(
                        [*target.argv, "-c", PROBE], stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                        preexec_fn=target_preexec,
                    )  # fmt: skip
                    probe_proc.stdout.readline()
                    time.sleep(0.1)
                try:
                    done = subprocess.run(
                        tool.probe(probe_proc.pid), capture_output=True, text=True, timeout=60,
                        env=tool.env(), cwd=ROOT,
                    )  # fmt: skip
                    text = (done.stdout or "") + (done.stderr or "")
                    if done.returncode != 0 or "doze" not in text:
                        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
                        version = ".".join(map(str, target.version))
                        reason = (f"cannot read a {version} process: rc={done.returncode}: "
                                  f"{' / '.join(lines[:2])[:200]}")  # fmt: skip
                except subprocess.TimeoutExpired:
                    reason = "its dump of a probe process hung (60 s)"
            if reason is None:
                usable.append(tool)
            else:
                skipped.append([tool.name, reason])
    finally:
        if probe_proc is not None:
            probe_proc.kill()
            probe_proc.wait()
            probe_proc.stdout.close()
    return usable, skipped
