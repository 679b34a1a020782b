"""A code object's address reused by a new code object must never show the old name."""

from __future__ import annotations

import re
import time

import pytest
from conftest import TARGETS, read_line, require_interpreter

from spy_magic.reader import StackReader

CHURN = TARGETS / "code_churn.py"
NAME = re.compile(r"^f_(\d+)$")


# A known, open bug of the <= 3.10 reader (PyFrameObject chains): about once in 2,000 reads of
# this target it returns a stack that cannot happen, f_N called from f_(N+1)'s frame with the
# exec'd module frame missing, every copy of it consistent and both codes freshly loaded. It
# fails the same way at a8630a1 (before 3.14 support), on a quiet machine too. Marked, not
# hidden: the test still runs, and reports XPASS when a run happens not to meet it.
LEGACY_TEAR = pytest.mark.xfail(
    reason="open: a rare impossible stack on <= 3.10 (f_N under f_(N+1)), see the comment",
    strict=False,
)


@pytest.fixture(
    params=[
        pytest.param("pyenv-3.8", marks=LEGACY_TEAR),
        pytest.param("pyenv-3.10", marks=LEGACY_TEAR),
        "pyenv-3.11", "pyenv-3.12", "pyenv-3.13",
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
