"""The tool itself on the newest CPythons, against real processes.

- Installed: in the Debian sid root's venvs (tools/install_pythons.sh makes /opt/venv-3.14 and
  /opt/venv-3.15 there), `pip install -e REPO` works, and so does the README's first command,
  `python -m spy_magic demo`, which must print each function's share of the time.
- Across versions: the tool running under the Python of this test run reads a CPython 3.15
  target in the root, and the tool running under 3.14 in the root reads a host CPython 3.8
  target and a host free-threaded 3.13 one. Every thread's frames must be what the target
  reported of itself (tests/targets/parked.py walks its own frames and prints them).

The root sees the repository and the temp dir at the same paths (conftest's
ensure_visible_in_root); a tool in the root reads host processes through the root's /proc.
Every case skips, naming what is missing, when its interpreter, the root or the venv is not
here, and when pip cannot reach a package index.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    REPO,
    ensure_visible_in_root,
    parked_target,
    require_interpreter,
    target_env,
)

VENVS = {"3.14": "/opt/venv-3.14", "3.15": "/opt/venv-3.15"}  # inside the root
PIP_TIMEOUT_S = 900
RUN_TIMEOUT_S = 180
# Only what the README's demo and the CLI need at run time (pyproject.toml's dependencies).
RUNTIME_MODULES = ("IPython", "ipywidgets", "psutil", "matplotlib", "anywidget")
DEMO_EXPECTED = {"function_a": 62.5, "function_b": 31.25, "function_c": 6.25}
# pip's words for "no package index here" (offline, DNS, proxy, TLS): a precondition, not a bug.
PIP_OFFLINE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Name or service not known|Network is unreachable|ConnectTimeout|ReadTimeout|"
    r"ProxyError|SSLError|No matching distribution found for (setuptools|wheel)",
    re.I,
)


@dataclass(frozen=True)
class RootVenv:
    version: str  # "3.14"
    root: str  # the sid root (a host path)
    venv: str  # the venv, as seen inside the root
    reinstalled: bool = False  # pip ran in this session (False: the marker said it was there)

    @property
    def python(self) -> str:
        return f"{self.venv}/bin/python"

    def host_path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def run(self, *args, cwd: str = "/", env: dict | None = None, timeout=RUN_TIMEOUT_S):
        """`python ARGS` in the venv, chrooted, in `cwd` (a path as the root sees it)."""
        cmd = ["chroot", self.root, "/usr/bin/env", "-C", cwd, self.python, *map(str, args)]
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env or target_env()
        )


def require_root_venv(version: str) -> RootVenv:
    """The sid root's venv for `version`, or skip saying what is missing."""
    interp = require_interpreter(f"sid-{version}")  # the root's python; mounts REPO and tmp
    if os.geteuid() != 0:
        pytest.skip(f"running Python {version} chrooted into {interp.root} needs root")
    found = RootVenv(version, interp.root, VENVS[version])
    # bin/python is a symlink that resolves only inside the root: look for pyvenv.cfg.
    if not os.path.isfile(found.host_path(f"{found.venv}/pyvenv.cfg")):
        pytest.skip(f"no venv {found.venv} in {found.root} (tools/install_pythons.sh sid makes it)")
    return found


# --- pip install -e REPO, then the README's demo ------------------------------------------------

PROBE = """\
import importlib.util, json, sys
out = {"python": sys.version.split()[0], "modules": {}}
for name in sys.argv[1:]:
    spec = importlib.util.find_spec(name)
    out["modules"][name] = spec.origin if spec else None
try:
    from importlib.metadata import distribution
    out["direct_url"] = json.loads(distribution("spy-magic").read_text("direct_url.json") or "{}")
except Exception as exc:
    out["direct_url"] = repr(exc)
print(json.dumps(out))
"""


def _probe_install(venv: RootVenv) -> dict:
    """Where the venv imports spy_magic and its dependencies from, without PYTHONPATH."""
    out = venv.run("-c", PROBE, "spy_magic", *RUNTIME_MODULES, timeout=120)
    assert out.returncode == 0, f"{venv.python} in {venv.root}: {out.stderr[-2000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def _installed_problems(probe: dict) -> list[str]:
    """Why `probe` is not an editable install of this repository with its dependencies."""
    problems = []
    origin = probe["modules"].get("spy_magic") or ""
    if not origin.startswith(f"{REPO}/"):
        problems.append(f"spy_magic imports from {origin or 'nowhere'}, not {REPO}")
    direct = probe.get("direct_url")
    if not isinstance(direct, dict) or not direct.get("dir_info", {}).get("editable"):
        problems.append(f"spy-magic is not an editable install: direct_url {direct!r}")
    elif direct.get("url") != REPO.as_uri():
        problems.append(f"the editable install is of {direct.get('url')}, not {REPO.as_uri()}")
    problems += [f"no module {m}" for m in RUNTIME_MODULES if not probe["modules"].get(m)]
    return problems


def _pip_env(venv: RootVenv) -> dict:
    """Ours, less PIP_* settings naming a path the root does not have (the host's wheels)."""
    env = target_env(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    for key, value in list(env.items()):
        paths = value.split() if key.startswith("PIP_") and value.startswith("/") else []
        if not all(os.path.exists(venv.host_path(p)) for p in paths):
            del env[key]
    return env


@pytest.fixture(scope="module", params=sorted(VENVS), ids=lambda v: f"venv-{v}")
def installed(request) -> RootVenv:
    """The root's venv with `pip install -e REPO` done: skipped when it is done already for this
    repository path and pyproject.toml (a marker in the venv, checked against the venv itself)."""
    venv = require_root_venv(request.param)
    marker = Path(venv.host_path(f"{venv.venv}/spy_magic-editable.json"))
    wanted = {
        "repo": str(REPO),
        "pyproject_sha256": hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest(),
    }
    with open(marker.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may be installing it
        with contextlib.suppress(OSError, ValueError):
            if json.loads(marker.read_text()) == wanted and not _installed_problems(
                _probe_install(venv)
            ):
                return venv
        marker.unlink(missing_ok=True)
        cmd = ("-m", "pip", "install", "-q", "-e", str(REPO))
        try:
            out = venv.run(*cmd, env=_pip_env(venv), timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.skip(f"pip install -e {REPO} in {venv.root} took over {PIP_TIMEOUT_S} s")
        text = out.stderr + out.stdout
        if out.returncode != 0 and PIP_OFFLINE.search(text):
            pytest.skip(f"pip in {venv.root} reaches no package index: {text.strip()[-600:]}")
        assert out.returncode == 0, (
            f"chroot {venv.root} {venv.python} {' '.join(cmd)} failed:\n{text[-3000:]}"
        )
        marker.write_text(json.dumps(wanted, indent=1))
    return RootVenv(venv.version, venv.root, venv.venv, reinstalled=True)


def test_pip_install_editable_works(installed):
    probe = _probe_install(installed)
    assert probe["python"].startswith(installed.version + "."), probe
    assert _installed_problems(probe) == [], probe
    show = installed.run("-m", "pip", "show", "spy-magic", env=_pip_env(installed))
    assert show.returncode == 0, show.stderr
    assert f"Editable project location: {REPO}" in show.stdout, show.stdout


def test_readme_demo_prints_the_shares(installed, tmp_path):
    # `python -m spy_magic demo` verbatim, in an empty directory, from the installed package
    # (no PYTHONPATH): it writes spy_magic-demo.html there.
    ensure_visible_in_root(installed.root, [tmp_path])  # a no-op under the temp dir
    out = installed.run("-m", "spy_magic", "demo", cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    header = re.search(r"^(\d+) samples in ([\d.]+) s \(asked 100 Hz", text, re.M)
    assert header, text
    assert int(header.group(1)) >= 50, text
    row = re.compile(r"^(function_[abc])\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", re.M)
    rows = {name: tuple(map(float, shares)) for name, *shares in row.findall(text)}
    assert set(rows) == set(DEMO_EXPECTED), text
    assert {name: designed for name, (_s, _t, designed) in rows.items()} == DEMO_EXPECTED, text
    samples = int(header.group(1))
    for name, (sampled, timed, _designed) in rows.items():
        # Each sample falls at a Poisson instant, so its function is a draw with the odds of
        # the time the script really spent there (its own clock: a loaded machine stretches
        # sleeps). 5 binomial sigmas: one run in millions strays that far by chance.
        p = timed / 100
        sigma = 100 * math.sqrt(p * (1 - p) / samples)
        assert abs(sampled - timed) <= 5 * sigma + 1, (name, sampled, timed, text)
    page = tmp_path / "spy_magic-demo.html"
    assert f"flame graph: {page}" in text, text
    assert page.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")


# --- across versions: the tool under one CPython reads a target under another --------------------

# (the tool's interpreter: "host" is the one running the tests, else a root venv's version;
#  the target's interpreter id in conftest.SUPPORTED)
CROSS = [
    pytest.param("host", "sid-3.15", id="host-reads-sid-3.15"),
    pytest.param("3.14", "pyenv-3.8", id="sid-3.14-reads-pyenv-3.8"),
    pytest.param("3.14", "ft-3.13t", id="sid-3.14-reads-ft-3.13t"),
]


def _dump_json(tool: str, pid: int) -> tuple[list, str]:
    """`python -m spy_magic dump --pid PID --json` under `tool`: (threads, the command)."""
    args = ("-m", "spy_magic", "dump", "--pid", str(pid), "--json")
    env = target_env(PYTHONPATH=str(REPO))  # the repository's spy_magic, installed or not
    if tool == "host":
        cmd = [sys.executable, *args]
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, cwd=REPO
        )
    else:
        venv = require_root_venv(tool)
        cmd = ["chroot", venv.root, venv.python, *args]
        out = venv.run(*args, env=env)
    shown = " ".join(cmd)
    assert out.returncode == 0, f"{shown}: {out.stderr[-3000:]}"
    return json.loads(out.stdout), shown


@pytest.mark.parametrize(("tool", "target"), CROSS)
def test_dump_across_versions(tool, target):
    target_interp = require_interpreter(target)
    if tool != "host":
        require_root_venv(tool)  # skip before starting the target
    with parked_target(target_interp) as (proc, view):
        dumped, cmd = _dump_json(tool, proc.pid)
    assert isinstance(dumped, list) and dumped, (cmd, dumped)
    expected = {
        t["thread_id"]: {**t, "pid": view["pid"], "gil": False, "idle": True}
        for t in view["threads"]
    }
    got = {t["thread_id"]: t for t in dumped}
    assert set(got) == set(expected), (cmd, sorted(got), sorted(expected))
    problems = []
    for ident, exp in expected.items():
        have = got[ident]
        if have == exp:
            continue
        who = f"thread {exp['name']!r} ({ident:#x})"
        fields = [k for k in exp if k != "frames" and have.get(k) != exp[k]]
        if fields:
            differ = ", ".join(f"{k} {have.get(k)!r} != {exp[k]!r}" for k in fields)
            problems.append(f"{who}: {differ}")
        if have["frames"] != exp["frames"]:
            pairs = list(zip([*have["frames"], None], exp["frames"]))
            first = next((i for i, (a, b) in enumerate(pairs) if a != b), len(exp["frames"]))
            problems.append(
                f"{who}: {len(have['frames'])} frames, expected {len(exp['frames'])}; first "
                f"difference at #{first}: {have['frames'][first : first + 1]} != "
                f"{exp['frames'][first : first + 1]}"
            )
    assert not problems, f"{cmd} under {target_interp.id}:\n" + "\n".join(problems)
