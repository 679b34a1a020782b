"""spy_magic against py-spy and pyinstrument on workloads with a known answer.

    python benchmarks/head_to_head.py             # 3 rounds, about 12 minutes on 2 cores
    python benchmarks/head_to_head.py --quick     # 1 round of shorter runs, about 3 minutes
    python benchmarks/head_to_head.py --memory 10 # only the long recording, 10 minutes

Every workload in `workloads/` times its own named functions from inside (the ground truth,
see workloads/truth.py) and waits for a go-ahead after printing "ready", so the profilers
attach by pid to an already-running target before its work begins (pyinstrument, being
in-process, starts the script itself). Each round runs every tool once per case, in the
same order, A B C ... then again: rounds interleave, so machine noise spreads over all tools.

Printed (Markdown, stdout; progress on stderr):

1. Attribution: per workload, rate and tool, the self-time share of each named function
   against the truth, the largest error in percentage points and in binomial standard
   errors (sqrt(p(1-p)/n), n = samples that landed in a named function).
2. Target slowdown: the CPU-bound workloads' elapsed time under each profiler divided by
   the elapsed time of the unprofiled control run of the same round.
3. Torn samples: on a stack that changes every few µs, how many samples each tool showed
   as stacks the program cannot have had, and how many it detected and dropped.
4. Memory (`--memory MINUTES`, also part of the full run): the resident memory of
   spy_magic's recorder and of py-spy, side by side on one target at 1 kHz, over time.

Tools: spy_magic (`python -m spy_magic record`, the checkout this file lives in), py-spy
(`record`, its default mode, which pauses the target for each sample, and `--nonblocking`),
pyinstrument (in-process; not for the threaded workload, where it sees only the main thread,
nor for the churn count, which needs stacks). py-spy and pyinstrument are the ones next to
this Python (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    ROOT,
    find_pyspy,
    fmt,
    git_state,
    loadavg,
    md_table,
    pin,
    progress,
    say,
    target_preexec,
    wait_with_rusage,
)

sys.path.insert(0, str(ROOT))  # measure this checkout
sys.path.insert(0, str(ROOT / "benchmarks" / "workloads"))

from churn import stack_problem

from spy_magic.profile import read_jsonl

WORKLOADS = ROOT / "benchmarks" / "workloads"
PYTHON = sys.executable
READY_TIMEOUT = 30.0
ATTACH_GRACE = 0.4  # seconds between starting a profiler and letting the target work
RUN_TIMEOUT = 180.0


@dataclass(frozen=True)
class Workload:
    key: str
    script: str
    args: tuple[str, ...]
    names: tuple[str, ...]  # the functions whose shares are judged
    cpu: bool  # CPU-bound with fixed work: its elapsed time measures slowdown
    in_process_ok: bool = True  # pyinstrument applies


@dataclass
class Run:
    tool: str
    workload: str
    rate: int
    elapsed: float | None = None  # the workload's own timing of its fixed work
    truth: dict[str, float] = field(default_factory=dict)  # function -> seconds
    counts: Counter = field(default_factory=Counter)  # function (or "other") -> samples
    samples: int = 0
    detected_errors: int = 0
    torn_shown: int = 0
    torn_examples: list[str] = field(default_factory=list)
    sampler_cpu: float | None = None
    failure: str | None = None
    round: int = 0
    paused: int | None = None  # spy_magic: reads taken with the target paused
    stacks_judged: int = 0  # churn: stacks of the churning part seen

    @property
    def named(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "other")


# -- tools ------------------------------------------------------------------------------------
class Tool:
    name = ""
    attaches = True  # by pid, to a target started by the benchmark

    def command(self, pid: int, rate: int, out: Path) -> list[str]:
        raise NotImplementedError

    def read(self, out: Path, stderr: str, run: Run, attribute: Callable) -> None:
        raise NotImplementedError


class SpyMagic(Tool):
    def __init__(self, nonblocking: bool = False) -> None:
        self.nonblocking = nonblocking
        self.name = "spy_magic --nonblocking" if nonblocking else "spy_magic"

    def command(self, pid, rate, out):
        cmd = [PYTHON, "-m", "spy_magic", "record", "--pid", str(pid), "-r", str(rate),
               "-f", "jsonl", "-o", str(out)]  # fmt: skip
        return [*cmd, "--nonblocking"] if self.nonblocking else cmd

    def read(self, out, stderr, run, attribute):
        profile = read_jsonl(out)
        run.samples = profile.sample_count
        run.detected_errors = sum(profile.error_counts().values())
        run.paused = profile.metadata.get("paused_reads")
        for _, _, trace in profile.iter_traces():
            frames = [(f.name, f.line, os.path.basename(f.filename)) for f in trace.frames]
            attribute(run, frames, 1)


class PySpy(Tool):
    def __init__(self, nonblocking: bool) -> None:
        self.nonblocking = nonblocking
        self.name = "py-spy --nonblocking" if nonblocking else "py-spy"
        self.binary = find_pyspy()

    def command(self, pid, rate, out):
        cmd = [self.binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
               "--idle", "-o", str(out)]  # fmt: skip
        return [*cmd, "--nonblocking"] if self.nonblocking else cmd

    def read(self, out, stderr, run, attribute):
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = []
            for label in reversed(stack.split(";")):  # innermost first
                name, _, where = label.partition(" (")
                filename, _, lineno = where.rstrip(")").rpartition(":")
                frames.append((name, int(lineno) if lineno.isdigit() else 0, filename))
            attribute(run, frames, int(count))
        summary = [w for w in stderr.split() if w]
        if "Samples:" in summary:
            run.samples = int(summary[summary.index("Samples:") + 1])
        if "Errors:" in summary:
            run.detected_errors = int(summary[summary.index("Errors:") + 1])


class PyInstrument(Tool):
    name = "pyinstrument"
    attaches = False

    def command(self, pid, rate, out):
        return [PYTHON, "-m", "pyinstrument", "-i", str(1 / rate), "-r", "json", "-o", str(out)]

    def read(self, out, stderr, run, attribute):
        document = json.loads(out.read_text())
        run.samples = int(document.get("sample_count") or 0)
        period = document.get("duration", 0) / max(run.samples, 1)

        def walk(node: dict, named: str | None) -> None:
            name = node["function"]
            if name in run.truth:
                named = name
            children = node.get("children", [])
            own = node["time"] - sum(c["time"] for c in children)
            # Time, turned into samples of the interval it actually achieved.
            run.counts[named or "other"] += own / period if period else 0
            for child in children:
                walk(child, named)

        walk(document["root_frame"], None)


def attribute_innermost_named(run: Run, frames: list[tuple[str, int, str]], count: int) -> None:
    """Credit a stack to its innermost function named by the workload ("other" if none)."""
    for name, _, _ in frames:
        if name in run.truth:
            run.counts[name] += count
            return
    run.counts["other"] += count


def count_torn(run: Run, frames: list[tuple[str, int, str]], count: int) -> None:
    own = [(name, line) for name, line, filename in frames if filename.endswith("churn.py")]
    if not own or "churn" not in [name for name, _ in own]:
        return  # start-up, shut-down, or the profiler's own view of other code
    run.stacks_judged += count
    problem = stack_problem(own)
    if problem:
        run.torn_shown += count
        if len(run.torn_examples) < 3:
            run.torn_examples.append(problem)


# -- running one case -------------------------------------------------------------------------
def start_target(workload: Workload, extra: list[str], truth: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [PYTHON, str(WORKLOADS / workload.script), *workload.args, *extra, "--truth", str(truth)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=target_preexec,
    )  # fmt: skip
    ready = _readline(proc, READY_TIMEOUT)
    if ready.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"{workload.script} did not start: {ready!r} {proc.stderr.read()}")
    return proc


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


def run_case(tool: Tool | None, workload: Workload, rate: int, extra: list[str],
             judge: Callable) -> Run:  # fmt: skip
    name = tool.name if tool else "control"
    run = Run(name, workload.key, rate)
    run.truth = {n: 0.0 for n in workload.names}
    with tempfile.TemporaryDirectory(prefix="spy_h2h-") as tmp:
        truth_path, out = Path(tmp) / "truth.json", Path(tmp) / "out"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        sampler = None
        if tool is not None and not tool.attaches:
            # In-process: the profiler starts the script itself, on the target's CPU.
            cmd = [*tool.command(0, rate, out), str(WORKLOADS / workload.script),
                   *workload.args, *extra, "--now", "--truth", str(truth_path)]  # fmt: skip
            target = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True, preexec_fn=target_preexec, env=env)  # fmt: skip
            wait_with_rusage(target, RUN_TIMEOUT)
            stderr = target.stderr.read()
        else:
            target = start_target(workload, extra, truth_path)
            if tool is not None:
                # py-spy prints its summary on stdout: keep both streams, as one.
                sampler = subprocess.Popen(
                    tool.command(target.pid, rate, out), stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
                )  # fmt: skip
            # The control waits too: every run of a case starts its work the same way.
            time.sleep(ATTACH_GRACE)
            target.stdin.write("go\n")
            target.stdin.flush()
            wait_with_rusage(target, RUN_TIMEOUT)
            stderr = ""
            if sampler is not None:
                stderr_box: list[str] = []
                drain = threading.Thread(target=lambda: stderr_box.append(sampler.stdout.read()))
                drain.start()
                usage = wait_with_rusage(sampler, 30)
                drain.join()
                stderr = stderr_box[0] if stderr_box else ""
                run.sampler_cpu = usage.ru_utime + usage.ru_stime
        if truth_path.exists():
            record = json.loads(truth_path.read_text())
            run.elapsed = record["elapsed"]
            run.truth.update({k: v for k, v in record["self"].items() if k in run.truth})
        if tool is not None:
            if not out.exists():
                run.failure = (stderr.strip().splitlines() or ["no output"])[-1]
            else:
                tool.read(out, stderr, run, judge)
    return run


# -- figures ----------------------------------------------------------------------------------
def shares(run: Run) -> tuple[dict[str, float], dict[str, float]]:
    total_truth = sum(run.truth.values()) or 1.0
    truth = {k: v / total_truth for k, v in run.truth.items()}
    named = run.named or 1
    measured = {k: run.counts.get(k, 0) / named for k in run.truth}
    return measured, truth


def errors_of(run: Run) -> tuple[float, float]:
    """(largest |error| in percentage points, largest |error| in binomial standard errors)."""
    measured, truth = shares(run)
    worst_pp = worst_z = 0.0
    for name, p in truth.items():
        error = abs(measured[name] - p)
        sigma = math.sqrt(p * (1 - p) / max(run.named, 1))
        worst_pp = max(worst_pp, 100 * error)
        worst_z = max(worst_z, error / sigma if sigma else 0.0)
    return worst_pp, worst_z


def spread(values: list[float], digits: int = 1, suffix: str = "") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    mid = statistics.median(values)
    if len(values) == 1:
        return f"{fmt(mid, digits)}{suffix}"
    return f"{fmt(mid, digits)}{suffix} ({fmt(min(values), digits)}–{fmt(max(values), digits)})"


def attribution_table(runs: list[Run], workloads: dict[str, Workload]) -> str:
    rows = []
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        if run.tool != "control":
            groups.setdefault((run.workload, run.rate, run.tool), []).append(run)
    pyspy_pp = {}
    for (wl, rate, tool), members in groups.items():
        if tool == "py-spy":
            pyspy_pp[(wl, rate)] = statistics.median(errors_of(r)[0] for r in members)
    for (wl, rate, tool), members in groups.items():
        ok = [r for r in members if r.failure is None and r.named]
        if not ok:
            rows.append([wl, str(rate), tool, "failed: " + (members[0].failure or "no samples"),
                         "", "", "", "", ""])  # fmt: skip
            continue
        names = workloads[wl].names
        measured = {n: statistics.median(shares(r)[0][n] for r in ok) for n in names}
        truth = {n: statistics.median(shares(r)[1][n] for r in ok) for n in names}
        pp = [errors_of(r)[0] for r in ok]
        z = [errors_of(r)[1] for r in ok]
        median_z = statistics.median(z)
        vs = ""
        if (wl, rate) in pyspy_pp and tool != "py-spy":
            vs = "yes" if statistics.median(pp) <= pyspy_pp[(wl, rate)] + 0.5 else "no"
        rows.append([
            wl, str(rate), tool,
            " / ".join(f"{100 * measured[n]:.1f}" for n in names),
            " / ".join(f"{100 * truth[n]:.1f}" for n in names),
            str(int(statistics.median(r.named for r in ok))),
            spread(pp, 1), spread(z, 1),
            ("yes" if median_z <= 2 else "no") + (f"; {vs}" if vs else ""),
        ])  # fmt: skip
    return md_table(
        ["workload", "Hz", "tool", "measured %", "truth %", "n", "max error pp", "max error σ",
         "≤ 2σ; no worse than py-spy"],
        rows,
    )  # fmt: skip


def slowdown_table(runs: list[Run]) -> str:
    """Each run against the unprofiled runs of its workload in the same round (one before
    each rate's tools): the median of those, so one slow control does not skew a round."""
    per_round: dict[tuple, list[float]] = {}
    for r in runs:
        if r.tool == "control" and r.elapsed:
            per_round.setdefault((r.workload, r.round), []).append(r.elapsed)
    base_of = {key: statistics.median(values) for key, values in per_round.items()}
    groups: dict[tuple, list[float]] = {}
    cpu: dict[tuple, list[float]] = {}
    for r in runs:
        base = base_of.get((r.workload, r.round))
        if r.tool == "control" or not base or r.elapsed is None:
            continue
        groups.setdefault((r.workload, r.rate, r.tool), []).append(r.elapsed / base)
        if r.sampler_cpu is not None and r.samples:
            cpu.setdefault((r.workload, r.rate, r.tool), []).append(1e6 * r.sampler_cpu / r.samples)
    rows = []
    for (wl, rate, tool), ratios in groups.items():
        control = [v for k, v in base_of.items() if k[0] == wl]
        cost = spread(cpu.get((wl, rate, tool), []), 0)
        rows.append([wl, str(rate), tool, spread(ratios, 3, "×"), spread(control, 2, " s"), cost])
    return md_table(["workload", "Hz", "tool", "slowdown", "control elapsed",
                     "sampler CPU µs/sample (start-up included)"], rows)  # fmt: skip


def torn_table(runs: list[Run]) -> str:
    rows = []
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.tool, []).append(r)
    for tool, members in groups.items():
        shown = sum(r.torn_shown for r in members)
        seen = sum(r.stacks_judged for r in members)
        detected = sum(r.detected_errors for r in members)
        examples = [e[:120] for r in members for e in r.torn_examples][:2]
        paused = [r.paused for r in members if r.paused is not None]
        pauses = str(sum(paused)) if paused else ("every sample" if tool == "py-spy" else "0")
        rows.append([tool, str(seen), str(shown), str(detected), pauses, "; ".join(examples)])
    return md_table(["tool", "stacks shown", "impossible stacks shown", "detected and dropped",
                     "reads with the target paused", "examples"], rows)  # fmt: skip


# -- memory -----------------------------------------------------------------------------------
def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def memory_run(minutes: float, rate: int = 1000) -> str:
    """spy_magic's recorder and py-spy side by side on one deep CPU-bound target."""
    seconds = minutes * 60
    workload = Workload("cpu deep", "cpu_split.py", ("--deep", "--rounds", "100000000"),
                        ("function_x", "function_y", "function_z"), True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="spy_mem-") as tmp:
        target = start_target(workload, [], Path(tmp) / "truth.json")
        target.stdin.write("go\n")
        target.stdin.flush()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        spy_out, pyspy_out = Path(tmp) / "spy.jsonl", Path(tmp) / "pyspy.txt"
        samplers = {
            "spy_magic": subprocess.Popen(
                [PYTHON, "-m", "spy_magic", "record", "--pid", str(target.pid), "-r", str(rate),
                 "-d", str(seconds), "-f", "jsonl", "-o", str(spy_out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env),
            "py-spy": subprocess.Popen(
                [find_pyspy(), "record", "--pid", str(target.pid), "--rate", str(rate),
                 "--duration", str(int(seconds)), "--format", "raw", "--idle", "-o",
                 str(pyspy_out), "--nonblocking"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        }  # fmt: skip
        marks = sorted({m for m in (0.25, 1, 2, 5, 10, 20, 30, 60) if m <= minutes} | {minutes})
        table: dict[str, list[str]] = {name: [] for name in samplers}
        began = time.monotonic()
        for mark in marks:
            while time.monotonic() - began < mark * 60 - 1:
                time.sleep(1)
            for name, proc in samplers.items():
                kib = rss_kib(proc.pid)
                table[name].append("gone" if kib is None else f"{kib / 1024:.1f}")
            progress(f"memory at {mark:g} min: {table}")
        outputs = {}
        for name, proc in samplers.items():
            out, err = proc.communicate(timeout=120)
            outputs[name] = (out or "") + (err or "")
        target.kill()
        target.wait()
        spy_samples = read_jsonl(spy_out).sample_count if spy_out.exists() else 0
        pyspy_words = outputs["py-spy"].split()
        pyspy_samples = (int(pyspy_words[pyspy_words.index("Samples:") + 1])
                         if "Samples:" in pyspy_words else 0)  # fmt: skip
        sizes = {"spy_magic": spy_out, "py-spy": pyspy_out}
        rows = []
        for name in samplers:
            samples = spy_samples if name == "spy_magic" else pyspy_samples
            size = sizes[name].stat().st_size / 2**20 if sizes[name].exists() else 0
            rows.append([name, *table[name], str(samples), f"{size:.1f}"])
    return md_table(
        ["tool", *(f"RSS MiB at {m:g} min" for m in marks), "samples", "output MiB"], rows
    )


# -- driver -----------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of short runs")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, 1 with --quick)")
    parser.add_argument("--seconds", type=float, help="length of each run (default 4, quick 2)")
    parser.add_argument("--memory", type=float, metavar="MINUTES",
                        help="only the long recording, this many minutes")  # fmt: skip
    parser.add_argument("--memory-minutes", type=float, default=None,
                        help="length of the long recording in the full run (default 10, "
                        "quick 1; 0 leaves it out)")  # fmt: skip
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler place things")
    parser.add_argument("--only", action="append", metavar="WORKLOAD",
                        help="run only this workload (sleeping, 'cpu shallow', 'cpu deep', "
                        "threads, churn); repeatable")  # fmt: skip
    args = parser.parse_args()
    placement = pin(not args.no_pin, "profilers")
    pyspy = find_pyspy()
    try:
        import pyinstrument  # noqa: F401

        have_pyinstrument = True
    except ImportError:
        have_pyinstrument = False
    say("# Head to head: spy_magic, py-spy, pyinstrument")
    say()
    say(md_table(["", ""], [
        ["machine load average", loadavg()],
        ["python (tools and targets)", f"{sys.version.split()[0]} ({PYTHON})"],
        ["spy_magic", git_state()],
        ["py-spy", pyspy or "absent (pip install py-spy)"],
        ["pyinstrument", "present" if have_pyinstrument else "absent (pip install pyinstrument)"],
        ["CPU placement", placement],
    ]))  # fmt: skip
    say()
    if args.memory is not None:
        say(f"## Memory of a {args.memory:g}-minute 1 kHz recording\n")
        say(memory_run(args.memory))
        return 0

    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    # Fixed work sized to about `seconds` unprofiled: calibrate the CPU workloads once.
    calibration = Workload("cpu", "cpu_split.py", ("--rounds", "400"), ("function_x",), True)
    run_case(None, calibration, 0, [], attribute_innermost_named)  # warm-up: caches, clocks
    probe = run_case(None, calibration, 0, [], attribute_innermost_named)
    cpu_rounds = max(50, int(400 * seconds / max(probe.elapsed or 1, 1e-3)))
    deep_rounds = int(cpu_rounds * 0.95)
    workloads = {
        w.key: w
        for w in (
            Workload("sleeping", "sleeping.py", ("--repeat", str(max(5, int(seconds / 0.16)))),
                     ("function_a", "function_b", "function_c"), False),
            Workload("cpu shallow", "cpu_split.py", ("--rounds", str(cpu_rounds)),
                     ("function_x", "function_y", "function_z"), True),
            Workload("cpu deep", "cpu_split.py", ("--deep", "--rounds", str(deep_rounds)),
                     ("function_x", "function_y", "function_z"), True),
            Workload("threads", "threads.py", ("--seconds", str(seconds)),
                     ("crunch_big", "crunch_small", "nap_long", "nap_short"), False,
                     in_process_ok=False),
        )
    }  # fmt: skip
    tools: list[Tool] = [SpyMagic()]
    if pyspy:
        tools += [PySpy(False), PySpy(True)]
    if have_pyinstrument:
        tools.append(PyInstrument())
    wanted = set(args.only or [*workloads, "churn"])
    cases = []
    for wl in (w for w in workloads.values() if w.key in wanted):
        for rate in (100, 1000) if wl.cpu else (100,):
            if wl.cpu:
                cases.append((None, wl, rate))  # the unprofiled control
            for tool in tools:
                if isinstance(tool, PyInstrument) and not wl.in_process_ok:
                    continue
                cases.append((tool, wl, rate))
    churn = Workload("churn", "churn.py", ("--seconds", str(seconds)), (), False)
    torn_tools = [t for t in tools if not isinstance(t, PyInstrument) and "churn" in wanted]
    if torn_tools:
        torn_tools.insert(1, SpyMagic(nonblocking=True))

    runs: list[Run] = []
    torn_runs: list[Run] = []
    for round_number in range(1, rounds + 1):
        for tool, wl, rate in cases:
            progress(f"round {round_number}/{rounds}: {wl.key} at {rate} Hz, "
                     f"{tool.name if tool else 'control'}")  # fmt: skip
            run = run_case(tool, wl, rate, [], attribute_innermost_named)
            run.round = round_number
            runs.append(run)
        for tool in torn_tools:
            progress(f"round {round_number}/{rounds}: churn at 1000 Hz, {tool.name}")
            run = run_case(tool, churn, 1000, [], count_torn)
            run.round = round_number
            torn_runs.append(run)

    say(f"## 1. Attribution ({rounds} round(s); median (min–max) over rounds)\n")
    say(attribution_table(runs, workloads))
    say()
    say("## 2. Target slowdown (elapsed / unprofiled control of the same round)\n")
    say(slowdown_table([r for r in runs if workloads[r.workload].cpu]))
    say()
    say(f"## 3. Torn samples on a stack that changes every few µs ({seconds:g} s at 1 kHz, "
        f"{rounds} round(s) summed)\n")  # fmt: skip
    say(torn_table(torn_runs))
    say()
    minutes = args.memory_minutes
    if minutes is None:
        minutes = 1.0 if args.quick else 10.0
    if minutes > 0:
        say(f"## 4. Memory of a {minutes:g}-minute 1 kHz recording (deep CPU-bound target)\n")
        say(memory_run(minutes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
