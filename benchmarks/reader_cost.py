"""What one stack snapshot costs spy_magic's StackReader, and how that compares with py-spy.

    python benchmarks/reader_cost.py            # full run, about 9 minutes on 2 cores
    python benchmarks/reader_cost.py --quick    # about 1 minute

Prints Markdown tables on stdout (see benchmarks/README.md for what every column means):

1. Reader cost per snapshot, per target interpreter, stack depth and target kind: wall-clock
   µs per `read()` (median, p90) and syscalls per snapshot, (a) hot: back-to-back reads,
   (b) paced: one read every 1 ms with sleeps in between (caches cold; the realistic case).
2. CPU per sample against py-spy (default pausing mode and --nonblocking) and, on 3.15
   targets, CPython 3.15's own sampler (Tachyon, non-blocking and --blocking), at 1000 Hz
   (and any --rates), the tools interleaved A B C A B C ... over several rounds against the
   same target process.
3. Where paced `read()` calls on a deep stack spend their time: each step timed on its own,
   then a cProfile.

Targets are benchmarks/workloads/deep_stack.py run by each interpreter found (pyenv's 3.8 to
3.13 and /usr/bin/python3.X), or with `--target 3.15` (3.14) by the Debian sid root's
python3.X only (chrooted: common.TargetPython), pinned to another CPU than the samplers
(--no-pin: not). The reader measured is the checkout this file lives in. Progress goes to
stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import os
import platform
import pstats
import re
import select
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKLOAD = HERE / "workloads" / "deep_stack.py"
MINORS = range(8, 14)
MINORS_ALL = range(8, 30)  # --target: whatever minor it is
NPROC = len(os.sched_getaffinity(0))  # before pin() narrows it

# Measure the checkout this file lives in, whether or not it is the one pip installed.
sys.path.insert(0, str(ROOT))
from common import (  # noqa: E402
    TargetError,
    TargetPython,
    cpu_model,
    find_pyspy,
    fmt,
    git_state,
    loadavg,
    md_table,
    percentile,
    pin,
    progress,
    python_version,
    resolve_target,
    run_text,
    say,
    target_preexec,
    wait_with_rusage,
)
from profilers import (  # noqa: E402
    PySpy,
    Recording,
    SpyMagic,
    SpyMagicReader,
    Tachyon,
    Tool,
    check_tools,
)

import spy_magic  # noqa: E402
from spy_magic.reader import StackReader  # noqa: E402


@dataclass(frozen=True)
class Settings:
    depths: tuple[int, ...]
    hot_seconds: float
    paced_reads: int
    rates: tuple[int, ...]  # part 2
    duration: int
    rounds: int
    # py-spy comparison: (depth, kind, minors of the pyenv interpreters to run it on)
    compare: tuple[tuple[int, str, tuple[int, ...]], ...]
    profile_reads: int


QUICK = Settings(
    depths=(5, 200),
    hot_seconds=0.15,
    paced_reads=250,
    rates=(1000,),
    duration=2,
    rounds=2,
    compare=((85, "cpu", (11, 12)),),
    profile_reads=500,
)
FULL = Settings(
    depths=(5, 50, 200),
    hot_seconds=0.3,
    paced_reads=700,
    rates=(1000,),
    duration=5,
    rounds=3,
    # 3.10 stands for 3.8-3.10 (same frame walker); --compare-all runs everything everywhere.
    compare=((85, "cpu", (10, 11, 12, 13)), (5, "cpu", (11, 12)), (85, "sleep", (11, 12))),
    profile_reads=2000,
)
COMPARE_ALL = tuple((d, k, tuple(MINORS)) for d in (85, 5) for k in ("cpu", "sleep"))


# -- small helpers --------------------------------------------------------------------------


def spread(values: list[float], digits: int = 0) -> str:
    """median (min–max)"""
    if not values:
        return "–"
    med = statistics.median(values)
    return f"{fmt(med, digits)} ({fmt(min(values), digits)}–{fmt(max(values), digits)})"


def share(part: int, whole: int) -> str:
    """'n (p %)'"""
    return f"{part} ({100 * part / whole:.1f} %)" if whole else str(part)


def syscall_count(reader: StackReader) -> int:
    return getattr(reader, "syscalls", reader.mem.syscalls)


def cpu_rusage(usage) -> float:
    return usage.ru_utime + usage.ru_stime


# -- the machine and the interpreters -------------------------------------------------------


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: tuple[int, int, int]
    origin: str  # "pyenv" or e.g. "/usr/bin, non-PIE" or "Debian sid, chroot"
    python: TargetPython | None = None  # how to start it, when not just `path`

    @property
    def minor(self) -> int:
        return self.version[1]

    @property
    def label(self) -> str:
        v = ".".join(map(str, self.version))
        return v if self.origin == "pyenv" else f"{v} ({self.origin})"

    @property
    def target(self) -> TargetPython:
        return self.python or TargetPython(self.label, (self.path,), self.version)


def interpreter_version(path: str) -> tuple[int, int, int] | None:
    return python_version([path])


def elf_kind(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(18)
    except OSError:
        return "?"
    if head[:4] != b"\x7fELF" or len(head) < 18:
        return "not ELF"
    return {2: "non-PIE", 3: "PIE"}.get(int.from_bytes(head[16:18], "little"), "?")


def find_interpreters(spec: str | None = None) -> tuple[list[Interpreter], list[str]]:
    """pyenv's newest 3.X.Y for X in 8..13, then /usr/bin/python3.X; and what is absent.
    With `spec` ("3.15"): the Debian sid root's python3.15 alone (common.resolve_target)."""
    found: list[Interpreter] = []
    absent: list[str] = []
    if spec is not None:
        python, why = resolve_target(spec)
        if python is None:
            return [], [f"{spec}: {why}"]
        sid = Interpreter(python.argv[-1], python.version, "Debian sid, chroot", python)
        return [sid], []
    versions_dir = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for minor in MINORS:
        best: tuple[tuple[int, ...], Path] | None = None
        if versions_dir.is_dir():
            for d in versions_dir.iterdir():
                m = re.fullmatch(rf"3\.{minor}\.(\d+)", d.name)  # skips 3.13.0t and friends
                exe = d / "bin" / "python"
                if m and exe.exists():
                    key = (int(m.group(1)),)
                    if best is None or key > best[0]:
                        best = (key, exe)
        version = interpreter_version(str(best[1])) if best else None
        if best and version:
            found.append(Interpreter(str(best[1]), version, "pyenv"))
        else:
            absent.append(f"3.{minor} (pyenv, {versions_dir})")
    for minor in MINORS:
        exe = Path(f"/usr/bin/python3.{minor}")
        if exe.exists() and not exe.is_symlink():
            version = interpreter_version(str(exe))
            if version:
                found.append(Interpreter(str(exe), version, f"/usr/bin, {elf_kind(str(exe))}"))
    return found, absent


def print_header(interps, absent, pyspy, pyspy_version, settings, quick, placement) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    say(f"# spy_magic reader cost ({'quick' if quick else 'full'} run, {now})")
    say()
    reader = StackReader.__dict__.get("syscalls")
    counter = (
        "StackReader.syscalls (memory reads + /proc stat reads)"
        if reader is not None
        else "StackReader.mem.syscalls (process_vm_readv only)"
    )
    rows = [
        ["machine", f"{os.cpu_count()} CPUs (nproc {NPROC}), {cpu_model()}"],
        ["kernel", f"{platform.system()} {platform.release()}"],
        ["load average at start", loadavg()],
        ["reader runs on", f"Python {platform.python_version()} ({sys.executable})"],
        ["spy_magic", f"{Path(spy_magic.__file__).parent} @ {git_state()}"],
        ["syscall counter", counter],
        ["py-spy", f"{pyspy_version} ({pyspy})" if pyspy else "not found"],
        ["targets", ", ".join(i.label for i in interps) or "none"],
        ["absent", ", ".join(absent) or "none"],
        ["CPU pinning", placement],
        [
            "settings",
            f"depths {settings.depths}, hot {settings.hot_seconds}s, "
            f"paced {settings.paced_reads} reads at 1000 Hz; comparison at "
            f"{', '.join(map(str, settings.rates))} Hz for {settings.duration}s x "
            f"{settings.rounds} rounds",
        ],
    ]
    say(md_table(["", ""], rows))
    say()
    started_as = [[i.label, " ".join(i.target.argv)] for i in interps]
    say(md_table(["target Python", "started as"], started_as))
    say()


# -- targets --------------------------------------------------------------------------------


class Target:
    """benchmarks/workloads/deep_stack.py DEPTH KIND, started and waited for until "ready"."""

    def __init__(self, interp: Interpreter, depth: int, kind: str) -> None:
        self.interp = interp
        self.depth = depth
        self.kind = kind
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Target:
        python = self.interp.target
        self.proc = subprocess.Popen(
            [*python.argv, python.script(WORKLOAD), str(self.depth), self.kind],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            preexec_fn=target_preexec,
        )
        got = b""
        deadline = time.monotonic() + 30
        while b"ready\n" not in got:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.__exit__(None, None, None)
                raise TargetError(f"target did not get ready: {got!r}")
            readable, _, _ = select.select([self.proc.stdout], [], [], left)
            if readable:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                got += chunk
        time.sleep(0.05)  # let the innermost frame's ready() return
        return self

    def check_depth(self, reader: StackReader) -> int:
        """The deepest stack seen in a few reads; it must be the depth asked for."""
        seen: set[int] = set()
        errors: list[str] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for thread in reader.read():
                if thread.frames:
                    seen.add(len(thread.frames))
                elif thread.error is not None:
                    errors.append(str(thread.error))
            if self.depth in seen and (self.kind == "sleep" or len(seen) > 1):
                break
        expected = {self.depth} if self.kind == "sleep" else {self.depth, self.depth - 1}
        if not seen or not seen <= expected:
            why = f"; {len(errors)} reads failed, e.g. {errors[-1]}" if errors else ""
            raise TargetError(f"expected {sorted(expected)} frames, read {sorted(seen)}{why}")
        return max(seen)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


# -- part 1: µs and syscalls per snapshot ---------------------------------------------------


@dataclass
class Run:
    micros: list[float] = field(default_factory=list)
    syscalls: list[int] = field(default_factory=list)
    errors: int = 0

    def row(self) -> list[str]:
        if not self.micros:
            return ["–", "–", "–"]
        return [
            fmt(statistics.median(self.micros)),
            fmt(percentile(self.micros, 90)),
            fmt(statistics.mean(self.syscalls), 1),
        ]


def measure(reader: StackReader, *, reads: int, seconds: float, period: float | None) -> Run:
    """Time `reads` reads (or until `seconds` pass), back to back or one per `period`."""
    run = Run()
    clock = time.perf_counter
    sleep = time.sleep
    start = tick = clock()
    for _ in range(reads):
        if period is not None:
            tick += period
            now = clock()
            if tick > now:
                sleep(tick - now)
            else:
                tick = now
        s0 = syscall_count(reader)
        t0 = clock()
        stacks = reader.read()
        t1 = clock()
        run.syscalls.append(syscall_count(reader) - s0)
        run.micros.append((t1 - t0) * 1e6)
        run.errors += sum(1 for t in stacks if t.error is not None)
        if t1 - start > seconds:
            break
    return run


def part1(interps: list[Interpreter], settings: Settings) -> None:
    say("## 1. Reader cost per snapshot (µs wall clock, syscalls per snapshot)")
    say()
    say("hot = back-to-back read() calls; paced = one read() every 1 ms, sleeping in between.")
    say("frames = frames in the deepest stack read (cpu targets alternate between that and one")
    say("fewer). µs = median and p90 over all reads; sys = mean syscalls per snapshot;")
    say("errors = snapshots with a thread in error (torn: the stack moved while being read).")
    say()
    headers = [
        "Python",
        "target",
        "frames",
        "hot µs",
        "hot p90",
        "hot sys",
        "paced µs",
        "paced p90",
        "paced sys",
        "errors",
    ]
    rows = []
    for interp in interps:
        for kind in ("cpu", "sleep"):
            for depth in settings.depths:
                progress(f"part 1: {interp.label} {kind} depth {depth}")
                cells = [interp.label, kind]
                try:
                    with Target(interp, depth, kind) as target:
                        reader = StackReader(target.pid)
                        try:
                            frames = target.check_depth(reader)
                            measure(reader, reads=50, seconds=1, period=None)  # warm up
                            hot = measure(
                                reader,
                                reads=1_000_000,
                                seconds=settings.hot_seconds,
                                period=None,
                            )
                            paced = measure(
                                reader, reads=settings.paced_reads, seconds=1e9, period=0.001
                            )
                        finally:
                            reader.close()
                except Exception as exc:  # report and carry on with the next target
                    rows.append([*cells, str(depth), *["–"] * 6, f"{type(exc).__name__}: {exc}"])
                    continue
                errors = hot.errors + paced.errors
                reads = len(hot.micros) + len(paced.micros)
                rows.append([*cells, str(frames), *hot.row(), *paced.row(), share(errors, reads)])
    say(md_table(headers, rows))
    say()


# -- part 2: CPU per sample against py-spy and Tachyon ---------------------------------------


@dataclass
class Sample:
    """One run of one tool: CPU seconds of its process, samples taken, achieved rate."""

    cpu_s: float
    sys_s: float
    samples: int
    rate: float
    asked: float
    errors: int = 0
    loop_cpu_s: float | None = None  # spy_magic (reader alone): CPU of the sampling loop
    setup_cpu_ms: dict[str, float] = field(default_factory=dict)  # the same: before the loop
    failure: str | None = None

    @property
    def us_per_sample(self) -> float:
        return self.cpu_s / self.samples * 1e6 if self.samples else float("nan")

    @property
    def loop_us_per_sample(self) -> float:
        if self.loop_cpu_s is None or not self.samples:
            return float("nan")
        return self.loop_cpu_s / self.samples * 1e6


def run_tool(tool: Tool, pid: int, rate: int, duration: int, tmp: Path) -> Sample:
    """One recording of `duration` s at `rate` Hz; the tool's CPU from os.wait4's rusage."""
    out = tmp / "out"
    log = tmp / "log"
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    cmd = tool.command(pid, rate, out, duration)
    with open(log, "wb") as logf:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, env=tool.env(), cwd=ROOT)  # fmt: skip
        usage = wait_with_rusage(proc, duration * 10 + 60)
        wall = time.perf_counter() - started
    text = log.read_text(errors="replace")
    tail = " / ".join([ln.strip() for ln in text.splitlines() if ln.strip()][-2:])
    failure = None
    try:
        recording = tool.read(out, text, lambda frames, count: None)
    except Exception as exc:
        recording = Recording()
        failure = f"rc={proc.returncode}: {type(exc).__name__}: {exc}; {tail}"
    if failure is None and (proc.returncode != 0 or recording.samples == 0):
        failure = f"rc={proc.returncode}: {tail}"
    # The time it sampled for, by its own account where it gives one (spy_magic: first to
    # last sample; Tachyon: its loop; pace_reader: its loop); py-spy's is its process's wall
    # time (its start-up is a few ms). py-spy and pace_reader take rate x duration samples
    # and take longer when they cannot keep up; the others stop after `duration`.
    seconds = recording.seconds or wall
    return Sample(
        cpu_rusage(usage),
        usage.ru_stime,
        recording.samples,
        recording.samples / seconds if seconds else 0.0,
        rate,
        recording.errors,
        loop_cpu_s=recording.extra.get("loop_cpu_s"),
        setup_cpu_ms=recording.extra.get("setup_cpu_ms", {}),
        failure=failure,
    )


def candidate_tools() -> list[Tool]:
    return [SpyMagicReader(), SpyMagic(), PySpy(False), PySpy(True), Tachyon(False),
            Tachyon(True)]  # fmt: skip


Results = dict[tuple[int, str], tuple[list[Sample], "Sample | None"]]


def compare_one(interp: Interpreter, depth: int, kind: str, tools: list[Tool], settings: Settings,
                tmp: Path) -> Results:  # fmt: skip
    """(rate, tool) -> (the runs of every round, one short run of 1 s for the start-up)."""
    results: Results = {}
    with Target(interp, depth, kind) as target:
        reader = StackReader(target.pid)
        try:
            target.check_depth(reader)
        finally:
            reader.close()
        for rate in settings.rates:
            short: dict[str, Sample] = {}
            if settings.duration > 1:
                for tool in tools:  # a 1 s run first: (long - short) leaves start-up out
                    progress(f"part 2: {interp.label} {kind} depth {depth}, {rate} Hz, "
                             f"1 s run: {tool.name}")  # fmt: skip
                    short[tool.name] = run_tool(tool, target.pid, rate, 1, tmp)
            runs: dict[str, list[Sample]] = {tool.name: [] for tool in tools}
            for round_ in range(settings.rounds):
                for tool in tools:  # interleaved: A B C A B C ...
                    progress(f"part 2: {interp.label} {kind} depth {depth}, {rate} Hz, "
                             f"round {round_ + 1}: {tool.name}")  # fmt: skip
                    runs[tool.name].append(run_tool(tool, target.pid, rate, settings.duration,
                                                    tmp))  # fmt: skip
            for tool in tools:
                results[(rate, tool.name)] = (runs[tool.name], short.get(tool.name))
    return results


def steady(runs: list[Sample], short: Sample | None) -> float:
    """CPU per sample with start-up left out: (CPU of the median run - CPU of the 1 s run) /
    (their samples' difference)."""
    good = [s for s in runs if s.failure is None]
    if short is None or short.failure is not None or not good:
        return float("nan")
    cpu = statistics.median(s.cpu_s for s in good)
    samples = statistics.median(s.samples for s in good)
    if samples <= short.samples:
        return float("nan")
    return (cpu - short.cpu_s) / (samples - short.samples) * 1e6


def part2(interps: list[Interpreter], settings: Settings, compare_all: bool) -> None:
    rates = ", ".join(map(str, settings.rates))
    say(f"## 2. CPU per sample at {rates} Hz: spy_magic vs py-spy (and 3.15's own sampler)")
    say()
    say("CPU = user+sys of the sampler's whole process (os.wait4), start-up included, divided")
    say("by the samples it took. steady = the same with start-up left out: (CPU of the median")
    say("run - CPU of a 1 s run) / (difference in samples). spy_magic = `python -m spy_magic")
    say("record -d D -f jsonl` (the engine, load adaptation on); spy_magic (reader alone) =")
    say("benchmarks/pace_reader.py (StackReader.read() paced at the rate; loop = its sampling")
    say("loop alone). py-spy = `py-spy record --format raw --idle` (pauses the target for every")
    say("sample), --nonblocking = without pausing. Tachyon = `python3.15 -m profiling.sampling")
    say("attach -a --collapsed` (non-blocking), --blocking = ptrace-stops the target for each")
    say("sample. rate = samples / the time it sampled for; held = rate / asked. Values: median")
    say(f"(min–max) over {settings.rounds} interleaved rounds of {settings.duration} s each.")
    say()
    usable: dict[str, list[Tool]] = {}
    support_rows = []
    for interp in interps:
        tools, skipped = check_tools(candidate_tools(), interp.target)
        usable[interp.label] = tools
        support_rows += [[interp.label, t.name, "yes"] for t in tools]
        support_rows += [[interp.label, name, f"no: {why}"] for name, why in skipped]
    say(md_table(["Python", "tool", "can read it?"], support_rows))
    say()

    plan: list[tuple[Interpreter, int, str]] = []
    for depth, kind, minors in COMPARE_ALL if compare_all else settings.compare:
        for interp in interps:
            comparable = interp.origin == "pyenv" or interp.python is not None
            if compare_all or (comparable and interp.minor in minors):
                plan.append((interp, depth, kind))

    headers = ["Python", "target", "depth", "Hz", "tool", "CPU µs/sample", "steady µs/sample",
               "sys %", "loop µs/sample", "rate Hz", "held", "samples", "errors"]  # fmt: skip
    rows = []
    ratio_rows = []
    setup_ms = []
    for interp, depth, kind in plan:
        tools = usable[interp.label]
        where = [interp.label, kind, str(depth)]
        try:
            with interp.target.scratch("reader_cost.") as tmpname:
                results = compare_one(interp, depth, kind, tools, settings, Path(tmpname))
        except Exception as exc:  # report and carry on with the next target
            rows.append([*where, "", "–", f"{type(exc).__name__}: {exc}", *[""] * 7])
            continue
        for rate in settings.rates:
            for tool in tools:
                runs, short = results[(rate, tool.name)]
                good = [s for s in runs if s.failure is None]
                failures = sorted({s.failure for s in runs if s.failure})
                if not good:
                    rows.append([*where, str(rate), tool.name,
                                 "FAILED: " + "; ".join(failures)[:200], *[""] * 7])  # fmt: skip
                    continue
                reader_alone = isinstance(tool, SpyMagicReader)
                rows.append([
                    *where, str(rate), tool.name,
                    spread([s.us_per_sample for s in good]),
                    fmt(steady(runs, short)),
                    fmt(100 * sum(s.sys_s for s in good) / sum(s.cpu_s for s in good)),
                    spread([s.loop_us_per_sample for s in good]) if reader_alone else "",
                    spread([s.rate for s in good]),
                    spread([s.rate / s.asked for s in good], 2),
                    str(sum(s.samples for s in good)),
                    share(sum(s.errors for s in good), sum(s.samples for s in good))
                    + (f"; {len(failures)} failed runs" if failures else ""),
                ])  # fmt: skip
                if reader_alone:
                    setup_ms += [s.setup_cpu_ms for s in good]
            ratio_rows += ratios(where, rate, tools, results)
    say(md_table(headers, rows))
    say()
    say("Ratios: spy_magic's CPU per sample / the rival's (< 1: spy_magic is cheaper), taken")
    say("round by round (same target, seconds apart); steady = the ratio of the steady figures;")
    say("'reader' = spy_magic (reader alone), 'reader loop' its sampling loop alone (its start-up")
    say("left out, the rival's kept).")
    say()
    say(md_table(["Python", "target", "depth", "Hz", "rival", "spy_magic vs", "steady vs",
                  "reader vs", "reader loop vs"], ratio_rows))  # fmt: skip
    say()
    if setup_ms:
        parts = {k: [d[k] for d in setup_ms] for k in ("start", "import", "construct")}
        whole = [sum(d.values()) for d in setup_ms]
        say(
            f"Fixed cost per run of spy_magic (reader alone), included in 'CPU µs/sample': "
            f"{spread(whole)} ms CPU before its first sample (interpreter start-up "
            f"{spread(parts['start'])}, import spy_magic.reader {spread(parts['import'])}, "
            f"StackReader() {spread(parts['construct'])})."
        )
        say()


def ratios(where: list[str], rate: int, tools: list[Tool], results: Results) -> list[list[str]]:
    """One row per rival: spy_magic's CPU per sample over the rival's, round by round."""
    names = [t.name for t in tools]

    def per_round(mine: str, figure: str, theirs: list[Sample]) -> str:
        if mine not in names:
            return "–"
        values = [getattr(a, figure) / b.us_per_sample
                  for a, b in zip(results[(rate, mine)][0], theirs)
                  if a.failure is None and b.failure is None]  # fmt: skip
        return spread(values, 2) if values else "–"

    rows = []
    for rival in (n for n in names if not n.startswith("spy_magic")):
        theirs, their_short = results[(rate, rival)]
        steady_ratio = float("nan")
        if "spy_magic" in names:
            denominator = steady(theirs, their_short)
            if denominator > 0:
                steady_ratio = steady(*results[(rate, "spy_magic")]) / denominator
        rows.append([*where, str(rate), rival,
                     per_round("spy_magic", "us_per_sample", theirs), fmt(steady_ratio, 2),
                     per_round(SpyMagicReader.name, "us_per_sample", theirs),
                     per_round(SpyMagicReader.name, "loop_us_per_sample", theirs)])  # fmt: skip
    return rows


# -- part 3: where the time goes ------------------------------------------------------------


# Steps of read() timed one by one in part 3. They are the reader's internals, so each is
# timed only where present: (label, path from the reader to the object, method name).
STEPS = (
    ("prefetch scatter read (mem.read_scatter)", "mem", "read_scatter"),
    ("other scatter reads (mem.read_many)", "mem", "read_many"),
    ("single reads (mem.read)", "mem", "read"),
    ("frame walk (walker.walk)", "walker", "walk"),
    ("consistency re-check (_changed_since)", "", "_changed_since"),
    ("thread run state from /proc (_states.running)", "_states", "running"),
    ("GIL holder (_gil_holder)", "", "_gil_holder"),
    ("thread names (_thread_names)", "", "_thread_names"),
    ("code cache upkeep (codes.sweep)", "codes", "sweep"),
    ("code cache upkeep (codes.revalidate)", "codes", "revalidate"),
)
REST = "rest of read() (its own code)"
WHOLE = "read() as a whole"


def instrument(reader: StackReader) -> dict[str, list[float]]:
    """Wrap the STEPS present on this reader with timers; returns label -> [seconds, calls].

    Times are exclusive: a step's time leaves out the instrumented steps it calls (a walk's
    own prefetch misses count as single reads), so the steps and the rest add up to read().
    """
    totals: dict[str, list[float]] = {}
    clock = time.perf_counter
    stack: list[list[float]] = []
    for label, path, name in STEPS:
        owner = getattr(reader, path, None) if path else reader
        method = getattr(owner, name, None) if owner is not None else None
        if method is None or not callable(method):
            continue
        acc = totals.setdefault(label, [0.0, 0])

        def timed(*args, _method=method, _acc=acc, **kwargs):
            stack.append(_acc)
            t0 = clock()
            try:
                return _method(*args, **kwargs)
            finally:
                elapsed = clock() - t0
                stack.pop()
                _acc[0] += elapsed
                _acc[1] += 1
                if stack:
                    stack[-1][0] -= elapsed

        setattr(owner, name, timed)
    return totals


def paced_reads(reader: StackReader, n: int, around=None) -> None:
    tick = time.perf_counter()
    for _ in range(n):
        tick += 0.001
        now = time.perf_counter()
        if tick > now:
            time.sleep(tick - now)
        else:
            tick = now
        if around is None:
            reader.read()
        else:
            around(reader.read)


def part3(interps: list[Interpreter], settings: Settings) -> None:
    pyenv = [i for i in interps if i.origin == "pyenv"]
    chosen = next((i for m in (12, 11, 13) for i in pyenv if i.minor == m), None)
    chosen = chosen or (interps[0] if interps else None)
    if chosen is None:
        return
    depth = 85
    n = settings.profile_reads
    progress(f"part 3: {chosen.label} cpu depth {depth}")
    say(f"## 3. Where read() spends its time: Python {chosen.label}, cpu target, depth {depth}")
    say()
    with Target(chosen, depth, "cpu") as target:
        # (a) each step timed on its own, no profiler: per-read medians of inclusive times
        reader = StackReader(target.pid)
        try:
            target.check_depth(reader)
            measure(reader, reads=50, seconds=1, period=None)
            totals = instrument(reader)
            per_read: dict[str, list[float]] = {label: [] for label in (WHOLE, *totals, REST)}

            def timed_read(read):
                before = {label: acc[0] for label, acc in totals.items()}
                t0 = time.perf_counter()
                read()
                whole = time.perf_counter() - t0
                per_read[WHOLE].append(whole)
                for label, acc in totals.items():
                    per_read[label].append(acc[0] - before[label])
                    whole -= acc[0] - before[label]
                per_read[REST].append(whole)

            paced_reads(reader, n, timed_read)
        finally:
            reader.close()
        # (b) cProfile, enabled only around each read()
        reader = StackReader(target.pid)
        try:
            measure(reader, reads=50, seconds=1, period=None)
            prof = cProfile.Profile()
            s0 = syscall_count(reader)

            def profiled(read):
                prof.enable()
                read()
                prof.disable()

            paced_reads(reader, n, profiled)
            syscalls = (syscall_count(reader) - s0) / n
        finally:
            reader.close()

    whole = statistics.mean(per_read[WHOLE])
    say(
        f"(a) {n} reads at 1000 Hz, each step timed on its own (no profiler; a timer costs "
        f"~0.3 µs a call). Exclusive times (a step leaves out the steps listed here that it "
        f"calls), so they add up to read(). Mean µs per read (median in brackets):"
    )
    say()
    rows = []
    for label, values in sorted(per_read.items(), key=lambda kv: -statistics.mean(kv[1])):
        if label not in (WHOLE, REST) and not totals[label][1]:
            continue  # present but never called
        mean = statistics.mean(values)
        rows.append(
            [
                label,
                f"{mean * 1e6:.1f} ({statistics.median(values) * 1e6:.1f})",
                fmt(100 * mean / whole),
                fmt(totals[label][1] / n, 1) if label in totals else "",
            ]
        )
    say(md_table(["step", "µs/read", "% of read()", "calls/read"], rows))
    say()
    stats = pstats.Stats(prof)
    total = stats.total_tt / n * 1e6
    say(
        f"(b) cProfile of {n} more paced reads: {total:.0f} µs per read under the profiler (it "
        f"inflates every call, so read shares, not µs), {syscalls:.1f} syscalls per read. "
        f"Top 15 by own time:"
    )
    say()
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:15]
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in entries:
        where = filename
        with contextlib.suppress(ValueError):
            where = str(Path(filename).resolve().relative_to(ROOT))
        name = f"{func} ({where}:{line})" if line else func
        rows.append(
            [
                fmt(tt / n * 1e6, 1),
                fmt(100 * tt / stats.total_tt),
                fmt(ct / n * 1e6, 1),
                fmt(nc / n, 1),
                name,
            ]
        )
    say(md_table(["own µs/read", "own %", "cum µs/read", "calls/read", "function"], rows))
    say()


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="about 1 minute instead of ~9")
    ap.add_argument(
        "--compare-all",
        action="store_true",
        help="py-spy comparison for every interpreter and target (slow)",
    )
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: 1,2,3")
    ap.add_argument(
        "--no-pin",
        action="store_true",
        help="do not put samplers and targets on different CPUs",
    )
    ap.add_argument(
        "--target",
        metavar="3.X",
        help="only the Debian sid root's python3.X (3.14, 3.15; chrooted) as the target; part 2 "
        "then compares at depth 85 (cpu) at 1000 and 100 Hz, with Tachyon where it applies",
    )
    ap.add_argument("--rates", help="part 2's rates, comma-separated (default 1000)")
    ap.add_argument("--rounds", type=int, help="part 2's rounds (default 3, quick 2)")
    ap.add_argument("--duration", type=int, help="part 2's seconds per run (default 5, quick 2)")
    args = ap.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.target:
        settings = replace(settings, rates=(1000, 100), compare=((85, "cpu", tuple(MINORS_ALL)),))
    if args.rates:
        settings = replace(settings, rates=tuple(int(r) for r in args.rates.split(",")))
    if args.rounds:
        settings = replace(settings, rounds=args.rounds)
    if args.duration:
        settings = replace(settings, duration=args.duration)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    started = time.monotonic()

    interps, absent = find_interpreters(args.target)
    pyspy = find_pyspy()
    pyspy_version = run_text([pyspy, "--version"]) if pyspy else ""
    placement = pin(not args.no_pin, "this process, the tools")
    print_header(interps, absent, pyspy, pyspy_version, settings, args.quick, placement)
    if not interps:
        if args.target:  # the sid root is optional: say why, do not fail
            say(f"Skipped: {absent[0]}.")
            return 0
        say("No target interpreter found.")
        return 1
    if "1" not in skip:
        part1(interps, settings)
    if "2" not in skip:
        part2(interps, settings, args.compare_all)
    if "3" not in skip:
        try:
            part3(interps, settings)
        except Exception as exc:
            say(f"part 3 failed: {type(exc).__name__}: {exc}")
            say()
    say(f"Total time {time.monotonic() - started:.0f} s; load average at the end {loadavg()}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
