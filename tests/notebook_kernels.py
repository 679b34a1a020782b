"""Real Jupyter kernels for the notebook tests: one per ipykernel major version.

- ipykernel 7: the Python running the tests, when its ipykernel is 7.x.
- ipykernel 6 (or 7 when the running Python has no 7.x): a venv cached under `.ci/`
  (`.ci/venv-ipykernel6`, or $SPY_MAGIC_IPYKERNEL6_VENV), built on first use with
  `pip install "ipykernel>=6,<7" anywidget -e REPO` and rebuilt when the repository path,
  pyproject.toml or the base Python changes. A file lock keeps concurrent test sessions from
  building it twice.

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
PIP_TIMEOUT_S = 900
# The notebook front imports anywidget, which pyproject.toml does not list (yet).
EXTRA_PACKAGES = ("anywidget",)
REQUIRE_ENV = "SPY_MAGIC_REQUIRE_KERNELS"


class KernelUnavailable(Exception):
    """No kernel of that ipykernel version can be had here; the message says why."""


@dataclass(frozen=True)
class KernelInfo:
    major: int  # ipykernel major version
    python: str  # the kernel's interpreter
    ipykernel_version: str
    source: str  # "this interpreter" or the venv path

    @property
    def name(self) -> str:
        return f"spy-magic-ipykernel{self.major}"

    @property
    def id(self) -> str:
        return f"ipykernel{self.major}"


def _probe(python: str) -> dict:
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
    proc = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd="/"
    )
    if proc.returncode != 0:
        raise KernelUnavailable(f"{python} failed to start: {proc.stderr.strip()[-500:]}")
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
    return KernelInfo(major, str(python), version, str(directory))


_cache: dict[int, KernelInfo | KernelUnavailable] = {}
_cache_lock = threading.Lock()


def kernel_for(major: int, log=None) -> KernelInfo:
    """A kernel with ipykernel `major`.x: this interpreter when it has that version, else a
    cached venv. Raises KernelUnavailable (remembered for the session)."""
    with _cache_lock:
        if major not in _cache:
            try:
                _cache[major] = _find(major, log)
            except KernelUnavailable as exc:
                _cache[major] = exc
        found = _cache[major]
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
        return KernelInfo(major, sys.executable, here, "this interpreter")
    return ensure_venv(major, log)


def write_kernelspec(spec_dir: Path, info: KernelInfo) -> None:
    """kernel.json for `info` under spec_dir/<name>/ (the kernel imports spy_magic from REPO)."""
    target = Path(spec_dir) / info.name
    target.mkdir(parents=True, exist_ok=True)
    env = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}  # quiet debugpy's frozen-modules warning
    if info.source == "this interpreter":  # the venv has the repository installed already
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
        )
    spec = {
        "argv": [info.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"spy_magic test (ipykernel {info.ipykernel_version})",
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


if __name__ == "__main__":  # build the cached venv(s) ahead of time
    status = 0
    for wanted_major in MAJORS:
        try:
            found = kernel_for(wanted_major, log=print)
            print(f"ipykernel{wanted_major}: {found.ipykernel_version} ({found.python})")
        except KernelUnavailable as exc:
            print(f"ipykernel{wanted_major}: unavailable: {exc}", file=sys.stderr)
            status = 1
    sys.exit(status)
