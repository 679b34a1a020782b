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

Tools (profilers.py): spy_magic (`python -m spy_magic record`, the checkout this file lives
in), py-spy (`record`, its default mode, which pauses the target for each sample, and
`--nonblocking`), CPython 3.15's own sampler "Tachyon" (`python3.15 -m profiling.sampling
attach`, non-blocking and `--blocking`; it reads only 3.15 targets), pyinstrument
(in-process; not for the threaded workload, where it sees only the main thread, nor for the
churn count, which needs stacks). py-spy and pyinstrument are the ones next to this Python
(`pip install -e '.[bench]'`). A tool that cannot profile the target Python is left out,
with the reason printed.

Targets run under this Python, or with `--target 3.15` (or 3.14) under the Debian sid root's
CPython, chrooted (common.TargetPython); the tools still run on the host, Tachyon inside the
root. Without the root that run is skipped, saying so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    ROOT,
    TargetPython,
    find_pyspy,
    fmt,
    git_state,
    loadavg,
    md_table,
    pin,
    progress,
    resolve_target,
    say,
    target_preexec,
    wait_with_rusage,
)
from profilers import PYTHON, PyInstrument, PySpy, SpyMagic, Tachyon, Tool, check_tools

sys.path.insert(0, str(ROOT))  # measure this checkout
sys.path.insert(0, str(ROOT / "benchmarks" / "workloads"))

from churn import stack_problem

from spy_magic.profile import read_jsonl

WORKLOADS = ROOT / "benchmarks" / "workloads"
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
    window: float | None = None  # seconds from starting the profiler to the target's exit
    rate_changes: int | None = None  # spy_magic: rate changes its load adaptation made

    @property
    def named(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "other")


# -- tools (the others are in profilers.py) ---------------------------------------------------
def read_pyinstrument(out: Path, run: Run, visit: Callable) -> None:
    """pyinstrument reports time per call-tree node: each node's own time becomes samples of
    the interval it actually achieved, credited to the node's stack."""
    document = json.loads(out.read_text())
    run.samples = int(document.get("sample_count") or 0)
    period = document.get("duration", 0) / max(run.samples, 1)

    def walk(node: dict, stack: list) -> None:
        stack = [(node["function"], 0, os.path.basename(node.get("file_path_short", ""))),
                 *stack]  # fmt: skip
        children = node.get("children", [])
        own = node["time"] - sum(c["time"] for c in children)
        if period:
            visit(stack, own / period)
        for child in children:
            walk(child, stack)

    walk(document["root_frame"], [])


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
def start_target(target: TargetPython, workload: Workload, extra: list[str],
                 truth: Path) -> subprocess.Popen:  # fmt: skip
    proc = subprocess.Popen(
        [*target.argv, target.script(WORKLOADS / workload.script), *workload.args, *extra,
         "--truth", target.inside(truth)],
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


def run_case(target: TargetPython, tool: Tool | None, workload: Workload, rate: int,
             extra: list[str], judge: Callable) -> Run:  # fmt: skip
    name = tool.name if tool else "control"
    run = Run(name, workload.key, rate)
    run.truth = {n: 0.0 for n in workload.names}
    with target.scratch("spy_h2h-") as tmp:
        truth_path, out = Path(tmp) / "truth.json", Path(tmp) / "out"
        sampler = None
        stderr = ""
        if tool is not None and not tool.attaches:
            # In-process: the profiler starts the script itself, on the target's CPU.
            cmd = [*tool.command(0, rate, out), target.script(WORKLOADS / workload.script),
                   *workload.args, *extra, "--now", "--truth",
                   target.inside(truth_path)]  # fmt: skip
            began = time.monotonic()
            proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                preexec_fn=target_preexec, env=tool.env(),
            )  # fmt: skip
            wait_with_rusage(proc, RUN_TIMEOUT)
            run.window = time.monotonic() - began
            stderr = proc.stderr.read()
        else:
            proc = start_target(target, workload, extra, truth_path)
            began = time.monotonic()
            if tool is not None:
                # py-spy prints its summary on stdout: keep both streams, as one.
                sampler = subprocess.Popen(
                    tool.command(proc.pid, rate, out), stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True, env=tool.env(), cwd=ROOT,
                )  # fmt: skip
            # The control waits too: every run of a case starts its work the same way.
            time.sleep(ATTACH_GRACE)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            wait_with_rusage(proc, RUN_TIMEOUT)
            run.window = time.monotonic() - began
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
            elif isinstance(tool, PyInstrument):
                read_pyinstrument(out, run, lambda frames, n: judge(run, frames, n))
            else:
                try:
                    recording = tool.read(out, stderr, lambda frames, n: judge(run, frames, n))
                except Exception as exc:  # a format this parser does not know: say so
                    run.failure = f"{type(exc).__name__}: {exc}"
                else:
                    run.samples = recording.samples
                    run.detected_errors = recording.errors
                    run.paused = recording.paused
                    run.rate_changes = recording.extra.get("rate_changes")
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
    held: dict[tuple, list[float]] = {}
    members: dict[tuple, list[Run]] = {}
    for r in runs:
        base = base_of.get((r.workload, r.round))
        if r.tool == "control" or not base or r.elapsed is None:
            continue
        key = (r.workload, r.rate, r.tool)
        groups.setdefault(key, []).append(r.elapsed / base)
        members.setdefault(key, []).append(r)
        if r.sampler_cpu is not None and r.samples:
            cpu.setdefault(key, []).append(1e6 * r.sampler_cpu / r.samples)
        if r.window and r.samples:
            held.setdefault(key, []).append(r.samples / (r.rate * r.window))
    rows = []
    for key, ratios in groups.items():
        wl, rate, tool = key
        control = [v for k, v in base_of.items() if k[0] == wl]
        mine = members[key]
        rate_held = spread(held.get(key, []), 2)
        adapted = [r for r in mine if r.rate_changes]
        if adapted:
            rate_held += f"; rate lowered by adaptation in {len(adapted)} of {len(mine)} runs"
        rows.append([wl, str(rate), tool, spread(ratios, 3, "×"), spread(control, 2, " s"),
                     spread(cpu.get(key, []), 0), rate_held,
                     str(int(statistics.median(r.samples for r in mine))),
                     paused_share(tool, mine)])  # fmt: skip
    return md_table(["workload", "Hz", "tool", "slowdown", "control elapsed",
                     "sampler CPU µs/sample (start-up included)",
                     "rate held (start-up included)", "samples", "reads with the target paused"],
                    rows)  # fmt: skip


def paused_share(tool: str, members: list[Run]) -> str:
    """How often the tool stopped the target to read it."""
    if tool in ("py-spy", "Tachyon --blocking"):
        return "every sample"
    paused = [r.paused for r in members if r.paused is not None]
    samples = sum(r.samples for r in members if r.paused is not None)
    if not paused:
        return "0"
    return f"{sum(paused)} ({100 * sum(paused) / max(samples, 1):.0f} %)"


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
        rows.append([tool, str(seen), str(shown), str(detected), paused_share(tool, members),
                     "; ".join(examples)])  # fmt: skip
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


def memory_run(python: TargetPython, minutes: float, rate: int = 1000) -> str:
    """spy_magic's recorder and py-spy side by side on one deep CPU-bound target."""
    seconds = minutes * 60
    workload = Workload("cpu deep", "cpu_split.py", ("--deep", "--rounds", "100000000"),
                        ("function_x", "function_y", "function_z"), True)  # fmt: skip
    with python.scratch("spy_mem-") as tmp:
        target = start_target(python, workload, [], Path(tmp) / "truth.json")
        target.stdin.write("go\n")
        target.stdin.flush()
        spy_out, pyspy_out = Path(tmp) / "spy.jsonl", Path(tmp) / "pyspy.txt"
        tools = {"spy_magic": (SpyMagic(), spy_out), "py-spy": (PySpy(True), pyspy_out)}
        samplers = {
            name: subprocess.Popen(tool.command(target.pid, rate, out, seconds),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=tool.env(), cwd=ROOT)
            for name, (tool, out) in tools.items()
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
            out, _ = proc.communicate(timeout=120)
            outputs[name] = out or ""
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
    parser.add_argument("--target", metavar="3.X",
                        help="run the targets under the Debian sid root's python3.X (chrooted; "
                        "3.14 or 3.15) instead of this Python; adds CPython 3.15's own sampler "
                        "where it applies")  # fmt: skip
    args = parser.parse_args()
    python, why = resolve_target(args.target)
    title = "# Head to head: spy_magic, py-spy, Tachyon (CPython 3.15's sampler), pyinstrument"
    if python is None:
        say(f"{title}, targets under {args.target}")
        say()
        say(f"Skipped: {why}.")
        return 0
    placement = pin(not args.no_pin, "profilers")
    candidates: list[Tool] = [SpyMagic(), PySpy(False), PySpy(True), Tachyon(False),
                              Tachyon(True), PyInstrument(python)]  # fmt: skip
    progress(f"which tools can profile {python.label}")
    tools, skipped = check_tools(candidates, python)
    say(title)
    say()
    say(md_table(["", ""], [
        ["date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")],
        ["machine load average", loadavg()],
        ["tools run on", f"{sys.version.split()[0]} ({PYTHON})"],
        ["targets run on", python.label],
        ["spy_magic", git_state()],
        ["py-spy", find_pyspy() or "absent (pip install py-spy)"],
        ["tools used", ", ".join(t.name for t in tools)],
        *[[f"skipped: {name}", reason] for name, reason in skipped],
        ["CPU placement", placement],
    ]))  # fmt: skip
    say()
    if args.memory is not None:
        say(f"## Memory of a {args.memory:g}-minute 1 kHz recording\n")
        say(memory_run(python, args.memory))
        return 0

    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    # Fixed work sized to about `seconds` unprofiled: calibrate the CPU workloads once.
    calibration = Workload("cpu", "cpu_split.py", ("--rounds", "400"), ("function_x",), True)
    run_case(python, None, calibration, 0, [], attribute_innermost_named)  # warm-up
    probe = run_case(python, None, calibration, 0, [], attribute_innermost_named)
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
    if torn_tools and isinstance(torn_tools[0], SpyMagic):
        torn_tools.insert(1, SpyMagic(nonblocking=True))

    runs: list[Run] = []
    torn_runs: list[Run] = []
    for round_number in range(1, rounds + 1):
        for tool, wl, rate in cases:
            progress(f"round {round_number}/{rounds}: {wl.key} at {rate} Hz, "
                     f"{tool.name if tool else 'control'}")  # fmt: skip
            run = run_case(python, tool, wl, rate, [], attribute_innermost_named)
            run.round = round_number
            runs.append(run)
        for tool in torn_tools:
            progress(f"round {round_number}/{rounds}: churn at 1000 Hz, {tool.name}")
            run = run_case(python, tool, churn, 1000, [], count_torn)
            run.round = round_number
            torn_runs.append(run)

    say(f"## 1. Attribution ({rounds} round(s); median (min–max) over rounds)\n")
    say(attribution_table(runs, workloads))
    say()
    say("## 2. Target slowdown (elapsed / unprofiled control of the same round)\n")
    say("rate held = samples / (Hz × the time from starting the profiler to the target's exit,")
    say(f"its start-up and the {ATTACH_GRACE:g} s before the work included).\n")
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
        say(memory_run(python, minutes))
    say(f"Load average at the end: {loadavg()}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
