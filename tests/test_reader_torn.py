"""Torn reads: a stack changing every few µs must never come back as a wrong stack."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from conftest import TARGETS, read_line, require_churn

from spy_magic.reader import StackReader, TornStack

CHURN = TARGETS / "churn.py"
SOURCE = CHURN.read_text().splitlines()
CALL_LINE = next(i for i, t in enumerate(SOURCE, 1) if t.endswith("# CALL_LINE"))
PRINT_LINE = next(i for i, t in enumerate(SOURCE, 1) if t.startswith('print("ready"'))
MAIN_LINE = next(i for i, t in enumerate(SOURCE, 1) if t.endswith("# MAIN_LINE"))
F_FIRST = next(i for i, t in enumerate(SOURCE, 1) if t.startswith("def f("))
F_LAST = F_FIRST + 6  # def f .. return total
HAMMER_SECONDS = 2.0


def stack_problem(frames) -> str | None:
    """Why this stack cannot have happened in churn.py, or None if it can."""
    if not frames:
        return "empty stack"
    bottom = frames[-1]
    if bottom.name != "<module>" or bottom.filename != str(CHURN):
        return f"bottom frame is {bottom}"
    rest = frames[:-1]
    if not rest and bottom.line == PRINT_LINE:
        return None  # still returning from the print that said "ready"
    if bottom.line not in (MAIN_LINE, MAIN_LINE - 1):
        return f"<module> at line {bottom.line}"
    if not rest:
        return None
    if all(fr.filename.endswith("random.py") for fr in rest):
        return None
    if any(fr.name != "f" or fr.filename != str(CHURN) for fr in rest):
        return f"foreign frame in {[fr.name for fr in rest]}"
    if len(rest) > 61:
        return f"{len(rest)} frames of f, at most 61 are possible"
    if any(fr.line != CALL_LINE for fr in rest[1:]):
        return f"an outer f frame not at its call line: {[fr.line for fr in rest]}"
    if not F_FIRST <= rest[0].line <= F_LAST:
        return f"innermost f at line {rest[0].line}"
    return None


@dataclass
class Hammered:
    reads: int = 0
    errors: int = 0  # reads that came back torn (and said so)
    whole: list = field(default_factory=list)  # the stacks that came back whole
    problems: list[str] = field(default_factory=list)  # why some of those cannot be
    paused: int = 0  # reads taken with the target's threads paused


def hammer(pid: int, judge, pause: bool) -> Hammered:
    """Read the target back to back for HAMMER_SECONDS, judging every whole stack."""
    out = Hammered()
    with StackReader(pid, pause_when_torn=pause) as reader:
        deadline = time.monotonic() + HAMMER_SECONDS
        while time.monotonic() < deadline:
            (thread,) = reader.read()
            out.reads += 1
            if thread.error is not None:
                assert isinstance(thread.error, TornStack)
                assert thread.frames == ()
                out.errors += 1
                continue
            out.whole.append(thread.frames)
            problem = judge(thread.frames)
            if problem:
                out.problems.append(problem)
        out.paused = reader.paused_reads
        assert reader.pause_error is None
    assert out.reads > 100
    return out


def enough_whole(got: Hammered, pause: bool) -> None:
    """Paused, nearly every read must come back whole. Non-blocking, how many do depends on
    whether the target runs on another core while we read (a quiet machine: few) or waits
    for ours (a busy one: most); enough must for the check on them to mean something."""
    if pause:
        require_churn(got.paused > 0)
        assert got.errors <= got.reads // 50, f"{got.errors} of {got.reads} torn though paused"
    else:
        assert got.paused == 0
        if len(got.whole) <= 10:
            # Not a failure of the reader: every copy tore (it said so), which is what a
            # target racing on its own core does; there are no whole stacks to judge.
            pytest.skip(
                f"only {len(got.whole)} of {got.reads} non-blocking reads came back whole (the "
                "target ran on another core throughout): too few to judge"
            )


PAUSE = pytest.mark.parametrize("pause", [True, False], ids=["pausing", "nonblocking"])


@PAUSE
def test_churning_stack_is_never_torn_silently(interpreter, spawn, pause):
    proc = spawn(interpreter.argv(CHURN))
    assert read_line(proc) == "ready"
    got = hammer(proc.pid, stack_problem, pause)
    deep = sum(len(frames) > 10 for frames in got.whole)
    print(f"{interpreter.id}: {got.reads} reads, {got.errors} detected torn, {deep} deep stacks")
    # The stack must really be churning (deep stacks seen, or reads caught mid-change).
    assert deep + got.errors > got.reads // 10, "the target's stack was not changing as intended"
    enough_whole(got, pause)
    assert not got.problems, (
        f"{len(got.problems)} wrong stacks returned as real: {got.problems[:5]}"
    )


GEN_CHURN = TARGETS / "gen_churn.py"


def generator_stack_problem(frames) -> str | None:
    """Why this stack cannot have happened in gen_churn.py, or None if it can."""
    names = [f.name for f in frames if f.filename == str(GEN_CHURN)]
    if not names or names[-1] != "<module>":
        return f"no <module> at the bottom: {names}"
    inner = names[:-1]
    if inner and inner[-1] != "crunch":
        return f"<module> calls {inner[-1]}, not crunch: {names}"
    if any(name.endswith("genexpr>") for name in inner) and inner[-1:] != ["crunch"]:
        return f"a generator frame without its caller: {names}"
    return None


@PAUSE
def test_generator_frames_are_never_shown_without_their_caller(interpreter, spawn, pause):
    """A generator that yields between reading the thread state and reading its frame has
    lost its caller link: such a read is torn, not a stack with the generator at the root."""
    proc = spawn(interpreter.argv(GEN_CHURN))
    assert read_line(proc) == "ready"
    got = hammer(proc.pid, generator_stack_problem, pause)
    running = sum(any(f.name.endswith("genexpr>") for f in frames) for frames in got.whole)
    print(f"{interpreter.id}: {got.reads} reads, {got.errors} torn, {running} in the generator")
    enough_whole(got, pause)
    assert running > 0, "never caught the generator running: the test proves nothing"
    assert not got.problems, (
        f"{len(got.problems)} wrong stacks returned as real: {got.problems[:3]}"
    )


PARALLEL = TARGETS / "parallel_churn.py"
PARALLEL_SOURCE = PARALLEL.read_text().splitlines()
P_CALL_LINE = next(i for i, t in enumerate(PARALLEL_SOURCE, 1) if t.endswith("# CALL_LINE"))
P_LOOP_LINE = next(i for i, t in enumerate(PARALLEL_SOURCE, 1) if t.endswith("# LOOP_LINE"))
P_F_FIRST = next(i for i, t in enumerate(PARALLEL_SOURCE, 1) if t.startswith("def f("))


def worker_problem(frames) -> str | None:
    """Why this worker-thread stack cannot have happened in parallel_churn.py, or None."""
    rest = list(frames)
    while rest and rest[-1].filename.endswith("threading.py"):
        rest.pop()
    if not rest:
        return "no frame below threading's"
    bottom = rest.pop()
    if bottom.name != "churn" or bottom.filename != str(PARALLEL):
        return f"bottom frame is {bottom}"
    if bottom.line not in (P_LOOP_LINE, P_LOOP_LINE - 1):
        return f"churn at line {bottom.line}"
    if not rest or all(fr.filename.endswith("random.py") for fr in rest):
        return None
    if any(fr.name != "f" or fr.filename != str(PARALLEL) for fr in rest):
        return f"foreign frame in {[fr.name for fr in rest]}"
    if len(rest) > 61:
        return f"{len(rest)} frames of f, at most 61 are possible"
    if any(fr.line != P_CALL_LINE for fr in rest[1:]):
        return f"an outer f frame not at its call line: {[fr.line for fr in rest]}"
    if not P_F_FIRST <= rest[0].line <= P_F_FIRST + 6:
        return f"innermost f at line {rest[0].line}"
    return None


def test_parallel_threads_torn_reads_never_become_stacks(interpreter, spawn):
    """Two threads churning at once. On a free-threaded build they run in parallel (two
    threads are seen attached in one snapshot), and still no read returns a stack that
    cannot have happened: a read that tore on every copy is taken paused, or reported."""
    proc = spawn(interpreter.argv(PARALLEL), stdin=__import__("subprocess").PIPE)
    assert read_line(proc) == "ready"
    reads = torn = 0
    whole: list = []
    problems: list[str] = []
    both_attached = False
    with StackReader(proc.pid) as reader:
        deadline = time.monotonic() + HAMMER_SECONDS
        while time.monotonic() < deadline:
            threads = [t for t in reader.read() if (t.name or "").startswith("churn-")]
            reads += 1
            if sum(t.gil for t in threads) >= 2:
                both_attached = True
            for thread in threads:
                if thread.error is not None:
                    assert isinstance(thread.error, TornStack)
                    assert thread.frames == ()
                    torn += 1
                    continue
                whole.append(thread.frames)
                problem = worker_problem(thread.frames)
                if problem:
                    problems.append(problem)
        paused = reader.paused_reads
        assert reader.pause_error is None
    assert reads > 50
    assert len(whole) > reads  # both workers, most reads
    assert not problems, problems[:5]
    deep = sum(1 for frames in whole if sum(fr.name == "f" for fr in frames) > 5)
    require_churn(deep > 0 and (torn > 0 or paused > 0))
    if interpreter.free_threaded:
        # No GIL: ThreadStack.gil means attached, and two workers on two cores are both.
        if not both_attached:
            pytest.skip(
                "never saw both workers attached at once (a loaded machine ran them "
                "on one CPU), so nothing ran in parallel"
            )
    else:
        assert not both_attached, "two threads held the GIL in one snapshot"
