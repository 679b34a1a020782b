"""Fault matrix for the data a user gets out: names that are not text, profiles that are not
profiles, forked and nested notebook cells.

case → what is promised
- a target whose script, thread name and a mapped file hold byte 0xFF; `dump` under
  PYTHONIOENCODING=utf-8, LC_ALL=C.UTF-8, LC_ALL=C → exit 0 and valid UTF-8: text shows
  U+FFFD for the byte, `--json` is ASCII with `\\udcff` (json.loads gives Python's own name)
- that profile as collapsed, speedscope, chrometrace, html, jsonl; `top`, the notebook's
  text view → valid UTF-8 every time: JSON carries `\\udcff`, text U+FFFD; jsonl reads back
  the exact file, thread and command names
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, read_line, require_interpreter, target_env

from spy_magic.engine import Sampler
from spy_magic.profile import Profile
from spy_magic.profile.exports import FORMATS, read_jsonl, write

# The oldest walker (3.8: PyFrameObject, 2-byte str kinds read through `surrogatepass`) and
# the newest standard build on the host.
NAME_INTERPRETERS = ["pyenv-3.8", "pyenv-3.12"]

# Runs at a path holding 0xFF; maps a file whose name holds 0xFF (so /proc/PID/maps does);
# names its main thread with a lone surrogate and its function with a non-ASCII letter, and
# sleeps in that function.
NON_UTF8_TARGET = """\
import mmap, os, sys, threading, time
here = os.path.dirname(os.fsencode(os.path.abspath(__file__)))
blob = os.path.join(here, b"mapped\\xff.bin")
with open(blob, "wb") as f:
    f.write(b"\\0" * 4096)
mapped_file = open(blob, "rb")
mapped = mmap.mmap(mapped_file.fileno(), 4096, access=mmap.ACCESS_READ)
threading.current_thread().name = "main\\udcffthread"
def park\u00e9():
    sys.stdout.write("ready\\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)  # C: parké is the innermost Python frame
park\u00e9()
"""
STDOUT_ENVS = {
    "PYTHONIOENCODING=utf-8": {"PYTHONIOENCODING": "utf-8"},
    "LC_ALL=C.UTF-8": {"LC_ALL": "C.UTF-8"},
    "LC_ALL=C": {"LC_ALL": "C"},
}


@pytest.fixture(scope="module", params=NAME_INTERPRETERS)
def non_utf8_target(request, tmp_path_factory, spawn_module):
    """(process, script path as Python holds it): parked in `parké` at a 0xFF path."""
    interp = require_interpreter(request.param)
    folder = os.path.join(os.fsencode(tmp_path_factory.mktemp("names")), b"dir\xff")
    os.mkdir(folder)
    script = os.path.join(folder, b"scr\xffipt.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write(NON_UTF8_TARGET)
    proc = spawn_module([interp.path, os.fsdecode(script)])
    assert read_line(proc) == "ready"
    return proc, os.fsdecode(script)


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    environment = target_env(PYTHONPATH=str(REPO))
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "spy_magic", *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        timeout=120,
    )


def shown(text: str) -> str:
    """A name as text output shows it: each undecodable byte as U+FFFD."""
    return text.replace("\udcff", "\ufffd")


@pytest.mark.parametrize("env", list(STDOUT_ENVS))
def test_dump_text_of_non_utf8_names_is_utf8_with_replacement_characters(non_utf8_target, env):
    proc, script = non_utf8_target
    out = run_cli("dump", "--pid", str(proc.pid), env=STDOUT_ENVS[env])
    assert out.returncode == 0, out.stderr.decode("utf-8", "replace")
    text = out.stdout.decode("utf-8")  # strict: raw 0xFF bytes would fail here
    assert f"park\u00e9 ({shown(script)}:" in text, text
    assert '"main\ufffdthread"' in text, text
    assert shown(os.path.basename(script)) in text.splitlines()[0]  # the command line


@pytest.mark.parametrize("env", list(STDOUT_ENVS))
def test_dump_json_of_non_utf8_names_is_ascii_and_gives_the_names_back(non_utf8_target, env):
    proc, script = non_utf8_target
    out = run_cli("dump", "--pid", str(proc.pid), "--json", env=STDOUT_ENVS[env])
    assert out.returncode == 0, out.stderr.decode("utf-8", "replace")
    raw = out.stdout.decode("ascii")
    assert "\\udcff" in raw
    (main,) = [t for t in json.loads(raw) if t["name"] == "main\udcffthread"]
    assert main["frames"][0]["name"] == "park\u00e9"
    assert main["frames"][0]["filename"] == script


def recorded_profile(pid: int, script: str) -> Profile:
    """Samples of the target until one shows its parked frame (however slow the machine)."""
    profile = Profile({"target": f"python {script}", "command": ["python", script]})
    sampler = Sampler(pid, rate=200, subprocesses=False)
    for sample in sampler:
        profile.add(sample)
        if any(f.filename == script for t in sample.traces for f in t.frames):
            sampler.stop()
    assert sampler.error is None, sampler.error
    return profile


JSON_FORMATS = ["speedscope", "chrometrace"]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_writes_non_utf8_names_as_valid_utf8(non_utf8_target, fmt, tmp_path):
    proc, script = non_utf8_target
    profile = recorded_profile(proc.pid, script)
    path = tmp_path / f"out.{fmt}"
    write(profile, path, fmt)
    data = path.read_bytes().decode("utf-8")  # strict
    FORMATS[fmt](profile).encode("utf-8")  # the str itself is writable anywhere, too
    if fmt in JSON_FORMATS:
        assert "\\udcff" in data and data.isascii()
        assert script in json.dumps(json.loads(data), ensure_ascii=False)
    elif fmt == "collapsed":
        assert f"park\u00e9 ({shown(script)}:" in data, data
    elif fmt == "html":
        assert "\\udcff" in data  # the flame tree's JSON
        assert f"<title>python {shown(script)}</title>" in data
    else:  # jsonl: lossless
        assert data.isascii()
        back = read_jsonl(path)
        frames = {f for _, _, t in back.iter_traces() for f in t.frames}
        assert any(f.filename == script and f.name == "park\u00e9" for f in frames)
        threads = {t.thread_name for _, _, t in back.iter_traces()}
        assert "main\udcffthread" in threads
        commands = {p.command for _, _, t in back.iter_traces() for p in t.processes}
        assert any("\udcff" in c for c in commands), commands
        assert back.metadata["target"] == f"python {script}"


def test_live_views_show_non_utf8_names_as_replacement_characters(non_utf8_target):
    """`top`'s table and the notebook's text/plain view: text, so U+FFFD, never a surrogate."""
    from spy_magic.cli.top import TopCounts, render
    from spy_magic.notebook.views import top_text

    proc, script = non_utf8_target
    profile = recorded_profile(proc.pid, script)
    counts = TopCounts()
    for sample in profile.samples:
        counts.add(sample)
    table = render(counts, Sampler(proc.pid), 1.0, 400, 60)
    table.encode("utf-8")
    assert "park\u00e9 (dir\ufffd/scr\ufffdipt.py:" in table, table
    plain = top_text(profile)
    plain.encode("utf-8")
    assert f"park\u00e9 ({shown(script)})" in plain, plain
