"""Faults around the notebook's sampling helper, on real kernels: a helper never outlives its
cell or attachment, whatever happens to the kernel.

The matrix: the kernel interrupted (or an exception raised in it) while `%%spy` starts its
helper, and at every point of the cell's first half second; a helper that cannot start;
the kernel killed (SIGKILL) during `%%spy` and during `%spy_attach`, with the helper's pipes
closed by the kernel's death or still held open by a process the kernel forked; `%spy_attach`
then `%spy_stop`; `%spy_attach` then the kernel restarting. After each, no
`python -m spy_magic.notebook.helper` whose parent is the kernel, or that samples the kernel
or the attached process, is left (polled in /proc for a few seconds), and a kernel that
survived still answers a cell and can be interrupted again.

The timing that matters is forced rather than hoped for: "while the helper starts" freezes the
helper (SIGSTOP) as soon as it has exec'd, so the kernel is certainly waiting for it when the
interrupt arrives; "while sampling" waits for the cell's body to print, which it does only once
the helper has started. Any helper a test finds left behind is killed before the test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("nbclient", reason="the notebook tests need nbclient (pip install nbclient)")
pytest.importorskip("nbformat", reason="the notebook tests need nbformat (pip install nbformat)")

import notebook_kernels as nk  # tests/ is on sys.path under pytest

HELPER = "spy_magic.notebook.helper"
GONE_WITHIN_S = 5.0  # a helper must be gone this soon after its cell or kernel is
REPLY_TIMEOUT_S = 60.0
SWEEP_DELAYS_S = [round(0.02 * i, 2) for i in range(21)]  # 0, 0.02, ..., 0.4 s

# The cell the interrupts land in: long enough that only the interrupt ends it.
LONG_SPY_CELL = "%%spy\nimport time\nprint('body running', flush=True)\ntime.sleep(20)\n"
# The process %spy_attach samples: in a session of its own, so that what the kernel manager
# sends the kernel's process group (the interrupt before a restart) does not end it.
BACKGROUND = """\
import json, subprocess, sys
from spy_magic.demos import demo_path
background = subprocess.Popen(
    [sys.executable, str(demo_path("slow_script")), "--repeat", "1000"], start_new_session=True
)
print(json.dumps(background.pid))
"""
# A child forked by the kernel inherits every descriptor, the helper's pipes included: with
# it alive the kernel's death closes none of them. Like a daemon it leaves the kernel's
# process group (the kernel manager signals that group: its interrupts, its kills), never
# returns into the kernel's code, and exits by itself after a minute.
FORK_HOLDER = """\
import json, os, signal, time
holder = os.fork()
if holder == 0:
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        time.sleep(60)
    finally:
        os._exit(0)
print(json.dumps(holder), flush=True)
"""


# --- processes seen in /proc ---------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def _helper_words(pid: int) -> list[str] | None:
    """The command line of pid when it is a live (not zombie) sampling helper."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            words = [w.decode(errors="replace") for w in fh.read().split(b"\0") if w]
    except OSError:
        return None
    stat = _stat(pid)
    if HELPER not in words or stat is None or stat[0] in "ZX":
        return None
    return words


def helpers_of(*pids: int) -> dict[int, str]:
    """Live helpers whose parent is one of `pids` or that sample (`--pid`) or serve
    (`--parent`) one of them: helper pid -> its command line."""
    wanted = set(pids)
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        words = _helper_words(int(entry))
        if words is None:
            continue
        stat = _stat(int(entry))
        named = {
            int(value)
            for flag, value in zip(words, words[1:])
            if flag in ("--pid", "--parent") and value.isdigit()
        }
        if (stat and stat[1] in wanted) or named & wanted:
            found[int(entry)] = " ".join(words)
    return found


def _threads(pid: int) -> list[tuple[str, str, str]]:
    """(name, state, wchan) of each thread of pid: what a helper left behind was doing."""
    out = []
    with contextlib.suppress(OSError):
        for tid in sorted(os.listdir(f"/proc/{pid}/task")):
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/task/{tid}/comm") as comm:
                    name = comm.read().strip()
                with open(f"/proc/{pid}/task/{tid}/wchan") as wchan:
                    where = wchan.read().strip()
                stat = _stat(int(tid)) or ("?", 0)
                out.append((name, stat[0], where))
    return out


def assert_no_helper_left(*pids: int, within: float = GONE_WITHIN_S, what: str = "") -> None:
    """No helper of `pids` is left after `within` s; leftovers are killed, then reported."""
    deadline = time.monotonic() + within
    while (left := helpers_of(*pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        states = {pid: (_stat(pid), _threads(pid)) for pid in left}
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        raise AssertionError(
            f"{len(left)} sampling helper(s) still running {within:g} s after {what}: "
            f"{left} ((state, ppid), [thread name, state, wchan]: {states})"
        )


def wait_for_new_helper(kernel_pid: int, known: set[int], timeout: float = 60.0) -> int:
    """The pid of a helper the kernel started that is not in `known`, as soon as it has
    exec'd (polled every few ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in known:
                stat = _stat(int(entry))
                if stat and stat[1] == kernel_pid and _helper_words(int(entry)):
                    return int(entry)
        time.sleep(0.002)
    raise AssertionError(f"the kernel {kernel_pid} started no helper within {timeout:g} s")


def kill_quietly(*pids: int | None, sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)


# --- kernels -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fault_spec_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fault-kernelspecs")


@pytest.fixture(scope="module", params=nk.KERNELS)
def kernel_info(request, fault_spec_dir) -> nk.KernelInfo:
    try:
        info = nk.kernel_for(request.param)
    except nk.KernelUnavailable as exc:
        message = f"no {request.param} kernel here: {exc}"
        if os.environ.get(nk.REQUIRE_ENV):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    nk.write_kernelspec(fault_spec_dir, info)
    return info


class Kernel:
    """A NotebookKernel with spy_magic loaded, its pid, and a blocking client to run cells
    without waiting for them."""

    def __init__(self, info: nk.KernelInfo, spec_dir: Path, cwd: Path) -> None:
        self.nb = nk.NotebookKernel(info, spec_dir, cwd)
        try:
            loaded = self.nb.run("%load_ext spy_magic")
            assert not errors_of(loaded.outputs) and nk.stderr(loaded) == "", loaded.outputs
            self.pid = self.nb.json("import json, os\nprint(json.dumps(os.getpid()))")
            self.kc = self.nb.blocking_client()
            self.kc.wait_for_ready(timeout=REPLY_TIMEOUT_S)
        except BaseException:
            self.nb.close()
            raise

    def submit(self, code: str) -> str:
        return self.kc.execute(code)

    def wait_stdout(self, msg_id: str, text: str, timeout: float = REPLY_TIMEOUT_S) -> str:
        """Iopub messages of msg_id until its stdout holds `text`; the stdout so far."""
        out = ""
        deadline = time.monotonic() + timeout
        while text not in out:
            if time.monotonic() > deadline:
                raise AssertionError(f"the cell did not print {text!r} within {timeout:g} s")
            msg = self._iopub(1)
            if msg and msg["parent_header"].get("msg_id") == msg_id:
                if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                    out += msg["content"]["text"]
                elif msg["msg_type"] == "error":
                    raise AssertionError(f"the cell failed: {msg['content']['ename']}")
        return out

    def finish(self, msg_id: str, timeout: float = REPLY_TIMEOUT_S) -> tuple[dict, list[dict]]:
        """The execute reply of msg_id and its iopub messages (until the kernel went idle)."""
        deadline = time.monotonic() + timeout
        reply = None
        while reply is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no reply to the cell within {timeout:g} s")
            with contextlib.suppress(Exception):  # queue.Empty
                msg = self.kc.get_shell_msg(timeout=min(1.0, remaining))
                if msg["parent_header"].get("msg_id") == msg_id:
                    reply = msg["content"]
        messages = []
        while True:
            msg = self._iopub(5)
            if msg is None:
                break
            if msg["parent_header"].get("msg_id") == msg_id:
                messages.append(msg)
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
        return reply, messages

    def _iopub(self, timeout: float):
        try:
            return self.kc.get_iopub_msg(timeout=timeout)
        except Exception:  # queue.Empty
            return None

    def interrupt(self) -> None:
        self.nb.interrupt()

    def answers(self) -> None:
        """The kernel runs a cell, and an interrupt still stops a running one."""
        assert self.nb.json("import json\nprint(json.dumps(6 * 7))") == 42
        msg_id = self.submit("import time\nprint('sleeping', flush=True)\ntime.sleep(30)\n")
        self.wait_stdout(msg_id, "sleeping")
        started = time.monotonic()
        self.interrupt()
        reply, _ = self.finish(msg_id, timeout=20)
        assert reply.get("ename") == "KeyboardInterrupt", reply
        assert time.monotonic() - started < 10, "the interrupt took too long to stop the cell"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.kc.stop_channels()
        self.nb.close()


def errors_of(outputs) -> list:
    return [o for o in outputs if o.get("output_type") == "error"]


def shown(messages: list[dict]) -> bool:
    """Whether the cell displayed anything (%%spy shows its live view once it started)."""
    return any(m["msg_type"] == "display_data" for m in messages)


@pytest.fixture(scope="module")
def kernel(kernel_info, fault_spec_dir, tmp_path_factory):
    """One kernel shared by the tests that leave it alive."""
    k = Kernel(kernel_info, fault_spec_dir, tmp_path_factory.mktemp("cwd"))
    try:
        yield k
    finally:
        kill_quietly(*helpers_of(k.pid))
        k.close()


@pytest.fixture
def fresh_kernel(kernel_info, fault_spec_dir, tmp_path):
    """A kernel of its own, for a test that kills or restarts it."""
    made: list[Kernel] = []

    def make() -> Kernel:
        made.append(Kernel(kernel_info, fault_spec_dir, tmp_path))
        return made[-1]

    yield make
    for k in made:
        kill_quietly(*helpers_of(k.pid))
        with contextlib.suppress(Exception):
            k.close()


def _restart(k: Kernel) -> None:
    result = k.nb.km.restart_kernel(now=False)
    if inspect.isawaitable(result):
        asyncio.run(nk._await(result))


# --- interrupts and exceptions while %%spy starts ------------------------------------------------


def _fault_while_helper_frozen(k: Kernel, fault) -> tuple[dict, list[dict]]:
    """Run LONG_SPY_CELL; freeze its helper as soon as it has exec'd, call fault() (the kernel
    is then certainly waiting in start for the helper), let the helper go once the cell
    ended. The reply and the cell's messages."""
    known = set(helpers_of(k.pid))
    msg_id = k.submit(LONG_SPY_CELL)
    helper = wait_for_new_helper(k.pid, known)
    try:
        os.kill(helper, signal.SIGSTOP)
        time.sleep(0.2)  # the kernel sits in RemoteSession.start, waiting for "started"
        fault()
        reply, messages = k.finish(msg_id, timeout=30)
    finally:
        if _helper_words(helper):  # SIGCONT: a helper left behind now runs (and is seen)
            kill_quietly(helper, sig=signal.SIGCONT)
    return reply, messages


def test_fault_interrupt_during_helper_start_leaves_no_helper(kernel):
    reply, messages = _fault_while_helper_frozen(kernel, kernel.interrupt)
    assert reply.get("ename") == "KeyboardInterrupt", reply
    assert not shown(messages), "the interrupt landed after the session had started"
    assert_no_helper_left(kernel.pid, what="the interrupt during the helper's start")
    kernel.answers()


def test_fault_exception_during_helper_start_leaves_no_helper(kernel):
    # Any exception, not only KeyboardInterrupt: a signal handler the cell installed raises.
    setup = kernel.nb.run(
        "import signal as _signal\n\ndef _fault_on_usr1(signum, frame):\n"
        "    raise RuntimeError('fault injected while %%spy starts')\n\n"
        "_usr1_before = _signal.signal(_signal.SIGUSR1, _fault_on_usr1)\n"
    )
    assert not errors_of(setup.outputs), setup.outputs
    try:
        reply, messages = _fault_while_helper_frozen(
            kernel, lambda: os.kill(kernel.pid, signal.SIGUSR1)
        )
    finally:
        kernel.nb.run("_signal.signal(_signal.SIGUSR1, _usr1_before)")
    assert reply.get("ename") == "RuntimeError", reply
    assert "fault injected" in reply.get("evalue", ""), reply
    assert not shown(messages), "the exception was raised after the session had started"
    assert_no_helper_left(kernel.pid, what="the exception during the helper's start")
    kernel.answers()


def test_fault_interrupt_at_any_point_of_the_first_half_second_leaves_no_helper(kernel):
    """Interrupt LONG_SPY_CELL 0, 0.02, ..., 0.4 s after its helper appeared: wherever that
    lands (in the helper's start, in the live view's set-up, in the cell's body), no helper
    is left and the cell ends in KeyboardInterrupt."""
    landed = {"during start": 0, "after start": 0}
    for delay in SWEEP_DELAYS_S:
        known = set(helpers_of(kernel.pid))
        msg_id = kernel.submit(LONG_SPY_CELL)
        wait_for_new_helper(kernel.pid, known)
        time.sleep(delay)
        kernel.interrupt()
        reply, messages = kernel.finish(msg_id, timeout=30)
        assert reply.get("ename") == "KeyboardInterrupt", (delay, reply)
        landed["after start" if shown(messages) else "during start"] += 1
        assert_no_helper_left(
            kernel.pid, what=f"an interrupt {delay:g} s into the cell (landings so far: {landed})"
        )
    kernel.answers()


def test_fault_helper_that_cannot_start_leaves_no_helper(kernel):
    # The helper inherits the kernel's environment: a PYTHONHOME with no Python in it makes
    # its interpreter fail at once; %%spy then samples from inside and says why.
    cell = kernel.nb.run(
        "import os as _os\n_home_before = _os.environ.get('PYTHONHOME')\n"
        "_os.environ['PYTHONHOME'] = '/nonexistent-python-home'\n"
        "try:\n    get_ipython().run_cell_magic('spy', '-q', 'sum(range(10**6))')\n"
        "finally:\n    if _home_before is None:\n        del _os.environ['PYTHONHOME']\n"
        "    else:\n        _os.environ['PYTHONHOME'] = _home_before\n"
    )
    assert not errors_of(cell.outputs), cell.outputs
    assert "could not read the kernel from outside" in nk.stderr(cell), cell.outputs
    assert_no_helper_left(kernel.pid, what="a helper that could not start")
    kernel.answers()


# --- attachments ---------------------------------------------------------------------------------


def test_fault_attach_then_stop_leaves_no_helper(kernel):
    target = kernel.nb.json(BACKGROUND)
    try:
        attach = kernel.nb.run(f"%spy_attach {target} -q")
        assert not errors_of(attach.outputs), attach.outputs
        assert helpers_of(target), "%spy_attach started no helper"
        stop = kernel.nb.run("%spy_stop")
        assert not errors_of(stop.outputs), stop.outputs
        assert_no_helper_left(kernel.pid, target, what="%spy_stop")
    finally:
        kernel.nb.run("background.kill(); background.wait()")
        kill_quietly(target)


HOLDERS = ["pipes-closed", "pipes-held-by-a-fork"]


@pytest.mark.parametrize("pipes", HOLDERS)
def test_fault_kernel_killed_during_spy_cell_ends_its_helper(fresh_kernel, pipes):
    k = fresh_kernel()
    holder = None
    body = FORK_HOLDER if pipes == "pipes-held-by-a-fork" else "print('null', flush=True)\n"
    msg_id = k.submit(f"%%spy -q\n{body}print('sampling', flush=True)\nimport time\ntime.sleep(60)")
    try:
        out = k.wait_stdout(msg_id, "sampling")  # the body runs once the helper started
        holder = json.loads(out.splitlines()[0])
        assert helpers_of(k.pid), "no helper while the %%spy cell runs"
        os.kill(k.pid, signal.SIGKILL)
        assert_no_helper_left(k.pid, what="the kernel was killed during a %%spy cell")
    finally:
        kill_quietly(holder)


@pytest.mark.parametrize("pipes", HOLDERS)
def test_fault_kernel_killed_during_attach_ends_its_helper(fresh_kernel, pipes):
    k = fresh_kernel()
    target = holder = None
    try:
        target = k.nb.json(BACKGROUND)
        attach = k.nb.run(f"%spy_attach {target} -q")
        assert not errors_of(attach.outputs), attach.outputs
        assert helpers_of(target), "%spy_attach started no helper"
        if pipes == "pipes-held-by-a-fork":
            holder = k.nb.json(FORK_HOLDER)
        os.kill(k.pid, signal.SIGKILL)
        assert_no_helper_left(k.pid, target, what="the kernel was killed during %spy_attach")
    finally:
        kill_quietly(holder, target)


@pytest.mark.parametrize("pipes", HOLDERS)
def test_fault_kernel_restarted_during_attach_leaves_no_helper(fresh_kernel, pipes):
    k = fresh_kernel()
    target = holder = None
    try:
        target = k.nb.json(BACKGROUND)
        attach = k.nb.run(f"%spy_attach {target} -q")
        assert not errors_of(attach.outputs), attach.outputs
        assert helpers_of(target), "%spy_attach started no helper"
        if pipes == "pipes-held-by-a-fork":
            holder = k.nb.json(FORK_HOLDER)
        old_pid = k.pid
        _restart(k)
        assert_no_helper_left(old_pid, target, what="the kernel restarted during %spy_attach")
    finally:
        kill_quietly(holder, target)


def test_helper_detection_sees_a_running_helper(kernel):
    """The tests above are only as good as helpers_of: it finds a helper the kernel runs."""
    msg_id = kernel.submit(LONG_SPY_CELL)
    try:
        kernel.wait_stdout(msg_id, "body running")
        found = helpers_of(kernel.pid)
        assert len(found) == 1, found
        assert f"--pid {kernel.pid}" in next(iter(found.values())), found
    finally:
        kernel.interrupt()
        kernel.finish(msg_id, timeout=30)
    assert_no_helper_left(kernel.pid, what="an interrupt while sampling")


# --- a helper started from a thread (no kernel) ---------------------------------------------

# Starts a RemoteSession on argv[1] from a thread that then exits (the OS sends the helper its
# parent-death signal then), waits until samples still arrive, forks a holder of the pipes,
# reports, and sleeps until killed.
THREAD_PARENT = r"""
import json, os, sys, threading, time
from spy_magic.notebook.session import RemoteSession

box = {}
starter = threading.Thread(target=lambda: box.update(s=RemoteSession(int(sys.argv[1])).start()))
starter.start()
starter.join()
session = box["s"]
def sampled():  # the helper's live summary, about once a second
    return (session.summary or {}).get("samples", 0)
after_thread = sampled()
deadline = time.monotonic() + 30
while sampled() <= after_thread + 5 and time.monotonic() < deadline:
    time.sleep(0.05)
holder = os.fork()
if holder == 0:
    try:
        os.setsid()
        time.sleep(60)
    finally:
        os._exit(0)
print(json.dumps({"holder": holder, "running": session.running,
                  "grew": sampled() - after_thread}), flush=True)
time.sleep(120)
"""
SLEEPER = "import time\nwhile True:\n    time.sleep(0.01)\n"


def test_fault_parent_killed_after_its_starting_thread_ended_ends_the_helper(tmp_path):
    """The helper keeps sampling when the thread that started it exits (its parent-death
    signal then only makes it check), and exits once the whole parent is killed, though a
    process the parent forked holds its pipes open."""
    env = dict(os.environ, PYTHONPATH=str(nk.REPO))
    target = subprocess.Popen([sys.executable, "-c", SLEEPER])
    parent = holder = None
    try:
        parent = subprocess.Popen(
            [sys.executable, "-c", THREAD_PARENT, str(target.pid)],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        line = parent.stdout.readline()
        assert line, f"the parent exited ({parent.wait()}) before reporting"
        report = json.loads(line)
        holder = report["holder"]
        assert report["running"] and report["grew"] > 5, report
        assert helpers_of(parent.pid), "no helper while the parent runs"
        parent.kill()
        parent.wait()
        assert_no_helper_left(parent.pid, target.pid, what="its parent was killed")
    finally:
        kill_quietly(holder, parent and parent.pid, target.pid)
        for process in (parent, target):
            if process is not None:
                process.wait()
