"""Real Jupyter kernels for the notebook tests: one per ipykernel major version, and one on a
newer CPython than the host has.

- ipykernel7: the Python running the tests, when its ipykernel is 7.x.
- ipykernel6 (or 7 when the running Python has no 7.x): a venv cached under `.ci/`
  (`.ci/venv-ipykernel6`, or $SPY_MAGIC_IPYKERNEL6_VENV), built on first use with
  `pip install "ipykernel>=6,<7" anywidget -e REPO` and rebuilt when the repository path,
  pyproject.toml or the base Python changes. A file lock keeps concurrent test sessions from
  building it twice.
- py3.14-sid: CPython 3.14 in the Debian sid root that tools/install_pythons.sh makes (its
  venv /opt/venv-3.14 there has ipykernel and the runtime deps; spy_magic comes from REPO,
  bind-mounted at the same path, through PYTHONPATH). The kernel runs chrooted, see
  ROOTED_LAUNCHER; the helper it starts for %%spy runs in the root too and reads the kernel
  through the root's /proc. Missing root or venv: KernelUnavailable, like a venv that cannot
  be built.

Kernel specs are written into a temporary directory and found through a KernelSpecManager
that looks only there, so nothing is installed into the user's Jupyter paths.

`NotebookKernel` runs cells one at a time through nbclient (outputs, display updates and
widget state handled exactly as when nbclient executes a notebook) on a kernel that stays up
between cells, so several tests can share one kernel.

Building a venv can be slow or impossible (no registry): the failure becomes a
`KernelUnavailable` whose message says why; tests skip on it unless
$SPY_MAGIC_REQUIRE_KERNELS is set (CI), where it fails them.

`python tests/notebook_kernels.py` builds the venv(s) ahead of time and prints the kernels.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO / ".ci"
MAJORS = (7, 6)  # the ipykernel major versions every notebook test runs on
# Kernels inside a chroot: id -> (the CPython version, its venv inside the root).
ROOTED = {"py3.14-sid": ("3.14", "/opt/venv-3.14")}
KERNELS = (*(f"ipykernel{m}" for m in MAJORS), *ROOTED)  # every notebook test runs on each
PIP_TIMEOUT_S = 900
# The notebook front imports anywidget, which pyproject.toml does not list (yet).
EXTRA_PACKAGES = ("anywidget",)
REQUIRE_ENV = "SPY_MAGIC_REQUIRE_KERNELS"


class KernelUnavailable(Exception):
    """No kernel of that ipykernel version can be had here; the message says why."""


@dataclass(frozen=True)
class KernelInfo:
    major: int  # ipykernel major version
    python: str  # the kernel's interpreter (as seen inside `root` for a rooted kernel)
    ipykernel_version: str
    source: str  # "this interpreter", the venv path, or "ROOT:VENV" for a rooted kernel
    root: str | None = None  # the kernel runs chrooted into this directory
    kernel_id: str | None = None  # default: ipykernel{major}
    python_version: str = ""  # the kernel's sys.version, first word (probed)

    @property
    def name(self) -> str:
        return f"spy-magic-{self.id}"

    @property
    def id(self) -> str:
        return self.kernel_id or f"ipykernel{self.major}"


def _probe(python: str, *, root: str | None = None, pythonpath: str | None = None) -> dict:
    """What `python` has: ipykernel's version and where spy_magic and anywidget come from."""
    code = (
        "import json, importlib.util as u, sys\n"
        "out = {'python': sys.version.split()[0]}\n"
        "try:\n"
        "    import ipykernel; out['ipykernel'] = ipykernel.__version__\n"
        "except Exception as e: out['ipykernel_error'] = repr(e)\n"
        "for name in ('spy_magic', 'anywidget', 'matplotlib'):\n"
        "    spec = u.find_spec(name)\n"
        "    out[name] = spec.origin if spec else None\n"
        "print(json.dumps(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [*(["chroot", root] if root else []), python, "-c", code]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd="/")
    except subprocess.TimeoutExpired:
        raise KernelUnavailable(f"{' '.join(cmd[:-2])} did not answer within 120 s") from None
    if proc.returncode != 0:
        where = f" in {root}" if root else ""
        raise KernelUnavailable(f"{python}{where} failed to start: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _major(version: str | None) -> int | None:
    match = re.match(r"(\d+)\.", version or "")
    return int(match.group(1)) if match else None


def _fingerprint(major: int) -> dict:
    pyproject = (REPO / "pyproject.toml").read_bytes()
    return {
        "requirement": f"ipykernel>={major},<{major + 1}",
        "extra": list(EXTRA_PACKAGES),
        "repo": str(REPO),
        "pyproject_sha256": hashlib.sha256(pyproject).hexdigest(),
        "base_python": os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
        "base_version": sys.version,
    }


def venv_dir(major: int) -> Path:
    override = os.environ.get(f"SPY_MAGIC_IPYKERNEL{major}_VENV")
    return Path(override) if override else CACHE_DIR / f"venv-ipykernel{major}"


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, cwd=str(REPO)
        )
    except subprocess.TimeoutExpired:
        raise KernelUnavailable(f"{what} took over {PIP_TIMEOUT_S} s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise KernelUnavailable(f"{what} failed ({' '.join(cmd)}):\n" + "\n".join(tail))


def ensure_venv(major: int, log=None) -> KernelInfo:
    """The cached venv with ipykernel `major`.x and this repository installed (built if
    missing or stale)."""
    directory = venv_dir(major)
    python = directory / "bin" / "python"
    marker = directory / "spy_magic-kernel.json"
    wanted = _fingerprint(major)
    directory.parent.mkdir(parents=True, exist_ok=True)
    lock_path = directory.with_name(directory.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may be building it
        try:
            current = json.loads(marker.read_text()) if marker.exists() else None
        except ValueError:
            current = None
        if current != wanted or not python.exists():
            if log:
                log(f"building {directory} (ipykernel {major}.x); this takes a minute once")
            shutil.rmtree(directory, ignore_errors=True)
            base = getattr(sys, "_base_executable", None) or sys.executable
            _run([base, "-m", "venv", str(directory)], "creating the venv")
            _run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                 wanted["requirement"], *EXTRA_PACKAGES, "-e", str(REPO)],
                f"installing ipykernel {major}.x and spy_magic into {directory}",
            )  # fmt: skip
            marker.write_text(json.dumps(wanted, indent=1))
    probe = _probe(str(python))
    version = probe.get("ipykernel")
    if _major(version) != major:
        raise KernelUnavailable(f"{python} has ipykernel {version}, wanted {major}.x: {probe}")
    if not (probe.get("spy_magic") or "").startswith(str(REPO)):
        raise KernelUnavailable(f"{python} imports spy_magic from {probe.get('spy_magic')}")
    return KernelInfo(major, str(python), version, str(directory), python_version=probe["python"])


def rooted_kernel(kernel_id: str) -> KernelInfo:
    """The kernel `kernel_id` of ROOTED: its root and venv checked, the repository and the temp
    dir made visible in the root, its ipykernel and spy_magic probed there."""
    from conftest import SID_ROOT, ensure_visible_in_root  # tests/ is on sys.path

    version, venv = ROOTED[kernel_id]
    root = SID_ROOT
    if not os.path.isfile(os.path.join(root, f"usr/bin/python{version}")):
        raise KernelUnavailable(
            f"no Debian sid root with python{version} at {root} "
            "(tools/install_pythons.sh sid builds it; $SPY_MAGIC_PYTHONS moves it)"
        )
    # The venv's bin/python is a symlink that resolves only inside the root.
    if not os.path.isfile(os.path.join(root, venv.lstrip("/"), "pyvenv.cfg")):
        raise KernelUnavailable(f"no venv {venv} in {root} (tools/install_pythons.sh sid makes it)")
    if os.geteuid() != 0:
        raise KernelUnavailable(f"a kernel chrooted into {root} needs root (chroot, mount)")
    try:
        ensure_visible_in_root(root)
    except (OSError, RuntimeError, ValueError) as exc:
        raise KernelUnavailable(f"cannot show {REPO} and the temp dir in {root}: {exc}") from None
    python = f"{venv}/bin/python"
    probe = _probe(python, root=root, pythonpath=str(REPO))
    ipykernel_version = probe.get("ipykernel")
    if _major(ipykernel_version) is None:
        raise KernelUnavailable(f"{python} in {root} has no ipykernel: {probe}")
    missing = [name for name in ("anywidget", "matplotlib") if not probe.get(name)]
    if missing:
        raise KernelUnavailable(f"{python} in {root} lacks {', '.join(missing)}: {probe}")
    if not (probe.get("spy_magic") or "").startswith(str(REPO)):
        raise KernelUnavailable(
            f"{python} in {root} imports spy_magic from {probe.get('spy_magic')}, not {REPO}"
        )
    if not probe["python"].startswith(version + "."):
        raise KernelUnavailable(f"{python} in {root} is Python {probe['python']}, not {version}")
    return KernelInfo(
        _major(ipykernel_version), python, ipykernel_version, f"{root}:{venv}", root=root,
        kernel_id=kernel_id, python_version=probe["python"],
    )  # fmt: skip


_cache: dict[str, KernelInfo | KernelUnavailable] = {}
_cache_lock = threading.Lock()


def kernel_for(which: int | str, log=None) -> KernelInfo:
    """A kernel by id (KERNELS) or ipykernel major version. ipykernel N: this interpreter when
    it has that version, else a cached venv; a ROOTED id: that kernel in its root. Raises
    KernelUnavailable (remembered for the session)."""
    kernel_id = f"ipykernel{which}" if isinstance(which, int) else which
    with _cache_lock:
        if kernel_id not in _cache:
            try:
                if kernel_id in ROOTED:
                    _cache[kernel_id] = rooted_kernel(kernel_id)
                else:
                    match = re.fullmatch(r"ipykernel(\d+)", kernel_id)
                    if not match:
                        raise ValueError(f"no kernel {kernel_id!r}; known: {KERNELS}")
                    _cache[kernel_id] = _find(int(match.group(1)), log)
            except KernelUnavailable as exc:
                _cache[kernel_id] = exc
        found = _cache[kernel_id]
    if isinstance(found, KernelUnavailable):
        raise found
    return found


def _find(major: int, log=None) -> KernelInfo:
    try:
        import ipykernel

        here = ipykernel.__version__
    except ImportError:
        here = None
    if _major(here) == major:
        return KernelInfo(major, sys.executable, here, "this interpreter",
                          python_version=sys.version.split()[0])  # fmt: skip
    return ensure_venv(major, log)


# A kernel in a chroot, started as `sh -c ROOTED_LAUNCHER NAME ROOT PYTHON {connection_file} DIR`.
# jupyter_client writes the connection file into its runtime dir, which the root does not see:
# copy it into DIR (under the bind-mounted temp dir: the same path inside the root), then exec
# chroot, which execs env, which execs the kernel: one pid all along, so the kernel manager's
# interrupts (SIGINT), shutdowns and liveness checks reach the kernel itself. The kernel starts
# in the working directory the front end asked for when the root sees that directory (the same
# device and inode through the bind mount), else in the root's /.
ROOTED_LAUNCHER = """\
root=$1 python=$2 connection=$3 copies=$4
copy="$copies/$(basename "$connection")"
cp "$connection" "$copy" || exit 1
dir=$(pwd)
[ "$(stat -c %d:%i "$dir")" = "$(stat -c %d:%i "$root$dir" 2>/dev/null)" ] || dir=/
exec chroot "$root" /usr/bin/env -C "$dir" "$python" -m ipykernel_launcher -f "$copy"
"""


def write_kernelspec(spec_dir: Path, info: KernelInfo) -> None:
    """kernel.json for `info` under spec_dir/<name>/ (the kernel imports spy_magic from REPO)."""
    target = Path(spec_dir) / info.name
    target.mkdir(parents=True, exist_ok=True)
    env = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}  # quiet debugpy's frozen-modules warning
    if info.source == "this interpreter":  # the venv has the repository installed already
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
        )
    argv = [info.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    if info.root is not None:
        from conftest import ensure_visible_in_root

        copies = target / "connections"
        copies.mkdir(exist_ok=True)
        ensure_visible_in_root(info.root, [REPO, copies])  # a no-op under the temp dir
        venv = os.path.dirname(os.path.dirname(info.python))
        # The host's PATH and venv mean nothing in the root (or worse, half of them resolve).
        env.update(
            PYTHONPATH=str(REPO), VIRTUAL_ENV=venv,
            PATH=f"{venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )  # fmt: skip
        argv = ["/bin/sh", "-c", ROOTED_LAUNCHER, "spy-magic-rooted-kernel", info.root,
                info.python, "{connection_file}", str(copies)]  # fmt: skip
    spec = {
        "argv": argv,
        "display_name": f"spy_magic test ({info.id}: Python {info.python_version or '?'}, "
        f"ipykernel {info.ipykernel_version})",
        "language": "python",
        "interrupt_mode": "signal",
        "env": env,
    }
    (target / "kernel.json").write_text(json.dumps(spec, indent=1))


def kernel_spec_manager(spec_dir: Path):
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager(kernel_dirs=[str(spec_dir)])


# --- running cells -------------------------------------------------------------------------------


class NotebookKernel:
    """A live kernel plus a growing notebook: `run(source)` appends a cell, executes it with
    nbclient and returns it (outputs, execution_count)."""

    def __init__(self, info: KernelInfo, spec_dir: Path, cwd: Path, timeout: float = 120) -> None:
        import nbformat
        from jupyter_client.manager import AsyncKernelManager
        from nbclient import NotebookClient

        self.info = info
        self.nb = nbformat.v4.new_notebook()
        self.nb.metadata["kernelspec"] = {"name": info.name, "display_name": info.name}
        self.km = AsyncKernelManager(
            kernel_name=info.name, kernel_spec_manager=kernel_spec_manager(spec_dir)
        )
        self.client = NotebookClient(
            self.nb, km=self.km, kernel_name=info.name, timeout=int(timeout),
            allow_errors=True, startup_timeout=120,
        )  # fmt: skip
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(self.client.setup_kernel(cwd=str(cwd), cleanup_kc=True))

    def run(self, source: str, *, stop_on_error: bool = False):
        """Execute one cell; its errors are outputs, not exceptions. `stop_on_error` asks the
        kernel to abort requests queued behind it if it fails (as a front end's Run All)."""
        import nbformat
        from nbclient.exceptions import CellExecutionError

        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        self.client.allow_errors = not stop_on_error
        try:
            self.client.execute_cell(cell, len(self.nb.cells) - 1)
        except CellExecutionError:
            pass
        finally:
            self.client.allow_errors = True
        return cell

    def json(self, source: str):
        """Run a cell that prints one JSON document (its last stdout line); return it."""
        cell = self.run(source)
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"cell failed: {errors[0].ename}: {errors[0].evalue}\n{source}"
        out = stdout(cell).strip().splitlines()
        assert out, f"the cell printed nothing; outputs: {cell.outputs}"
        return json.loads(out[-1])

    def interrupt(self) -> None:
        """Interrupt the kernel (SIGINT, as a front end's interrupt button); any thread."""
        result = self.km.interrupt_kernel()
        if inspect.isawaitable(result):
            asyncio.run(_await(result))

    def blocking_client(self):
        """A second, blocking client on the same kernel (shell + iopub)."""
        from jupyter_client import BlockingKernelClient

        kc = BlockingKernelClient()
        kc.load_connection_info(self.km.get_connection_info())
        kc.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
        return kc

    @property
    def widget_state(self) -> dict:
        return self.client.widget_state

    def close(self) -> None:
        self._stack.close()


async def _await(awaitable):
    return await awaitable


def stdout(cell) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def stderr(cell) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


if __name__ == "__main__":  # build the cached venv(s) ahead of time, check the rooted kernels
    status = 0
    for wanted in KERNELS:
        try:
            found = kernel_for(wanted, log=print)
            where = f" in {found.root}" if found.root else ""
            print(f"{wanted}: Python {found.python_version}, ipykernel "
                  f"{found.ipykernel_version} ({found.python}{where})")  # fmt: skip
        except KernelUnavailable as exc:
            print(f"{wanted}: unavailable: {exc}", file=sys.stderr)
            # A venv this script builds must be there; a root is tools/install_pythons.sh's
            # (its tests say so, and fail under $SPY_MAGIC_REQUIRE_KERNELS).
            status = status or int(wanted not in ROOTED)
    sys.exit(status)


# A stand-in for the interpreter a RemoteSession starts its helper with (format it with
# `python`, the real one): it runs the real helper and passes its output on, but cuts the
# finished profile's line in half and ends there, as a helper killed while writing it would.
CUTTING_PYTHON = """\
#!{python}
import subprocess, sys
helper = subprocess.Popen([{python!r}, *sys.argv[1:]], stdout=subprocess.PIPE, text=True)
for line in helper.stdout:
    if line.startswith('{{"type":"profile"'):
        sys.stdout.write(line[: len(line) // 2])
        sys.stdout.flush()
        helper.kill()
        break
    sys.stdout.write(line)
    sys.stdout.flush()
helper.wait()
"""
