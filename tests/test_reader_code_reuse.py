"""A code object's address reused by a new code object must never show the old name."""

from __future__ import annotations

import re
import time

import pytest
from conftest import TARGETS, read_line, require_interpreter

from spy_magic.reader import StackReader

CHURN = TARGETS / "code_churn.py"
NAME = re.compile(r"^f_(\d+)$")


@pytest.fixture(
    params=[
        "pyenv-3.8", "pyenv-3.10", "pyenv-3.11", "pyenv-3.12", "pyenv-3.13",
        "ft-3.13t", "sid-3.14", "sid-3.14t", "sid-3.15", "sid-3.15t",
    ]
)  # fmt: skip
def churn_interpreter(request):
    return require_interpreter(request.param)


def test_reused_code_addresses_are_not_trusted(churn_interpreter, spawn):
    proc = spawn(churn_interpreter.argv(CHURN))
    assert read_line(proc) == "ready"
    seen: list[int] = []
    problems: list[str] = []
    with StackReader(proc.pid) as reader:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
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
            time.sleep(0.0005)
    assert len(set(seen)) > 50, f"too few iterations observed: {len(set(seen))}"
    assert not problems, problems[:5]
