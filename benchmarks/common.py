"""Helpers shared by the benchmark scripts: tables, progress lines, the machine, py-spy, and
the Python the targets run under (this one, or one inside the Debian sid root)."""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout the benchmarks measure
_STARTED = time.monotonic()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated between closest ranks."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def say(text: str = "") -> None:
    print(text, flush=True)


def progress(text: str) -> None:
    """A line on stderr, so a long run shows it is alive without mixing into the tables."""
    print(f"[{time.monotonic() - _STARTED:5.0f} s] {text}", file=sys.stderr, flush=True)


def fmt(x: float, digits: int = 0) -> str:
    if x != x:  # NaN
        return "–"
    return f"{x:.{digits}f}"


def run_text(cmd: list[str], timeout: float = 30) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"? ({exc})"
    return (done.stdout or done.stderr).strip()


def find_pyspy() -> str | None:
    """py-spy next to this interpreter (not a pyenv shim: its bash would count as py-spy CPU)."""
    sibling = Path(sys.executable).parent / "py-spy"
    if sibling.exists():
        return str(sibling)
    found = shutil.which("py-spy")
    if found and "/shims/" in found:
        real = run_text(["pyenv", "which", "py-spy"])
        if real.startswith("/") and Path(real).exists():
            return real
    return found


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def git_state() -> str:
    commit = run_text(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = run_text(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    if not re.fullmatch(r"[0-9a-f]{4,40}", commit):
        return "not a git checkout"
    return commit + (" + uncommitted changes" if dirty else "")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


class TargetError(RuntimeError):
    """A benchmark target did not start, or not as asked."""


# (CPUs for the samplers, CPUs for the targets), or None to let the scheduler place everything.
PINNING: tuple[set[int], set[int]] | None = None


def pin(enabled: bool, samplers: str) -> str:
    """Put the samplers (`samplers` says which) and the targets on different CPUs, as when
    profiling an application that has a core of its own; children inherit the placement.

    Left to the scheduler on a loaded 2-core machine, a busy target and its sampler share a
    core part of the time: then the target stands still while it is read, which changes both
    the cost of a read and how often it sees the stack move (torn snapshots)."""
    global PINNING
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2:
        PINNING = None
        return "none (the scheduler places samplers and targets)"
    PINNING = ({cpus[0]}, {cpus[1]})
    os.sched_setaffinity(0, PINNING[0])
    return f"samplers ({samplers}) on CPU {cpus[0]}; targets on {cpus[1]}"


def target_preexec() -> None:
    """In a target, before exec: its CPU, and SIGKILL when the benchmark dies."""
    if PINNING is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, PINNING[1])
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:
        pass


def wait_with_rusage(proc: subprocess.Popen, timeout: float, sig: int = signal.SIGKILL):
    """os.wait4 the child (its rusage is the CPU it used), signalling it after `timeout`."""
    # os.kill, not Popen.send_signal: that one polls first and could reap the child under
    # os.wait4's feet. Until wait4 reaps it, the pid cannot be reused.
    timer = threading.Timer(timeout, lambda: os.kill(proc.pid, sig))
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage


# -- the Python the targets run under ---------------------------------------------------------
# CPython 3.14 and 3.15 (Debian sid's builds) need a newer glibc than the host's, so they run
# only inside a Debian sid root (tools/install_pythons.sh makes it): `chroot ROOT
# /usr/bin/python3.X SCRIPT`. chroot execs the interpreter in the same pid, so the pid Popen
# gives is the target's, and a profiler on the host attaches to it as to any other process.
PYTHONS_ROOT = Path(os.environ.get("SPY_MAGIC_PYTHONS", "/opt/spy_magic-pythons"))
SID_ROOT = PYTHONS_ROOT / "sid"


@dataclass(frozen=True)
class TargetPython:
    """How to start a Python: `argv` + script and arguments. With a `root`, it runs chrooted
    there and sees only the files under it: scripts are copied in (`script`), and every file
    it reads or writes lives in a `scratch` directory under the root (`inside` turns a host
    path there into the path the chrooted process sees)."""

    label: str
    argv: tuple[str, ...]
    version: tuple[int, ...]
    root: Path | None = None

    @property
    def minor(self) -> int:
        return self.version[1]

    def scratch(self, prefix: str) -> tempfile.TemporaryDirectory:
        """A temporary directory both the host and the target see."""
        return tempfile.TemporaryDirectory(prefix=prefix, dir=self.scratch_dir())

    def inside(self, path: Path | str) -> str:
        if self.root is None:
            return str(path)
        return "/" + str(Path(path).resolve().relative_to(self.root.resolve()))

    def script(self, path: Path) -> str:
        """The path under which the target runs `path` (its directory copied into the root
        once per benchmark process, so its sibling modules import)."""
        if self.root is None:
            return str(path)
        key = (self.root, path.parent)
        if key not in _COPIES:
            copy = Path(tempfile.mkdtemp(prefix="spy_magic-bench-", dir=self.scratch_dir()))
            for source in path.parent.glob("*.py"):
                shutil.copy2(source, copy / source.name)
            atexit.register(shutil.rmtree, copy, True)
            _COPIES[key] = copy
        return self.inside(_COPIES[key] / path.name)

    def scratch_dir(self) -> Path | None:
        if self.root is None:
            return None
        # The root's /var/tmp, not its /tmp: tests bind-mount the host's /tmp over the root's
        # now and then, which would hide (or reveal) files in the middle of a run.
        where = self.root / "var" / "tmp"
        where.mkdir(parents=True, exist_ok=True)
        return where


_COPIES: dict[tuple[Path, Path], Path] = {}


def host_python() -> TargetPython:
    version = ".".join(map(str, sys.version_info[:3]))
    return TargetPython(f"{version} ({sys.executable})", (sys.executable,), sys.version_info[:3])


def python_version(argv: list[str] | tuple[str, ...]) -> tuple[int, int, int] | None:
    text = run_text([*argv, "-c", "import sys; print('%d %d %d' % sys.version_info[:3])"])
    parts = text.split()
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1]), int(parts[2])
    return None


def sid_python(minor: int) -> tuple[TargetPython | None, str]:
    """CPython 3.`minor` of the Debian sid root, or None and why it cannot be used."""
    exe = f"/usr/bin/python3.{minor}"
    if not (SID_ROOT / exe.lstrip("/")).exists():
        return None, (f"no {SID_ROOT}{exe} (the Debian sid root is made by "
                      f"`tools/install_pythons.sh sid`; SPY_MAGIC_PYTHONS moves it)")  # fmt: skip
    if os.geteuid() != 0:
        return None, f"{SID_ROOT} needs chroot, which needs root"
    argv = ("chroot", str(SID_ROOT), exe)
    version = python_version(argv)
    if version is None:
        return None, f"`chroot {SID_ROOT} {exe}` does not run: {run_text([*argv, '-V'])}"
    label = f"{'.'.join(map(str, version))} (Debian sid, chroot {SID_ROOT})"
    return TargetPython(label, argv, version, SID_ROOT), ""


def resolve_target(spec: str | None) -> tuple[TargetPython | None, str]:
    """`--target`: None or "host" is this Python; "3.X" is the sid root's python3.X."""
    if spec in (None, "host"):
        return host_python(), ""
    m = re.fullmatch(r"3\.(\d+)", spec)
    if not m:
        return None, f"--target {spec!r}: expected host or 3.X (the Debian sid root's python3.X)"
    return sid_python(int(m.group(1)))
