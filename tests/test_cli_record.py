"""`python -m spy_magic record` and `top`, run as a user would, against real processes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import TARGETS, read_line, reaped_pid, require_churn

from spy_magic.demos import demo_path
from spy_magic.profile.exports import read_jsonl

PYTHON = sys.executable
SPY = [PYTHON, "-m", "spy_magic"]
COLLAPSED_LINE = re.compile(r"^(?:[^;\n]+;)*[^;\n]+ \d+$")


def run(args, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SPY, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def test_record_a_command_to_collapsed(tmp_path):
    # function_c sleeps 10 ms a loop: at 500 Hz over 3 loops it is due ~15 samples, so
    # missing it is a bug, not bad luck (at 100 Hz it was due 3, and missed 1 run in ~20).
    out = tmp_path / "profile.txt"
    result = run(["record", "-f", "collapsed", "-o", out, "--rate", "500", "--", PYTHON,
                  demo_path("slow_script"), "--repeat", "3"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines and all(COLLAPSED_LINE.match(line) for line in lines), lines[:3]
    assert any("function_c (" in line for line in lines)
    assert "samples in" in result.stderr and "lateness:" in result.stderr
    assert "p99" in result.stderr and str(out) in result.stderr


@pytest.mark.parametrize("fmt", ["speedscope", "chrometrace", "jsonl", "html"])
def test_every_format_is_written(fmt, tmp_path):
    out = tmp_path / f"profile.{fmt}"
    result = run(["record", "-f", fmt, "-o", out, "--threads", "--", PYTHON,
                  demo_path("slow_script"), "--repeat", "2"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    if fmt in ("speedscope", "chrometrace"):
        json.loads(text)
    elif fmt == "jsonl":
        profile = read_jsonl(out)
        assert profile.sample_count > 10
        assert profile.metadata["rate"] == 100
    else:
        assert text.startswith("<!DOCTYPE html>") and "function_a" in text
        # Offline: nothing is loaded from anywhere (the SVG namespace URI is not a load).
        assert not re.search(r"""(src|href)\s*=\s*["']?https?:|url\(\s*["']?https?:""", text)


def test_record_by_pid_for_a_wall_clock_duration(spawn, tmp_path):
    proc = spawn([PYTHON, demo_path("slow_script"), "--repeat", "100"])
    out = tmp_path / "p.jsonl"
    started = time.monotonic()
    result = run(["record", "--pid", proc.pid, "--duration", "1", "-f", "jsonl", "-o", out])
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 8
    profile = read_jsonl(out)
    assert 0.7 < profile.duration < 1.2
    assert proc.poll() is None  # recording leaves the target running


def test_interrupt_writes_what_was_recorded(spawn, tmp_path):
    proc = spawn([PYTHON, demo_path("slow_script"), "--repeat", "100"])
    out = tmp_path / "p.txt"
    rec = subprocess.Popen(
        [*SPY, "record", "--pid", str(proc.pid), "-f", "collapsed", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    # Interrupted once it samples (said when the first sample is in), not after a fixed time
    # a loaded machine may spend starting up; then ~50 samples in, function_a is among them.
    while not read_line(rec).startswith("spy_magic: sampling pid"):
        pass
    time.sleep(0.5)
    rec.send_signal(signal.SIGINT)
    err, _ = rec.communicate(timeout=30)
    err = getattr(rec, "_line_buffer", b"").decode() + err.decode()
    assert rec.returncode == 0, err
    assert out.exists() and "function_a" in out.read_text()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["record"], 2, "give either --pid PID or -- COMMAND"),
        (["record", "--pid", "1", "--", "python"], 2, "give either"),
        (["record", "--rate", "-3", "--", "python"], 2, "must be a positive number"),
        (["record", "--duration", "abc", "--", "python"], 2, "not a number"),
        (["record", "--format", "svg", "--", "python"], 2, "invalid choice"),
        (["record", "--", "/no/such/program"], 1, "cannot run /no/such/program"),
    ],
)
def test_bad_arguments_give_one_line_errors(args, code, message):
    result = run(args, timeout=60)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_record_a_pid_that_is_not_python(spawn):
    proc = spawn(["sleep", "30"])
    result = run(["record", "--pid", proc.pid, "--start-timeout", "0.3", "-f", "collapsed",
                  "-o", "/dev/null"])  # fmt: skip
    assert result.returncode == 1
    assert "not running CPython" in result.stderr and "Traceback" not in result.stderr


def test_record_a_dead_pid():
    pid = reaped_pid()
    result = run(["record", "--pid", pid, "-f", "collapsed", "-o", "/dev/null"])
    assert result.returncode == 1
    assert f"no process with pid {pid}" in result.stderr


def test_top_shows_a_live_table(spawn):
    proc = spawn([PYTHON, demo_path("cpu_split"), "--repeat", "1000"])
    top = subprocess.Popen([*SPY, "top", "--pid", str(proc.pid)], stdout=subprocess.PIPE, text=True)
    first = read_line(top, timeout=30)
    assert first.startswith("spy_magic top")
    time.sleep(2.5)
    top.send_signal(signal.SIGINT)
    out, _ = top.communicate(timeout=30)
    out = top._line_buffer.decode() + out  # what read_line had buffered past the first line
    assert top.returncode == 0
    assert "%Own" in out and "function_x" in out
    assert out.count("spy_magic top") >= 1  # it refreshed after the first table


@pytest.mark.parametrize("nonblocking", [False, True], ids=["default", "nonblocking"])
def test_record_says_when_it_paused_the_target(spawn, tmp_path, nonblocking):
    """Fast recursion tears every non-blocking read: the summary says the target was paused
    for those (default), or how many were dropped (--nonblocking)."""
    out = tmp_path / "churn.jsonl"
    flags = ["--nonblocking"] if nonblocking else []
    proc = spawn([PYTHON, TARGETS / "churn.py"])
    assert read_line(proc) == "ready"
    result = run(["record", *flags, "--pid", proc.pid, "-r", "300", "-d", "1", "-f", "jsonl",
                  "-o", out])  # fmt: skip
    assert result.returncode == 0, result.stderr
    profile = read_jsonl(out)
    torn = profile.error_counts().get("TornStack", 0)
    require_churn(torn > 0 or bool(profile.metadata.get("paused_reads")))
    if nonblocking:
        assert "paused the target" not in result.stderr
        assert torn > 0 and f"TornStack: {torn}" in result.stderr
        assert profile.metadata["nonblocking"] is True
    else:
        assert re.search(r"paused the target for \d+ reads", result.stderr), result.stderr
        assert torn <= profile.sample_count // 50
        assert profile.metadata["paused_reads"] > 0


def test_duration_writes_the_profile_without_waiting_for_the_command(tmp_path):
    out = tmp_path / "early.txt"
    started = time.monotonic()
    proc = subprocess.Popen(
        [*SPY, "record", "-d", "1", "-f", "collapsed", "-o", str(out), "--", PYTHON, "-c",
         "import time\nwhile True: time.sleep(0.01)"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while not out.exists() and time.monotonic() - started < 30:
            time.sleep(0.05)
        assert out.exists(), "no profile while the command still runs"
        assert proc.poll() is None, "record should still be seeing its command through"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "waiting for the command to exit" in stderr
    assert out.read_text().strip(), "empty profile"


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("profile.txt", lambda p: all(COLLAPSED_LINE.match(x) for x in p.read_text().splitlines())),
        ("profile.collapsed", lambda p: COLLAPSED_LINE.match(p.read_text().splitlines()[0])),
        ("profile.speedscope.json", lambda p: "$schema" in json.loads(p.read_text())),
        ("profile.pstats", lambda p: __import__("pstats").Stats(str(p)).total_calls > 0),
        ("profile.heatmap.html", lambda p: "heat" in p.read_text().lower()),
        ("profile.html", lambda p: p.read_text().startswith("<!DOCTYPE html>")),
    ],
)
def test_output_suffix_picks_the_format_when_f_is_not_given(name, check, tmp_path):
    out = tmp_path / name
    result = run(["record", "-o", out, "--rate", "200", "--", PYTHON, demo_path("slow_script"),
                  "--repeat", "1"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert check(out), out.read_text()[:200]


def test_ambiguous_or_unknown_output_suffix(tmp_path):
    # .json could be speedscope, chrometrace or gecko: refused before anything runs.
    marker = tmp_path / "ran"
    result = run(["record", "-o", tmp_path / "p.json", "--", PYTHON, "-c",
                  f"open({str(marker)!r}, 'w')"])  # fmt: skip
    assert result.returncode == 2
    assert "-f" in result.stderr and "speedscope" in result.stderr
    assert not marker.exists() and not (tmp_path / "p.json").exists()
    # An extension no format writes: html, and a note saying so; -f still wins over -o.
    result = run(["record", "-o", tmp_path / "p.svg", "--", PYTHON, demo_path("slow_script"),
                  "--repeat", "1"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no format writes that extension" in result.stderr
    assert (tmp_path / "p.svg").read_text().startswith("<!DOCTYPE html>")
    result = run(["record", "-f", "collapsed", "-o", tmp_path / "p.html", "--", PYTHON,
                  demo_path("slow_script"), "--repeat", "1"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert COLLAPSED_LINE.match((tmp_path / "p.html").read_text().splitlines()[0])
