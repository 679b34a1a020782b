"""A code object's address reused by a new code object must never show the old name."""

from __future__ import annotations

import re
import time

import pytest
from conftest import TARGETS, read_line, require_interpreter

from spy_magic.reader import StackReader, codes

CHURN = TARGETS / "code_churn.py"
NAME = re.compile(r"^f_(\d+)$")


# How long each f_<i> runs: short, so that an iteration often ends while a read is between
# copying its frames and loading their code objects (on <= 3.10 the module code of the
# iteration that just ended is then often already replaced by the next iteration's f_<i+1>).
SHORT_CALL_S = 0.0003
# Distinct iterations to see. A reader that trusted a code it loaded after copying the frame
# that points to it got 2-3 % of them wrong on 3.8 and 3.10 (f_N under f_(N+1)).
ITERATIONS = 500
GIVE_UP_S = 120.0  # only a machine slowed down a hundredfold takes this long


@pytest.fixture(
    params=[
        "pyenv-3.8", "pyenv-3.10", "pyenv-3.11", "pyenv-3.12", "pyenv-3.13",
        "ft-3.13t", "sid-3.14", "sid-3.14t", "sid-3.15", "sid-3.15t",
    ]
)  # fmt: skip
def churn_interpreter(request):
    return require_interpreter(request.param)


def test_reused_code_addresses_are_not_trusted(churn_interpreter, spawn):
    assert_churn_read_right(churn_interpreter, spawn)


def test_a_full_code_cache_leaves_no_stale_frames(churn_interpreter, spawn, monkeypatch):
    # A cache that fills up starts again empty. Frames the walkers derived from its entries
    # must go with them: an address later reused by another code would otherwise still be
    # named from them, with no entry left to check. A tiny limit empties it every few reads.
    monkeypatch.setattr(codes, "MAX_CODES", 3)
    assert_churn_read_right(churn_interpreter, spawn)


def assert_churn_read_right(interpreter, spawn) -> None:
    """Read code_churn.py until ITERATIONS iterations were seen; every stack must be true."""
    proc = spawn(interpreter.argv(CHURN, SHORT_CALL_S))
    assert read_line(proc) == "ready"
    seen: list[int] = []
    distinct: set[int] = set()
    problems: list[str] = []
    with StackReader(proc.pid) as reader:
        deadline = time.monotonic() + GIVE_UP_S
        while len(distinct) < ITERATIONS and time.monotonic() < deadline:
            (thread,) = reader.read()
            if thread.error is not None or not thread.frames:
                continue
            inner = thread.frames[0]
            match = NAME.match(inner.name)
            if not match:
                continue
            i = int(match.group(1))
            module = thread.frames[1]
            if inner.filename != f"<gen {i}>" or module.filename != f"<gen {i}>":
                problems.append(f"f_{i} in {inner.filename}, called from {module.filename}")
            if inner.firstlineno != i % 40 + 1:
                problems.append(f"f_{i} starts at line {inner.firstlineno}")
            if seen and i < seen[-1]:
                problems.append(f"f_{i} seen after f_{seen[-1]}: a stale cached code object")
            seen.append(i)
            distinct.add(i)
    assert len(distinct) >= ITERATIONS, f"too few iterations observed: {len(distinct)}"
    assert not problems, f"{len(problems)} wrong of {len(seen)} reads: {problems[:5]}"
