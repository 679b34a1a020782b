"""`python -m spy_magic dump --pid PID [--json]` against real processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import REPO, read_line, reaped_pid, require_interpreter, target_env

# One build per frame format family is enough here; test_reader_stacks covers every version.
CLI_INTERPRETERS = ["pyenv-3.12", "debian-3.11"]

PARK_SOURCE = """
import sys, threading
sys.stdout.write("ready\\n")
sys.stdout.flush()
threading.Event().wait()
"""


@pytest.fixture(scope="module", params=CLI_INTERPRETERS)
def interpreter(request):
    """Overrides conftest's: the parked target runs only under these here."""
    return require_interpreter(request.param)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spy_magic", *args],
        cwd=REPO,
        env=target_env(PYTHONPATH=str(REPO)),
        capture_output=True,
        timeout=120,
    )


FRAME_LINE = re.compile(r"^\S.* \(.+:\d+\)$")


def thread_ids(thread: dict) -> set[str]:
    """Ways a header may spell the thread: native id, ident in decimal or hex."""
    ident = thread["thread_id"]
    return {str(thread["native_id"]), str(ident), f"{ident:#x}", f"{ident:x}"}


def test_dump_text(parked):
    proc, view = parked
    out = run_cli("dump", "--pid", str(proc.pid))
    stderr = out.stderr.decode("utf-8", "replace")
    assert out.returncode == 0, stderr
    lines = out.stdout.decode("utf-8").splitlines()
    problems = []
    for thread in view["threads"]:
        expected = [f"{f['name']} ({f['filename']}:{f['line']})" for f in thread["frames"]]
        headers = [
            i
            for i, line in enumerate(lines)
            if not FRAME_LINE.match(line.strip())
            and any(re.search(rf"\b{tid}\b", line.lower()) for tid in thread_ids(thread))
            and (thread["name"] is None or thread["name"] in line)
        ]
        who = f"thread {thread['name']!r} (ident {thread['thread_id']:#x})"
        if len(headers) != 1:
            problems.append(f"{who}: {len(headers)} header lines name it, expected 1")
            continue
        h = headers[0]
        got = [line.strip() for line in lines[h + 1 : h + 1 + len(expected)]]
        if got != expected:
            first = next(i for i, (a, b) in enumerate(zip([*got, None], expected)) if a != b)
            problems.append(
                f"{who}: frame line #{first} expected {expected[first]!r}, "
                f"got {got[first] if first < len(got) else None!r}"
            )
    assert not problems, "\n".join(problems) + "\n--- output:\n" + "\n".join(lines[:80])


THREAD_KEYS = {"pid", "thread_id", "native_id", "name", "gil", "idle", "frames"}
FRAME_KEYS = {"name", "filename", "line", "firstlineno"}


def test_dump_json(parked):
    proc, view = parked
    out = run_cli("dump", "--pid", str(proc.pid), "--json")
    assert out.returncode == 0, out.stderr.decode("utf-8", "replace")
    dumped = json.loads(out.stdout.decode("utf-8"))
    assert isinstance(dumped, list)
    for t in dumped:
        # "exception": whether it handles one (absent where the reader cannot tell)
        assert set(t) - {"exception"} == THREAD_KEYS, sorted(t)
        assert t.get("exception", False) is False  # the parked threads handle none
        assert type(t["pid"]) is int and type(t["thread_id"]) is int
        assert type(t["native_id"]) is int
        assert t["name"] is None or isinstance(t["name"], str)
        assert type(t["gil"]) is bool and type(t["idle"]) is bool
        for f in t["frames"]:
            assert set(f) == FRAME_KEYS, sorted(f)
            assert isinstance(f["name"], str) and isinstance(f["filename"], str)
            assert type(f["line"]) is int and type(f["firstlineno"]) is int
    expected = {
        t["thread_id"]: {**t, "pid": view["pid"], "gil": False, "idle": True, "exception": False}
        for t in view["threads"]
    }
    got = {t["thread_id"]: t for t in dumped}
    assert set(got) == set(expected)
    for ident, exp in expected.items():
        assert got[ident] == exp, f"thread {exp['name']!r}"


# --- bad pids: a non-zero exit and one line on stderr, no traceback ----------------------------


def assert_one_line_error(out: subprocess.CompletedProcess, *must_contain: str) -> str:
    stderr = out.stderr.decode("utf-8", "replace")
    assert out.returncode != 0, out
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    for text in must_contain:
        assert text in stderr, stderr
    assert out.stdout.strip() == b"", out.stdout
    return stderr


def test_dump_no_such_pid():
    pid = reaped_pid()
    assert_one_line_error(run_cli("dump", "--pid", str(pid)), str(pid))


def test_dump_pid_zero():
    assert_one_line_error(run_cli("dump", "--pid", "0"))


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_dump_not_python(spawn, as_json):
    proc = spawn(["sleep", "60"])
    args = ["dump", "--pid", str(proc.pid)] + (["--json"] if as_json else [])
    stderr = assert_one_line_error(run_cli(*args), str(proc.pid))
    assert "python" in stderr.lower()


def test_dump_unsupported_version(spawn):
    interp = require_interpreter("pyenv-2.7")
    proc = spawn.python(interp, PARK_SOURCE)
    assert read_line(proc) == "ready"
    assert_one_line_error(run_cli("dump", "--pid", str(proc.pid)), "2.7")


SPIN_SOURCE = """
import sys, threading
def spin():
    while True:
        pass
threading.Thread(target=spin, name="spinner", daemon=True).start()
sys.stdout.write("ready\\n")
sys.stdout.flush()
threading.Event().wait()
"""


@pytest.mark.parametrize("interpreter_id", ["ft-3.13t", "sid-3.14t", "sid-3.15t", "pyenv-3.13"])
def test_dump_names_the_build_and_what_gil_means_there(interpreter_id, spawn):
    """A free-threaded build is named so, and a running thread is "attached", not "gil";
    a standard build keeps saying "gil"."""
    interp = require_interpreter(interpreter_id)
    proc = spawn(interp.argv("-c", SPIN_SOURCE))
    assert read_line(proc) == "ready"
    for _ in range(20):  # the spinner may be between bytecodes that detach it, rarely
        out = run_cli("dump", "--pid", str(proc.pid))
        assert out.returncode == 0, out.stderr
        text = out.stdout.decode()
        headers = [line for line in text.splitlines() if line.startswith("Thread ")]
        spinner = next(line for line in headers if line.endswith('"spinner"'))
        if "attached" in spinner or "gil" in spinner:
            break
    if interp.free_threaded:
        (build,) = [line for line in text.splitlines() if line.startswith("Python v")]
        assert build.startswith(f"Python v{interp.dotted}.") and " free-threaded (" in build
        assert "(active, attached)" in spinner, spinner
        assert not any("gil" in line for line in headers), headers
    else:
        assert "free-threaded" not in text
        assert "(active, gil)" in spinner, spinner
