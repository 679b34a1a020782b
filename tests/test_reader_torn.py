"""Torn reads: a stack changing every few µs must never come back as a wrong stack."""

from __future__ import annotations

import time

from conftest import TARGETS, read_line

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


def test_churning_stack_is_never_torn_silently(interpreter, spawn):
    proc = spawn([interpreter.path, CHURN])
    assert read_line(proc) == "ready"
    reads = errors = deep = 0
    problems: list[str] = []
    with StackReader(proc.pid) as reader:
        deadline = time.monotonic() + HAMMER_SECONDS
        while time.monotonic() < deadline:
            (thread,) = reader.read()
            reads += 1
            if thread.error is not None:
                assert isinstance(thread.error, TornStack)
                assert thread.frames == ()
                errors += 1
                continue
            problem = stack_problem(thread.frames)
            if problem:
                problems.append(problem)
            deep += len(thread.frames) > 10
    print(f"{interpreter.id}: {reads} reads, {errors} detected torn, {deep} deep stacks")
    assert reads > 100
    # The stack must really be churning (deep stacks seen, or reads caught mid-change), and
    # enough reads must come back whole for the check below to mean something. How many are
    # torn depends on whether the target runs on another core while we read (a quiet
    # machine: most) or waits for ours (a busy one: few).
    assert deep + errors > reads // 10, "the target's stack was not changing as intended"
    assert reads - errors > 30, f"only {reads - errors} of {reads} reads came back whole"
    assert not problems, f"{len(problems)} wrong stacks returned as real: {problems[:5]}"
