"""Every way reading a process can go wrong: the right exception, with a clear message."""

from __future__ import annotations

import ctypes
import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, load_stack_reader, read_line, reaped_pid, target_env, wait_until

from spy_magic.reader.errors import (
    NoSuchProcess,
    NotPython,
    NotReady,
    ProcessExited,
    TornStack,
    UnsupportedVersion,
)

# A target that says it is ready, then blocks forever in a function we can look for.
# Valid Python 2.7 too (the unsupported-version tests run it on 2.7).
PARK_SOURCE = """
import sys, threading
def parked_here():
    threading.Event().wait()
sys.stdout.write("ready\\n")
sys.stdout.flush()
parked_here()
"""


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


# --- processes that are not there -----------------------------------------------------------------


def test_no_such_process():
    StackReader = load_stack_reader()
    pid = reaped_pid()
    with pytest.raises(NoSuchProcess) as info:
        StackReader(pid)
    assert str(pid) in str(info.value)
    assert info.value.pid == pid


@pytest.mark.parametrize("pid", [0, 4194305], ids=["pid-0", "beyond-pid_max"])
def test_impossible_pid(pid):
    StackReader = load_stack_reader()
    with pytest.raises(NoSuchProcess) as info:
        StackReader(pid)
    assert str(pid) in str(info.value)


def test_zombie_process(spawn):
    """Exited but not yet reaped: /proc/PID exists, its memory does not."""
    StackReader = load_stack_reader()
    proc = spawn(["true"])
    wait_until(lambda: proc_state(proc.pid) == "Z", 10, "the child to become a zombie")
    with pytest.raises((ProcessExited, NoSuchProcess)) as info:
        StackReader(proc.pid)
    assert str(proc.pid) in str(info.value)


# --- processes that are not (readable) Python ---------------------------------------------


def test_not_python(spawn):
    StackReader = load_stack_reader()
    proc = spawn(["sleep", "60"])
    with pytest.raises(NotPython) as info:
        StackReader(proc.pid)
    message = str(info.value)
    assert str(proc.pid) in message, message
    assert "python" in message.lower(), message


def test_kernel_thread_is_not_python():
    StackReader = load_stack_reader()
    try:
        with open("/proc/2/comm") as f:
            comm = f.read().strip()
    except OSError:
        comm = ""
    if comm != "kthreadd":
        pytest.skip("pid 2 is not kthreadd here")
    with pytest.raises(NotPython) as info:
        StackReader(2)
    assert "2" in str(info.value)


@pytest.mark.parametrize("interpreter_id", ["pyenv-2.7", "pyenv-3.6", "pyenv-3.7"])
def test_unsupported_version(interpreter_id, interpreters, spawn):
    StackReader = load_stack_reader()
    interp = interpreters.require(interpreter_id)
    proc = spawn.python(interp, PARK_SOURCE)
    assert read_line(proc) == "ready"
    with pytest.raises(UnsupportedVersion) as info:
        StackReader(proc.pid)
    message = str(info.value)
    assert interp.dotted in message, message  # "2.7", "3.6", "3.7"
    assert str(proc.pid) in message, message
    assert info.value.version.startswith(interp.dotted), info.value.version


# --- permissions ---------------------------------------------------------------------------------

AS_NOBODY = """
import json, sys
try:
    from spy_magic.reader import StackReader
    StackReader(int(sys.argv[1])).read()
    out = {"type": None}
except BaseException as e:
    out = {"type": type(e).__name__, "message": str(e),
           "mro": [c.__name__ for c in type(e).__mro__]}
print(json.dumps(out))
"""


def test_access_denied_as_another_user(interpreters, spawn):
    """A reader running as `nobody` against a root-owned target (the core is stdlib-only, and
    Debian's python3.11 is used because nobody cannot enter /root where pyenv lives)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start the reader as user nobody")
    debian = interpreters.require("debian-3.11")
    target = spawn.python(debian, PARK_SOURCE)
    assert read_line(target) == "ready"
    out = subprocess.run(
        debian.argv("-c", AS_NOBODY, target.pid),
        user="nobody",
        group="nogroup",
        extra_groups=[],
        cwd="/",
        env=target_env(PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1", HOME="/tmp"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["type"] == "AccessDenied", result
    message = result["message"]
    assert str(target.pid) in message, message
    assert re.search(r"ptrace|CAP_SYS_PTRACE", message, re.IGNORECASE), message


# --- processes that go away ----------------------------------------------------------------------

# Stacks that change all the time, in three threads; LIFETIME seconds after the test says "go"
# on stdin (once its reader is open: opening one may take a while) the main thread
# returns (normal interpreter finalization while a daemon thread still churns) or calls
# os._exit.
CHURN_SOURCE = """
import os, sys, threading, time

def churn(n):
    if n:
        return churn(n - 1)
    return sum(range(20))

def work(deadline):
    while time.monotonic() < deadline:
        for depth in (1, 7, 40, 120):
            churn(depth)

def daemon_work():
    while True:
        for depth in (3, 60):
            churn(depth)

threading.Thread(target=daemon_work, name="daemon-churn", daemon=True).start()
sys.stdout.write("ready\\n")
sys.stdout.flush()
sys.stdin.readline()  # the test has its reader open: the clock starts now
deadline = time.monotonic() + float(sys.argv[1])
threading.Thread(target=work, args=(deadline,), name="worker-churn").start()
work(deadline)
if sys.argv[2] == "os_exit":
    os._exit(0)
"""
CHURN_NAMES = {"churn", "work", "daemon_work", "<module>"}
# innermost first: the only ways the script's functions can nest
CHURN_SHAPE = re.compile(r"^((churn )*(work|daemon_work)( <module>)?|<module>)$")
_CHURN_LINES = CHURN_SOURCE.split("\n")
CHURN_CALL_LINE = _CHURN_LINES.index("        return churn(n - 1)") + 1
WORK_CALL_LINES = {i + 1 for i, text in enumerate(_CHURN_LINES) if text.strip() == "churn(depth)"}
_IDENT = re.compile(r"^(<[^<>]+>|[^\W\d]\w*)$")


def frame_problems(frame, script_lines: int, file_lines: dict, host_path=lambda p: p) -> str:
    """Why this frame cannot be real, or '' if it looks like a real frame.

    `host_path` maps a filename as the target sees it to where this process finds that file
    (a chrooted target's stdlib lives inside its root)."""
    if not isinstance(frame.name, str) or not frame.name.isprintable():
        return "bad name"
    if not all(_IDENT.match(part) for part in frame.name.split(".")):
        return "name is not a (qual)name"
    if not (isinstance(frame.line, int) and isinstance(frame.firstlineno, int)):
        return "line numbers are not ints"
    if not 0 < frame.firstlineno <= frame.line:
        return "line before firstlineno"
    if frame.filename == "<string>":  # our -c script
        if frame.name not in CHURN_NAMES or frame.line > script_lines:
            return "not a frame of the script"
        return ""
    if frame.filename.startswith("<frozen "):
        return ""
    if frame.filename not in file_lines:
        try:
            source = Path(host_path(frame.filename))
            file_lines[frame.filename] = len(source.read_bytes().splitlines())
        except OSError:
            file_lines[frame.filename] = None
    count = file_lines[frame.filename]
    if count is None:
        return "no such file"
    if frame.line > count:
        return f"line beyond the end of the file ({count} lines)"
    return ""


def shape_problem(frames) -> str:
    """Why these frames cannot be one consistent stack of the churn script, or ''.

    A torn read (frames from different moments spliced together) would show as frames of the
    script in an impossible order, or an outer frame that is not at its call site."""
    at = [i for i, f in enumerate(frames) if f.filename == "<string>"]
    if not at:
        return ""
    if at != list(range(at[0], at[-1] + 1)):
        return f"the script's frames are not contiguous: {frames}"
    ours = [frames[i] for i in at]
    names = " ".join(f.name for f in ours)
    if not CHURN_SHAPE.match(names):
        return f"impossible nesting (innermost first): {names}"
    for depth, f in enumerate(ours):
        outer = depth > 0 or at[0] > 0  # calling something: it must be at a call line
        if outer and f.name == "churn" and f.line != CHURN_CALL_LINE:
            return f"churn frame #{at[0] + depth} calls from line {f.line}, not {CHURN_CALL_LINE}"
        if outer and f.name in ("work", "daemon_work") and f.line not in WORK_CALL_LINES:
            return f"{f.name} frame #{at[0] + depth} calls from line {f.line}"
    return ""


@pytest.mark.parametrize("exit_mode", ["finalize", "os_exit"])
def test_process_exits_while_being_read(interpreter, exit_mode, spawn):
    StackReader = load_stack_reader()
    seed = random.randrange(1 << 30)
    lifetime = random.Random(seed).uniform(0.2, 0.6)
    context = f"(seed {seed}, lifetime {lifetime:.3f}s, exit by {exit_mode})"
    proc = spawn.python(
        interpreter, CHURN_SOURCE, f"{lifetime:.3f}", exit_mode, stdin=subprocess.PIPE
    )
    assert read_line(proc) == "ready"
    script_lines = CHURN_SOURCE.count("\n") + 1
    file_lines: dict = {}
    reads = []  # (threads, problems) of each successful read
    thread_errors = []
    reader = wait_until(lambda: _try_open(StackReader, proc.pid), 10, "the reader to open")
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    give_up = time.monotonic() + 30
    while True:
        assert time.monotonic() < give_up, f"the target never exited {context}"
        try:
            threads = reader.read()
        except ProcessExited as e:
            assert str(proc.pid) in str(e)
            break
        except BaseException as e:
            pytest.fail(
                f"read #{len(reads) + 1} raised {type(e).__name__}: {e} {context}; "
                "only ProcessExited is acceptable"
            )
        problems = []
        for t in threads:
            if t.error is not None:
                if not isinstance(t.error, (TornStack, ProcessExited)):
                    problems.append(f"thread {t.name!r} error {type(t.error).__name__}: {t.error}")
                thread_errors.append(type(t.error).__name__)
                continue
            for i, f in enumerate(t.frames):
                why = frame_problems(f, script_lines, file_lines, interpreter.host_path)
                if why:
                    problems.append(f"thread {t.name!r} frame #{i} {f}: {why}")
            why = shape_problem(t.frames)
            if why:
                problems.append(f"thread {t.name!r}: {why}")
        reads.append((threads, problems))
    print(f"{len(reads)} successful reads, per-thread errors {thread_errors} {context}")
    assert len(reads) >= 3, f"only {len(reads)} successful reads before the exit {context}"
    garbage = [(i, p) for i, (_t, p) in enumerate(reads) if p]
    # Three threads churning their stacks on the other core: a stack popped and re-pushed
    # byte for byte between the reader's two copies cannot be told from a still one, and
    # slips through about once in a thousand reads here (tests/test_reader_torn.py holds
    # the single-thread churn to zero). More than that is a bug.
    assert len(garbage) <= max(1, len(reads) // 200), (
        f"{len(garbage)} of {len(reads)} successful reads had garbage {context}; "
        f"last ones: {garbage[-3:]}"
    )
    assert any(t.frames for threads, _p in reads for t in threads), "never saw a frame"
    # Once gone, it stays gone: as a zombie, then once reaped.
    with pytest.raises(ProcessExited):
        reader.read()
    proc.wait(timeout=30)
    with pytest.raises(ProcessExited):
        reader.read()
    reader.close()


def _try_open(StackReader, pid):
    try:
        return StackReader(pid)
    except NotReady:
        return None


def test_read_after_kill(interpreter, spawn):
    StackReader = load_stack_reader()
    proc = spawn.python(interpreter, PARK_SOURCE)
    assert read_line(proc) == "ready"
    with StackReader(proc.pid) as reader:
        assert reader.read()
        proc.send_signal(signal.SIGKILL)
        wait_until(lambda: proc_state(proc.pid) == "Z", 10, "the target to die")
        with pytest.raises(ProcessExited) as info:  # a zombie: no memory any more
            reader.read()
        assert str(proc.pid) in str(info.value)
        proc.wait(timeout=30)
        with pytest.raises(ProcessExited):  # reaped: no process at all
            reader.read()


# --- not ready yet ------------------------------------------------------------------------

PTRACE_TRACEME = 0
PTRACE_DETACH = 17


def _traceme():  # runs in the child between fork and exec
    ctypes.CDLL(None).ptrace(PTRACE_TRACEME, 0, 0, 0)


@pytest.mark.parametrize(
    "interpreter_id",
    # shared-libpython builds (libpython not even mapped at the stop), Debian's static binary
    # (_PyRuntime mapped but still zeroed), and 3.13 (_PyRuntime's debug offsets are statically
    # initialised, so the cookie is there before the interpreter is), and the free-threaded
    # 3.13 (shared libpython too). Not the chrooted sid builds: PTRACE_TRACEME would stop the
    # child at its first execve, which is chroot's, not the interpreter's.
    ["pyenv-3.8", "pyenv-3.12", "pyenv-3.13", "debian-3.11", "ft-3.13t"],
)
def test_not_ready_then_retry(interpreter_id, interpreters, spawn):
    StackReader = load_stack_reader()
    interp = interpreters.require(interpreter_id)
    libc = ctypes.CDLL(None, use_errno=True)
    proc = spawn.python(interp, PARK_SOURCE, preexec_fn=_traceme)
    detached = False
    try:
        # PTRACE_TRACEME: the child stops with SIGTRAP right after execve, before ld.so has
        # loaded anything and long before Py_Initialize.
        _pid, status = os.waitpid(proc.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTRAP, status
        with pytest.raises(NotReady) as info:
            StackReader(proc.pid)
        assert str(proc.pid) in str(info.value)
        assert libc.ptrace(PTRACE_DETACH, proc.pid, None, None) == 0, ctypes.get_errno()
        detached = True
    finally:
        if not detached:
            libc.ptrace(PTRACE_DETACH, proc.pid, None, None)

    # Callers can retry: NotReady until the interpreter is up, then a normal reader.
    not_ready = 0
    deadline = time.monotonic() + 20
    while True:
        assert time.monotonic() < deadline, f"StackReader still failing after 20s ({not_ready})"
        try:
            reader = StackReader(proc.pid)
            break
        except NotReady:
            not_ready += 1
            time.sleep(0.001)
    with reader:
        deadline = time.monotonic() + 20
        while True:
            try:
                threads = reader.read()
            except NotReady:  # tolerated while the main thread is being set up
                threads = []
            names = [f.name for t in threads if t.error is None for f in t.frames]
            if "parked_here" in names:
                break
            assert time.monotonic() < deadline, f"never saw parked_here; last read {threads}"
            time.sleep(0.001)
    assert read_line(proc) == "ready"
