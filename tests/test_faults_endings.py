"""Fault matrix: how a recording ends. Each case -> what is promised.

| case                                              | promised                                  |
|---------------------------------------------------|-------------------------------------------|
| 1e12 stale deadlines (rate 1e9, 1000 s behind)    | skipped in a few random draws, counted    |
| stop set, or end passed, during such a backlog    | `wait()` returns None, no tick past end   |
| rate 0, < 0, NaN, ±inf (timer, Sampler, CLI,     | refused, saying why                       |
|     %%spy)                                        |                                           |
| Sampler(rate above MAX_RATE)                      | ValueError naming the maximum             |
| `record` / `%%spy` --rate above MAX_RATE          | one line: sampling at MAX_RATE; it does   |
| `record -d 1 --rate 1e9`                          | ends after its duration, profile written  |
| `record --rate 1e9`, then SIGINT                  | stops, writes what it collected           |
| -o: missing folder, directory, under a file,      | exit 2, one line, nothing launched,       |
|     immutable folder or file                      | nothing written                           |
| -o folder removed while recording a command       | fallback file named, exit 1, command      |
|                                                   | seen through (not orphaned)               |
| `%%spy -o DIR` (a directory)                      | UsageError before the cell runs           |
| `%%spy -o` folder removed by the cell             | value, flame graph kept; fallback named   |
| SIGTERM / SIGHUP to `record --pid`                | writes what it collected, as SIGINT; 0    |
| SIGTERM to `record -- cmd`                        | passed on; profile written; exit 128+15   |
| ... whose cmd shuts down cleanly on it            | sent once; the cmd's status (0) kept      |
| ... whose cmd ignores SIGTERM                     | cmd killed after the grace; exit 128+9    |
| SIGTERM to `top`                                  | ends cleanly, exit 0, no traceback        |
| `record -- cmd`; cmd exits 3 / dies of signal N   | exit 3 / 128+N, as time(1)                |

Waits on processes are generous timeouts for a hang, never timing assertions; a signal is
sent only once record says it is sampling ("spy_magic: sampling pid ..."), so it lands in
the sampling loop however slow the machine is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import read_line

from spy_magic.cli.options import clamp_rate
from spy_magic.engine import MAX_RATE, PoissonTimer, Sampler
from spy_magic.profile.exports import read_jsonl

PYTHON = sys.executable
SPY = [PYTHON, "-m", "spy_magic"]
HANG_S = 120  # a process not done by then is hung (a loaded machine is slow, not this slow)
# A Python target that sleeps in small steps until killed.
SLEEPER = "import time\nwhile True:\n    time.sleep(0.01)\n"


def run(args, timeout=HANG_S, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SPY, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def start_record(spawn, args) -> subprocess.Popen:
    """`record ARGS` with its stderr (and a command's stdout) on one pipe, returned once it
    says it is sampling."""
    proc = spawn([*SPY, *map(str, args)], stderr=subprocess.STDOUT)
    lines = []
    while True:
        line = read_line(proc, timeout=HANG_S)
        lines.append(line)
        if line.startswith("spy_magic: sampling pid"):
            proc.seen = lines
            return proc
        assert len(lines) < 50, lines


def finish(proc: subprocess.Popen) -> str:
    """Everything the process wrote after `start_record`, once it exited."""
    out, _ = proc.communicate(timeout=HANG_S)
    return "\n".join(proc.seen) + "\n" + proc._line_buffer.decode() + out.decode()


class CountingTimer(PoissonTimer):
    """A timer that fails the test on its 1000th gap: skipping must not draw one per
    deadline (a backlog of 1e12 would take hours, and the test would hang instead)."""

    gaps = 0

    def next_gap(self) -> float:
        self.gaps += 1
        assert self.gaps < 1000, "stale deadlines skipped one random draw at a time"
        return super().next_gap()


# --- the timer -----------------------------------------------------------------------------------


def test_huge_backlog_is_skipped_in_a_few_draws_and_counted():
    now = [0.0]
    timer = CountingTimer(1e9, seed=2, clock=lambda: now[0])
    now[0] = 1000.0  # a sample that took 1000 s: ~1e12 deadlines went by
    tick = timer.wait()
    assert tick is not None and 0 <= tick.late <= 10 / 1e9
    assert abs(tick.skipped - 1e12) < 5 * 1e6  # Poisson: sigma = sqrt(1e12)
    assert timer.gaps <= 3


@pytest.mark.parametrize("rate", [50.0, 1e6])
def test_skipped_count_follows_the_backlog(rate):
    now = [0.0]
    timer = CountingTimer(rate, seed=4, clock=lambda: now[0])
    now[0] = 2.0
    tick = timer.wait()
    expected = rate * (2.0 - 10 / rate)  # every deadline up to the stale horizon
    assert abs(tick.skipped - expected) < 5 * expected**0.5 + 2, (tick.skipped, expected)


def test_stop_set_during_a_huge_backlog_returns():
    now = [0.0]
    stop = threading.Event()
    timer = CountingTimer(1e9, seed=3, clock=lambda: now[0], stop_event=stop)
    now[0] = 1000.0
    stop.set()
    assert timer.wait() is None


def test_end_passed_during_a_huge_backlog_returns_no_tick_past_it():
    now = [0.0]
    timer = CountingTimer(1e9, seed=3, clock=lambda: now[0])
    now[0] = 1000.0
    assert timer.wait(end=500.0) is None


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), float("-inf")])
def test_rate_that_is_not_a_positive_finite_number_is_refused(bad, spawn):
    with pytest.raises(ValueError, match="positive, finite"):
        PoissonTimer(bad)
    with pytest.raises(ValueError, match="positive, finite"):
        Sampler(os.getpid(), rate=bad)
    result = run(["record", f"--rate={bad}", "--", PYTHON, "-c", "pass"], timeout=60)
    assert result.returncode == 2 and "must be a positive number" in result.stderr
    assert "Traceback" not in result.stderr


def test_sampler_rate_above_the_maximum_is_refused_naming_it():
    with pytest.raises(ValueError, match=f"{MAX_RATE:g} Hz"):
        Sampler(os.getpid(), rate=1e9)


# --- record at a rate far above the maximum ------------------------------------------------------


def test_rate_far_above_max_is_clamped_and_ends(tmp_path):
    out = tmp_path / "fast.jsonl"
    result = run(["record", "-d", "1", "--rate", "1e9", "-f", "jsonl", "-o", out, "--",
                  PYTHON, "-c", "import time\nfor _ in range(200): time.sleep(0.01)"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"spy_magic: {clamp_rate(1e9)[1]}" in result.stderr
    profile = read_jsonl(out)
    assert profile.metadata["rate"] == MAX_RATE and profile.sample_count > 0
    assert profile.metadata["end_reason"] in ("duration", "target exited")


def test_rate_far_above_max_stops_on_sigint(spawn, tmp_path):
    target = spawn([PYTHON, "-c", SLEEPER])
    out = tmp_path / "fast.jsonl"
    rec = start_record(spawn, ["record", "--rate", "1e9", "--pid", target.pid, "-f", "jsonl",
                               "-o", out])  # fmt: skip
    rec.send_signal(signal.SIGINT)
    text = finish(rec)
    assert rec.returncode == 0, text
    assert read_jsonl(out).sample_count > 0
    assert target.poll() is None  # recording by pid leaves the target running


# --- a bad -o ------------------------------------------------------------------------------------


@contextlib.contextmanager
def immutable(path: Path):
    """`path` with the immutable attribute (root ignores permissions, not that)."""
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not possible here (no CAP_LINUX_IMMUTABLE, or no chattr)")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing-folder", "no folder"),
        ("a-directory", "it is a directory"),
        ("under-a-file", "Not a directory"),
        ("immutable-folder", "Operation not permitted"),
        ("immutable-file", "Operation not permitted"),
    ],
)
def test_bad_output_is_refused_before_anything_runs(kind, message, tmp_path):
    ran = tmp_path / "the-command-ran"
    folder = tmp_path / "out"
    folder.mkdir()
    (tmp_path / "file").write_text("x")
    output = {
        "missing-folder": tmp_path / "no" / "such" / "p.html",
        "a-directory": folder,
        "under-a-file": tmp_path / "file" / "p.html",
        "immutable-folder": folder / "p.html",
        "immutable-file": tmp_path / "file",
    }[kind]
    locked = {"immutable-folder": folder, "immutable-file": tmp_path / "file"}.get(kind)
    command = ["--", PYTHON, "-c", f"open({str(ran)!r}, 'w')"]
    with immutable(locked) if locked else contextlib.nullcontext():
        result = run(["record", "-o", output, *command], timeout=60)
        assert sorted(p.name for p in folder.iterdir()) == []
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"spy_magic: error: cannot write -o {output}")
    assert message in lines[0], lines
    assert not ran.exists(), "the command was launched"
    assert (tmp_path / "file").read_text() == "x"


def test_output_folder_removed_while_recording_goes_to_a_fallback(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    done = tmp_path / "command-done"
    # The command removes the folder, then outlives the 1 s recording: record must write
    # elsewhere and still see it through.
    script = (
        f"import os, time\nos.rmdir({str(folder)!r})\nfor _ in range(200): time.sleep(0.01)\n"
        f"open({str(done)!r}, 'w')\n"
    )
    result = run(["record", "-d", "1", "-f", "jsonl", "-o", folder / "p.jsonl", "--",
                  PYTHON, "-c", script])  # fmt: skip
    assert done.exists(), "record exited before its command: left running, orphaned"
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = next(x for x in result.stderr.splitlines() if "could not write" in x)
    fallback = Path(line.rsplit(" to ", 1)[1].removesuffix(" instead"))
    try:
        assert str(folder / "p.jsonl") in line
        assert read_jsonl(fallback).sample_count > 0
    finally:
        fallback.unlink(missing_ok=True)


# --- SIGTERM, SIGHUP -----------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_termination_signal_writes_what_was_collected(signum, spawn, tmp_path):
    target = spawn([PYTHON, "-c", SLEEPER])
    out = tmp_path / "p.jsonl"
    rec = start_record(spawn, ["record", "--pid", target.pid, "-f", "jsonl", "-o", out])
    rec.send_signal(signum)
    text = finish(rec)
    assert rec.returncode == 0, text
    assert f"{signum.name}, stopping" in text and "Traceback" not in text
    profile = read_jsonl(out)
    assert profile.sample_count > 0 and profile.metadata["stopped_by"] == signum.name
    assert target.poll() is None  # by pid: the target is not ours to end


def test_sigterm_is_passed_on_to_the_launched_command(spawn, tmp_path):
    out = tmp_path / "p.jsonl"
    rec = start_record(spawn, ["record", "-f", "jsonl", "-o", out, "--", PYTHON, "-c", SLEEPER])
    command_pid = int(rec.seen[-1].split()[3])  # "spy_magic: sampling pid N at ..."
    rec.send_signal(signal.SIGTERM)
    text = finish(rec)
    assert rec.returncode == 128 + signal.SIGTERM, text  # the command's status: SIGTERM
    assert read_jsonl(out).sample_count > 0
    assert not os.path.exists(f"/proc/{command_pid}"), "the command was left running"


def test_command_shutting_down_on_sigterm_gets_it_once_and_its_status_kept(spawn, tmp_path):
    out = tmp_path / "p.jsonl"
    seen = tmp_path / "sigterms"
    graceful = (
        "import signal, sys, time\n"
        "def shut_down(signum, frame):\n"
        f"    open({str(seen)!r}, 'a').write('SIGTERM\\n')\n"
        "    time.sleep(2)  # a clean shutdown takes a while\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, shut_down)\n"
        "print('handling SIGTERM', flush=True)\n" + SLEEPER
    )
    rec = start_record(spawn, ["record", "-f", "jsonl", "-o", out, "--", PYTHON, "-c",
                               graceful])  # fmt: skip
    while "handling SIGTERM" not in rec.seen:  # sampling may begin before the script runs
        rec.seen.append(read_line(rec, timeout=HANG_S))
    rec.send_signal(signal.SIGTERM)
    text = finish(rec)
    assert rec.returncode == 0, text  # the command's own status after its clean shutdown
    assert seen.read_text() == "SIGTERM\n"  # passed on once, not once more while it ends
    assert read_jsonl(out).sample_count > 0


def test_command_that_ignores_sigterm_is_killed_after_the_grace(spawn, tmp_path):
    out = tmp_path / "p.jsonl"
    stubborn = (
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring SIGTERM', flush=True)\n" + SLEEPER
    )
    rec = start_record(spawn, ["record", "-f", "jsonl", "-o", out, "--", PYTHON, "-c",
                               stubborn])  # fmt: skip
    while "ignoring SIGTERM" not in rec.seen:  # sampling may begin before the script runs
        rec.seen.append(read_line(rec, timeout=HANG_S))
    rec.send_signal(signal.SIGTERM)
    text = finish(rec)
    assert rec.returncode == 128 + signal.SIGKILL, text
    assert "waiting up to" in text and read_jsonl(out).sample_count > 0


def test_top_ends_cleanly_on_sigterm(spawn):
    target = spawn([PYTHON, "-c", SLEEPER])
    top = spawn([*SPY, "top", "--pid", str(target.pid)], stderr=subprocess.STDOUT)
    assert read_line(top, timeout=HANG_S).startswith("spy_magic top")
    top.send_signal(signal.SIGTERM)
    out, _ = top.communicate(timeout=HANG_S)
    assert top.returncode == 0, out
    assert b"Traceback" not in out


# --- the command's exit status -------------------------------------------------------------------


@pytest.mark.parametrize(
    "ending, status",
    [
        ("pass", 0),
        ("raise SystemExit(3)", 3),
        ("os.kill(os.getpid(), signal.SIGKILL)", 128 + 9),
        ("os.kill(os.getpid(), signal.SIGTERM)", 128 + 15),
    ],
    ids=["exit-0", "exit-3", "SIGKILL", "SIGTERM"],
)
def test_command_exit_status_is_passed_through(ending, status, tmp_path):
    script = f"import os, signal, time\ntime.sleep(0.3)\n{ending}\n"
    result = run(["record", "-f", "collapsed", "-o", tmp_path / "p.txt", "--", PYTHON, "-c",
                  script])  # fmt: skip
    assert result.returncode == status, result.stderr
    assert (tmp_path / "p.txt").exists()


def test_help_states_the_exit_status():
    assert "Exit status" in run(["record", "--help"], timeout=60).stdout


# --- the notebook magics -------------------------------------------------------------------------
# Argument checks and writing -o are the same code on every kernel: one kernel (the Python
# running the tests) is enough here; tests/test_notebook.py runs the magics on the others.


@pytest.fixture(scope="module")
def nb(tmp_path_factory):
    pytest.importorskip("nbclient", reason="the notebook tests need nbclient")
    import notebook_kernels as nk

    try:
        info = nk.kernel_for("ipykernel7")
    except nk.KernelUnavailable as exc:
        pytest.skip(f"no ipykernel7 kernel here: {exc}")
    spec_dir = tmp_path_factory.mktemp("kernelspecs")
    nk.write_kernelspec(spec_dir, info)
    kernel = nk.NotebookKernel(info, spec_dir, tmp_path_factory.mktemp("cwd"))
    try:
        kernel.run("%load_ext spy_magic")
        yield kernel
    finally:
        kernel.close()


def _outputs(cell, kind: str) -> list:
    return [o for o in cell.outputs if o.output_type == kind]


def _stderr(cell) -> str:
    return "".join(o.text for o in _outputs(cell, "stream") if o.name == "stderr")


def test_spy_rate_far_above_max_is_clamped_like_record(nb):
    cell = nb.run("%%spy -q -r --rate 100000\nsum(range(10))\n")
    assert not _outputs(cell, "error"), cell.outputs
    assert f"spy_magic: {clamp_rate(100000)[1]}" in _stderr(cell)
    rate = nb.json(f"print(Out[{cell.execution_count}].metadata['rate'])")
    assert rate == MAX_RATE


@pytest.mark.parametrize("bad", ["inf", "nan", "0"])
def test_spy_rate_that_is_not_a_positive_finite_number_is_a_usage_error(nb, bad):
    cell = nb.run(f"%%spy --rate {bad}\npass\n")
    message = _stderr(cell).strip()
    assert message.startswith("UsageError: ") and "must be a positive number" in message


def test_spy_output_a_directory_is_refused_before_the_cell_runs(nb, tmp_path):
    ran = tmp_path / "cell-ran"
    cell = nb.run(f"%%spy -o {tmp_path}\nopen({str(ran)!r}, 'w')\n")
    message = _stderr(cell).strip()
    assert message.startswith("UsageError: %%spy: cannot write -o"), cell.outputs
    assert "it is a directory" in message and "nothing was run" in message
    assert not ran.exists(), "the cell ran"


def test_spy_output_folder_removed_by_the_cell_keeps_value_and_flame_graph(nb, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    cell = nb.run(f"%%spy -o {folder / 'p.html'}\nimport os\nos.rmdir({str(folder)!r})\n6 * 7\n")
    assert not _outputs(cell, "error"), cell.outputs
    results = _outputs(cell, "execute_result")
    assert results and results[-1]["data"]["text/plain"] == "42"
    assert any("text/html" in o["data"] for o in _outputs(cell, "display_data")), cell.outputs
    warning = next(x for x in _stderr(cell).splitlines() if "could not write" in x)
    fallback = Path(warning.rsplit(" to ", 1)[1].removesuffix(" instead"))
    try:
        assert fallback.read_text().lstrip().lower().startswith("<!doctype html")
    finally:
        fallback.unlink(missing_ok=True)
