"""Shared fixtures for the real-process tests: interpreters, target processes, throwaway pids.

Every process a test starts is killed and reaped when the test (or module) is done, whatever
happened in between.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from root_mounts import ensure_visible_in_root, release_root_mounts

REPO = Path(__file__).resolve().parent.parent
TARGETS = REPO / "tests" / "targets"
PARKED = TARGETS / "parked.py"

# `pytest` (unlike `python -m pytest`) does not put the repository on sys.path.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PYENV_ROOT = "/root/.pyenv/versions"
DEBIAN_PYTHON = "/usr/bin/python3.11"
# tools/install_pythons.sh installs the interpreters this machine lacks under here: a Debian sid
# root (python3.14, python3.15, maybe their free-threaded builds; they need sid's glibc, so they
# run only chrooted into it) and a free-threaded CPython 3.13 that runs on the host.
PYTHONS = os.environ.get("SPY_MAGIC_PYTHONS") or "/opt/spy_magic-pythons"
SID_ROOT = os.path.join(PYTHONS, "sid")
FREE_THREADED_313 = os.path.join(PYTHONS, "cpython-3.13t", "bin", "python3.13t")
TARGET_START_TIMEOUT = 60.0  # seconds for a target to report ready (a loaded machine is slow)


# --- interpreters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Interpreter:
    id: str  # "pyenv-3.12", "debian-3.11", "sid-3.14", "ft-3.13t"
    version: tuple[int, int]
    path: str | None  # the interpreter as the target sees it (inside `root`); None: not here
    looked_for: str  # the glob or path searched, for the skip reason
    free_threaded: bool = False  # a --disable-gil build ("3.13t")
    root: str | None = None  # run chrooted into this directory (`path` is inside it)

    @property
    def missing_reason(self) -> str:
        return f"interpreter {self.id} (Python {self.build}) not found: no {self.looked_for}"

    @property
    def dotted(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def build(self) -> str:
        """The build name: "3.12", or "3.13t" for a free-threaded build."""
        return self.dotted + ("t" if self.free_threaded else "")

    def argv(self, *args) -> list[str]:
        """The command line that runs this interpreter with `args`.

        A rooted interpreter runs as `chroot ROOT PATH ARGS...`: chroot execs the interpreter
        in its own pid, so the pid Popen reports is the target's. chroot also does chdir("/"):
        pass absolute paths, and set cwd inside the script where a test relies on it. Calling
        this for a rooted interpreter makes the repository and the temp dir visible in the root
        (ensure_visible_in_root), so the target sees tests/targets/*.py, scripts written to
        tempfile dirs and ready-files at the same paths as the test does.
        """
        if self.path is None:
            raise RuntimeError(self.missing_reason)
        if self.root is None:
            return [self.path, *map(str, args)]
        ensure_visible_in_root(self.root)
        return ["chroot", self.root, self.path, *map(str, args)]

    def host_path(self, path: str) -> str:
        """A path as the target sees it (a co_filename, say), as this process sees it."""
        if self.root is None or not os.path.isabs(path):
            return path
        return os.path.join(self.root, path.lstrip("/"))


def _pyenv(major: int, minor: int) -> Interpreter:
    pattern = f"{PYENV_ROOT}/{major}.{minor}*/bin/python"
    exact = re.compile(rf"^{major}\.{minor}(\.\d+)?$")  # 3.1* must not pick 3.10
    found = sorted(
        (p for p in glob.glob(pattern) if exact.match(Path(p).parent.parent.name)),
        key=lambda p: [int(x) for x in Path(p).parent.parent.name.split(".")],
    )
    found = [p for p in found if os.access(p, os.X_OK)]
    path = found[-1] if found else None
    return Interpreter(f"pyenv-{major}.{minor}", (major, minor), path, pattern)


def _debian() -> Interpreter:
    ok = os.access(DEBIAN_PYTHON, os.X_OK)
    return Interpreter("debian-3.11", (3, 11), DEBIAN_PYTHON if ok else None, DEBIAN_PYTHON)


def _sid(minor: int, free_threaded: bool = False) -> Interpreter:
    """Debian sid's python3.MINOR[t], run chrooted into the sid root."""
    suffix = "t" if free_threaded else ""
    inside = f"/usr/bin/python3.{minor}{suffix}"
    on_host = os.path.join(SID_ROOT, inside.lstrip("/"))
    ok = os.path.isfile(on_host) and os.access(on_host, os.X_OK)
    return Interpreter(
        f"sid-3.{minor}{suffix}", (3, minor), inside if ok else None,
        f"{on_host} (tools/install_pythons.sh sid builds the root)",
        free_threaded=free_threaded, root=SID_ROOT,
    )  # fmt: skip


def _free_threaded_313() -> Interpreter:
    ok = os.path.isfile(FREE_THREADED_313) and os.access(FREE_THREADED_313, os.X_OK)
    return Interpreter(
        "ft-3.13t", (3, 13), FREE_THREADED_313 if ok else None,
        f"{FREE_THREADED_313} (tools/install_pythons.sh ft builds it)", free_threaded=True,
    )  # fmt: skip


SUPPORTED = {
    i.id: i
    for i in [
        *(_pyenv(3, m) for m in range(8, 14)),
        _debian(),
        _free_threaded_313(),
        _sid(14),
        _sid(15),
        _sid(14, free_threaded=True),
        _sid(15, free_threaded=True),
    ]
}
UNSUPPORTED = {i.id: i for i in (_pyenv(2, 7), _pyenv(3, 6), _pyenv(3, 7))}
ALL_INTERPRETERS = {**SUPPORTED, **UNSUPPORTED}


# --- making files visible to chrooted targets: tests/root_mounts.py --------------------------


@pytest.fixture(scope="session", autouse=True)
def _root_mounts():
    """Unmounts, at the end of the session, what rooted interpreters needed mounted.

    The mounts themselves are made on first use (Interpreter.argv, require_interpreter), so a
    session that runs no chrooted target mounts nothing: binding the temp dir over the root's
    /tmp would hide whatever a process inside the root (pip, say) keeps there.
    """
    try:
        yield
    finally:
        release_root_mounts()


def require_interpreter(interpreter_id: str) -> Interpreter:
    """The interpreter, or skip the test with a reason naming the missing one."""
    interp = ALL_INTERPRETERS[interpreter_id]
    if interp.path is None:
        pytest.skip(interp.missing_reason)
    if interp.root is not None:
        ensure_visible_in_root(interp.root)
    return interp


class Interpreters:
    """Look interpreters up by id from a test: `interpreters.require("debian-3.11")`."""

    supported = SUPPORTED
    unsupported = UNSUPPORTED

    @staticmethod
    def require(interpreter_id: str) -> Interpreter:
        return require_interpreter(interpreter_id)


@pytest.fixture(scope="session")
def interpreters() -> Interpreters:
    return Interpreters()


@pytest.fixture(scope="module", params=list(SUPPORTED))
def interpreter(request) -> Interpreter:
    """Each supported interpreter in turn (skipped, with the reason, where not installed).

    A test module may override this fixture with a narrower list of ids.
    """
    return require_interpreter(request.param)


# --- processes ---------------------------------------------------------------------------------


def target_env(**extra: str) -> dict:
    """The environment for a target: ours minus anything that would redirect its Python."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(extra)
    return env


def reap(proc: subprocess.Popen) -> None:
    """Kill the process if it still runs, and wait for it (no zombie left behind)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):  # a stuck traced child: give up
        proc.wait(timeout=30)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _stderr_text(proc: subprocess.Popen) -> str:
    f = getattr(proc, "stderr_file", None)
    if f is None:
        return ""
    f.seek(0)
    return f.read().decode("utf-8", "replace")


def read_line(proc: subprocess.Popen, timeout: float = TARGET_START_TIMEOUT) -> str:
    """The next line the process writes on its stdout (a pipe), failing after `timeout`."""
    fd = proc.stdout.fileno()
    buf = getattr(proc, "_line_buffer", b"")
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"pid {proc.pid} wrote no line within {timeout}s; "
                    f"stdout so far {buf[:500]!r}; stderr: {_stderr_text(proc)[-2000:]}"
                )
            if sel.select(left):
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(
                        f"pid {proc.pid} exited (rc={proc.wait()}) before writing a line; "
                        f"stdout {buf[:500]!r}; stderr: {_stderr_text(proc)[-2000:]}"
                    )
                buf += chunk
    line, _, rest = buf.partition(b"\n")
    proc._line_buffer = rest
    return line.decode("utf-8")


def start_process(args, **kwargs) -> subprocess.Popen:
    """Popen with stdout piped and stderr kept in a temp file (readable after a failure)."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("env", target_env())
    stderr_file = None
    if "stderr" not in kwargs:
        stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Spawner.close
        kwargs["stderr"] = stderr_file
    proc = subprocess.Popen([str(a) for a in args], **kwargs)
    proc.stderr_file = stderr_file
    return proc


class Spawner:
    """Starts throwaway processes and reaps them all at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def __call__(self, args, **kwargs) -> subprocess.Popen:
        proc = start_process(args, **kwargs)
        self.procs.append(proc)
        return proc

    def python(self, interp: Interpreter, source: str, *args, **kwargs) -> subprocess.Popen:
        """Run `source` (via -c) with the interpreter."""
        return self(interp.argv("-c", source, *args), **kwargs)

    def close(self) -> None:
        for proc in self.procs:
            reap(proc)
            if proc.stderr_file is not None:
                proc.stderr_file.close()
        self.procs.clear()


@pytest.fixture
def spawn():
    """`spawn(args, **popen_kwargs)` / `spawn.python(interp, source)`: reaped after the test."""
    spawner = Spawner()
    try:
        yield spawner
    finally:
        spawner.close()


@pytest.fixture(scope="module")
def spawn_module():
    spawner = Spawner()
    try:
        yield spawner
    finally:
        spawner.close()


def reaped_pid() -> int:
    """The pid of a process that has exited and been reaped: no process has it (for now)."""
    p = subprocess.Popen(["true"])
    p.wait()
    assert not os.path.exists(f"/proc/{p.pid}"), "pid reused already"
    return p.pid


def wait_until(predicate, timeout: float, what: str, interval: float = 0.005):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def take_samples(sampler, enough, timeout: float = 60.0) -> list:
    """Iterate `sampler` until `enough(samples)` holds (or `timeout` s pass), then stop it.

    For a test that needs so many samples of something: a fixed duration gives a sampler
    that a busy machine runs rarely too few. The samples already taken when it stops are
    kept too; after the timeout the test's own assertions say what was missing.
    """
    samples: list = []
    give_up = time.monotonic() + timeout
    for sample in sampler:
        samples.append(sample)
        if enough(samples) or time.monotonic() > give_up:
            sampler.stop()
    return samples


# --- shares on a loaded machine ---------------------------------------------------------------


def looks(timestamps: list[float], apart: float = 0.001) -> list[int]:
    """The samples at these times as separate looks at the target: how many samples each.

    A sampler the machine ran late takes the overdue samples back to back (up to 10 periods'
    worth): each run of samples less than `apart` from the one before saw one moment.
    """
    sizes: list[int] = []
    last = None
    for t in timestamps:
        if last is not None and t - last < apart:
            sizes[-1] += 1
        else:
            sizes.append(1)
        last = t
    return sizes


def independent_worth(weights: list[float]) -> float:
    """How many independent samples looks of these weights are worth, for a share's bound.

    A share made of looks weighing w_i (their sample counts, or the time they stand for)
    varies as p(1-p) * sum(w_i^2) / (sum w_i)^2: as that of (sum w_i)^2 / sum(w_i^2)
    independent samples (all of them, for equal weights on an idle machine).
    """
    return sum(weights) ** 2 / sum(w * w for w in weights) if weights else 0.0


# --- the parked target ---------------------------------------------------------------------------


@contextlib.contextmanager
def parked_target(interp: Interpreter):
    """Start tests/targets/parked.py; yield (process, view) once every thread is parked and
    the reporter thread has gone; kill it afterwards."""
    spawner = Spawner()
    try:
        proc = spawner(interp.argv(PARKED))
        line = read_line(proc)
        view = json.loads(line)
        if "error" in view:
            raise AssertionError(f"parked target under {interp.id} failed: {view['error']}")
        assert view["pid"] == proc.pid
        assert tuple(view["version"][:2]) == interp.version, (view["version"], interp)
        # The reporter thread exits right after printing: wait until its OS thread is gone
        # (its PyThreadState is unlinked before that), so readers never see it.
        reporter_task = f"/proc/{proc.pid}/task/{view['reporter']['native_id']}"
        wait_until(lambda: not os.path.exists(reporter_task), 10, "the reporter thread to exit")
        yield proc, view
    finally:
        spawner.close()


@pytest.fixture(scope="module")
def parked(interpreter):
    """(process, view) of the parked target under `interpreter`, shared by a module's tests."""
    with parked_target(interpreter) as pv:
        yield pv


# --- the reader under test ---------------------------------------------------------------------


def load_stack_reader():
    """spy_magic.reader.StackReader, or fail the test saying it is not there (yet)."""
    try:
        from spy_magic.reader import StackReader
    except ImportError as e:
        pytest.fail(f"spy_magic.reader.StackReader is not importable: {e}", pytrace=False)
    return StackReader


@pytest.fixture(scope="session")
def reader_class():
    return load_stack_reader()


def require_churn(moved: bool) -> None:
    """Skip a torn-read test whose target never moved while being read.

    That happens when the machine is so loaded that the target and its reader share a CPU:
    the target then stands still during every read, and there is nothing to judge.
    """
    if not moved:
        pytest.skip(
            "the target's stack never moved while read (a loaded machine: target and "
            "reader shared a CPU), so no read could tear"
        )
