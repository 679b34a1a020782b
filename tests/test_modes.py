"""Profile modes (wall / cpu / gil / exception), <GC> frames and opcodes, against real
processes on every interpreter here, through the reader, the engine, the CLI and the exports."""

from __future__ import annotations

import argparse
import glob
import io
import json
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import PYENV_ROOT, REPO, TARGET_START_TIMEOUT, read_line, take_samples

from spy_magic.cli import main as cli_main
from spy_magic.cli.options import add_sampling_options, sampler_options
from spy_magic.engine import Sampler
from spy_magic.notebook.session import _option_args
from spy_magic.profile import Profile
from spy_magic.profile.exports import read_jsonl, to_collapsed, to_jsonl
from spy_magic.profile.recording import read_recording, to_recording
from spy_magic.reader import NotAvailable, StackReader
from spy_magic.reader.layouts import LAYOUTS

# Threads in known exception states, named for the test: one inside an `except` (sleeping
# there), one inside a `finally` run by an exception, one that caught one and left the
# handler, one that never saw one, and one running a generator from inside a handler (the
# generator's own, empty exc_info item must be walked past, as sys.exception() does).
EXCEPTION_TARGET = r"""
import sys, threading, time

def in_except():
    try:
        raise KeyError("k")
    except KeyError:
        while True:
            time.sleep(0.05)

def in_finally():
    try:
        try:
            raise ValueError("v")
        finally:
            while True:
                time.sleep(0.05)
    except ValueError:
        pass

def left_handler():
    try:
        raise OSError("o")
    except OSError:
        pass
    while True:
        time.sleep(0.05)

def never():
    while True:
        time.sleep(0.05)

def ticking():
    while True:
        time.sleep(0.05)
        yield

def generator_in_except():
    try:
        raise RuntimeError("r")
    except RuntimeError:
        for _ in ticking():
            pass

for fn in (in_except, in_finally, left_handler, never, generator_in_except):
    threading.Thread(target=fn, name=fn.__name__, daemon=True).start()
time.sleep(0.3)
print("ready", flush=True)
never()
"""
HANDLING = {"in_except": True, "in_finally": True, "generator_in_except": True}
NOT_HANDLING = {"left_handler": False, "never": False, "MainThread": False}

# Most of its time in gc.collect(): a big cyclic graph kept alive, collected again and again
# (every collection walks all of it). It reports the share of its time spent collecting.
GC_TARGET = r"""
import gc, sys, time
class Node:
    __slots__ = ("other", "__weakref__")
nodes = [Node() for _ in range(300_000)]
for i, node in enumerate(nodes):
    node.other = nodes[i - 1]
inside = 0.0
started = None
def track(phase, info):
    global inside, started
    if phase == "start":
        started = time.perf_counter()
    elif started is not None:
        inside += time.perf_counter() - started
gc.callbacks.append(track)
print("ready", flush=True)
begin = time.perf_counter()
def churn():
    while time.perf_counter() - begin < float(sys.argv[1]):
        gc.collect()
churn()
print(inside / (time.perf_counter() - begin), flush=True)
"""

# A hot, monomorphic attribute loop (3.11+ specialises its instructions); on a line on
# stdin it prints the instruction names of `attr_loop` as its own dis sees them now
# (adaptive: the specialised forms in place).
OPCODE_TARGET = r"""
import dis, sys, threading

class P:
    def __init__(self):
        self.x = 1

def attr_loop(p):
    s = 0
    while True:
        for _ in range(1000):
            s += p.x
        if done:
            return s

done = False
worker = threading.Thread(target=attr_loop, args=(P(),), daemon=True)
worker.start()
print("ready", flush=True)
sys.stdin.readline()
done = True
worker.join()
kw = {"adaptive": True} if sys.version_info >= (3, 11) else {}
names = sorted({i.opname for i in dis.get_instructions(attr_loop, **kw)})
print(" ".join(names), flush=True)
"""


def _start(spawn, interpreter, source, *args, stdin=None):
    kwargs = {"stdin": subprocess.PIPE} if stdin else {}
    proc = spawn.python(interpreter, source, *args, **kwargs)
    assert read_line(proc, TARGET_START_TIMEOUT) == "ready"
    return proc


def _layout_supports_exceptions(interpreter) -> bool:
    table = LAYOUTS.get(interpreter.build, {})
    return "tstate.exc_info" in table


# --- exception mode ---------------------------------------------------------------------------


def test_reader_tells_which_threads_handle_an_exception(spawn, interpreter):
    if not _layout_supports_exceptions(interpreter):
        pytest.skip(f"{interpreter.build}'s layout table has no exc_info (see the next test)")
    proc = _start(spawn, interpreter, EXCEPTION_TARGET)
    with StackReader(proc.pid, exceptions=True) as reader:
        seen: dict[str, Counter] = {}
        for _ in range(20):
            for thread in reader.read():
                if thread.error is None and thread.name:
                    seen.setdefault(thread.name, Counter())[thread.exception] += 1
            time.sleep(0.01)
    for name, want in {**HANDLING, **NOT_HANDLING}.items():
        assert seen[name][want] == sum(seen[name].values()), (name, seen[name])


def test_exception_mode_samples_only_the_handling_threads(spawn, interpreter):
    if not _layout_supports_exceptions(interpreter):
        pytest.skip(f"{interpreter.build}'s layout table has no exc_info (see the next test)")
    proc = _start(spawn, interpreter, EXCEPTION_TARGET)
    sampler = Sampler(proc.pid, profile_mode="exception", rate=200, duration=0.6)
    samples = list(sampler)
    assert sampler.error is None
    names = Counter(t.thread_name for s in samples for t in s.traces)
    assert set(names) == set(HANDLING), names
    assert sampler.metadata()["profile_mode"] == "exception"


def test_exception_mode_where_the_layout_cannot_tell_is_refused_before_sampling(
    spawn, interpreters, monkeypatch, capsys
):
    """A build whose table lacks the exception fields (one generated before they existed):
    a clear error from the reader, the engine and the CLI, before any sample, and the other
    modes still work on that process."""
    interp = interpreters.require("pyenv-3.12")
    proc = _start(spawn, interp, EXCEPTION_TARGET)
    monkeypatch.delitem(LAYOUTS["3.12"], "tstate.exc_info")
    with pytest.raises(NotAvailable, match=r"cannot tell which exception a thread handles"):
        StackReader(proc.pid, exceptions=True)
    sampler = Sampler(proc.pid, profile_mode="exception", rate=100, duration=0.3)
    assert list(sampler) == []
    assert isinstance(sampler.error, NotAvailable)
    assert "tstate.exc_info" in str(sampler.error)
    code = cli_main(["record", "--pid", str(proc.pid), "--mode", "exception", "-d", "0.3",
                     "-f", "collapsed", "-o", "/dev/null"])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0
    assert "cannot tell which exception a thread handles" in err
    wall = list(Sampler(proc.pid, profile_mode="wall", rate=100, duration=0.3))
    assert any(s.traces for s in wall)


# --- the other modes ---------------------------------------------------------------------------


def test_cpu_and_gil_modes_keep_the_running_thread(spawn, interpreters):
    interp = interpreters.require("pyenv-3.12")
    proc = _start(
        spawn,
        interp,
        "import threading, time\n"
        "def spin():\n    while True: pass\n"
        "threading.Thread(target=spin, name='spin', daemon=True).start()\n"
        "print('ready', flush=True)\n"
        "threading.Event().wait()\n",  # asleep in the kernel, never runnable: never R
    )
    counts = {}
    for mode in ("wall", "cpu", "gil"):
        samples = list(Sampler(proc.pid, profile_mode=mode, rate=200, duration=0.5))
        counts[mode] = Counter(t.thread_name for s in samples for t in s.traces)
    assert {"spin", "MainThread"} <= set(counts["wall"])
    # The main thread waits on a lock: never running, never holding the GIL.
    assert set(counts["cpu"]) == {"spin"}, counts["cpu"]
    assert set(counts["gil"]) == {"spin"}, counts["gil"]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_sampling_options(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "mode"),
    [
        ((), "wall"),
        (("--mode", "cpu"), "cpu"),
        (("--idle",), "wall"),
        (("--no-idle",), "cpu"),
        (("--gil",), "gil"),
        (("--no-idle", "--gil"), "gil"),  # the old spelling of the running GIL holder
        (("--mode", "exception", "--mode", "exception"), "exception"),
    ],
)
def test_mode_options_and_their_aliases(argv, mode):
    options = sampler_options(_parse(*argv))
    assert options["profile_mode"] == mode
    # The notebook helper gets the same options through its own command line.
    again = sampler_options(_parse(*_option_args(options)))
    assert again == options


@pytest.mark.parametrize(
    "argv", [("--mode", "wall", "--gil"), ("--idle", "--mode", "cpu"), ("--mode", "nope")]
)
def test_contradicting_modes_are_a_usage_error(argv, capsys):
    parser = argparse.ArgumentParser(prog="spy")
    add_sampling_options(parser)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(list(argv))
    assert exit_.value.code == 2
    assert "mode" in capsys.readouterr().err


def test_no_gc_and_opcodes_reach_the_helper():
    options = sampler_options(_parse("--no-gc", "--opcodes"))
    assert (options["gc"], options["opcodes"]) == (False, True)
    assert sampler_options(_parse(*_option_args(options))) == options


# --- <GC> frames -------------------------------------------------------------------------------


def test_gc_frames_while_collecting_and_none_with_no_gc(spawn, interpreter):
    proc = _start(spawn, interpreter, GC_TARGET, "4")
    with_gc = list(Sampler(proc.pid, gc=True, rate=200, duration=1.2))
    without = list(Sampler(proc.pid, gc=False, rate=200, duration=1.2))
    proc.stdin = None
    own_share = float(read_line(proc, 60))
    main = [t for s in with_gc for t in s.traces]  # its only thread
    assert len(main) > 20
    on_top = [t for t in main if t.frames[0].name == "<GC>"]
    share = len(on_top) / len(main)
    # The target spends most of its time collecting (it measures it itself): the sampled
    # share is near that; a loaded machine moves both the same way.
    assert own_share > 0.5, own_share
    assert share > 0.5 * own_share, (share, own_share)
    # Only ever on top: above the frame that called gc.collect(), or above the target's
    # gc.callbacks hook, which the collector runs while collecting.
    assert all(t.frames[1].name in ("churn", "track") for t in on_top), Counter(
        t.frames[1].name for t in on_top
    )
    assert any(t.frames[1].name == "churn" for t in on_top)
    assert not any(f.name == "<GC>" for t in main for f in t.frames[1:])
    assert not any(f.name == "<GC>" for s in without for t in s.traces for f in t.frames)


def test_gc_frames_show_in_collapsed_output_from_the_cli(spawn, interpreters, tmp_path):
    interp = interpreters.require("pyenv-3.11")
    proc = _start(spawn, interp, GC_TARGET, "3")
    out = tmp_path / "gc.txt"
    code = cli_main(["record", "--pid", str(proc.pid), "-d", "0.8", "-f", "collapsed",
                     "-o", str(out)])  # fmt: skip
    assert code == 0
    text = out.read_text()
    assert ";churn (" in text and "<GC> (<gc>:0)" in text
    out_no = tmp_path / "nogc.txt"
    code = cli_main(["record", "--pid", str(proc.pid), "-d", "0.5", "--no-gc", "-f",
                     "collapsed", "-o", str(out_no)])  # fmt: skip
    assert code == 0
    assert "<GC>" not in out_no.read_text() and "churn" in out_no.read_text()


# --- opcodes -----------------------------------------------------------------------------------


def test_opcodes_are_the_targets_own_instructions(spawn, interpreter):
    proc = _start(spawn, interpreter, OPCODE_TARGET, stdin=True)
    # 300 samples (1 s on an idle machine), however long a busy one takes to give them.
    samples = take_samples(Sampler(proc.pid, opcodes=True, rate=300), lambda got: len(got) >= 300)
    proc.stdin.write(b"\n")
    proc.stdin.flush()
    own = set(read_line(proc, 60).split())
    names = Counter(
        t.opcode for s in samples for t in s.traces if t.frames and t.frames[0].name == "attr_loop"
    )
    assert sum(names.values()) > 20, names
    assert None not in names, names
    assert set(names) <= own, (names, own)
    if interpreter.version >= (3, 11) and not interpreter.free_threaded:
        # The adaptive interpreter has rewritten the hot loop: specialised names are read.
        import opcode as host_opcode  # base names only on every version >= 3.11

        base = set(host_opcode.opmap)
        assert set(names) - base, names


def test_opcodes_survive_jsonl_and_recording_and_end_collapsed_stacks(spawn, interpreters):
    interp = interpreters.require("pyenv-3.13")
    proc = _start(spawn, interp, OPCODE_TARGET, stdin=True)
    sampler = Sampler(proc.pid, opcodes=True, rate=200, duration=0.5)
    profile = Profile(sampler.metadata())
    sampler.add_collector(profile.add)
    sampler.start()
    sampler.join()
    profile.metadata.update(sampler.metadata())
    assert profile.metadata["opcodes"] is True
    ops = [t.opcode for s in profile.samples for t in s.traces]
    assert any(ops)
    again = read_jsonl(io.StringIO(to_jsonl(profile)))
    assert [t.opcode for s in again.samples for t in s.traces] == ops
    replayed = read_recording(io.BytesIO(to_recording(profile)))
    assert [t.opcode for s in replayed.samples for t in s.traces] == ops
    collapsed = to_collapsed(profile)
    assert ";<opcode " in collapsed
    assert "<opcode" not in to_collapsed(profile, opcodes=False)


def test_a_jsonl_opcode_that_is_not_text_is_a_clear_error():
    from spy_magic.profile.exports import JsonlError, SampleDecoder

    record = {"type": "trace", "id": 0, "pid": 1, "thread_id": 2, "native_id": None,
              "thread_name": None, "gil": True, "idle": None, "frames": []}  # fmt: skip
    record["opcode"] = 7
    with pytest.raises(JsonlError, match="opcode"):
        SampleDecoder().define(json.loads(json.dumps(record)))


def test_opcode_tables_are_generated_from_the_interpreters_here():
    """tools/gen_opcodes.py --check: every interpreter here numbers its opcodes as the table
    says (a stale or hand-edited table fails)."""
    if not glob.glob(f"{PYENV_ROOT}/3.*/bin/python"):
        pytest.skip("no pyenv interpreters here")
    done = subprocess.run([sys.executable, "tools/gen_opcodes.py", "--check"],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_inprocess_sampler_takes_modes_and_opcodes():
    import threading

    from spy_magic.engine import InProcessSampler

    stop = threading.Event()

    def handler():
        try:
            raise KeyError("k")
        except KeyError:
            stop.wait(5)

    def plain():
        stop.wait(5)

    threads = [threading.Thread(target=f, name=f.__name__) for f in (handler, plain)]
    for t in threads:
        t.start()
    try:
        sampler = InProcessSampler(profile_mode="exception", opcodes=True, rate=100, duration=0.3)
        samples = list(sampler)
    finally:
        stop.set()
        for t in threads:
            t.join()
    names = {t.thread_name for s in samples for t in s.traces}
    assert names == {"handler"}, names
    assert all(t.opcode for s in samples for t in s.traces)


def test_the_report_header_says_which_threads_were_kept():
    from spy_magic.profile.html import header_items
    from spy_magic.profile.summary import summarize

    for mode, shown in (("wall", None), ("exception", "threads handling an exception")):
        profile = Profile({"profile_mode": mode})
        meta = summarize(profile).header_metadata(profile.metadata)
        assert meta["keeps"] == shown
        items = dict(header_items({"total": 0, "threads": []}, meta))
        assert items.get("Keeps") == shown


def test_dump_says_which_threads_handle_an_exception(spawn, interpreters, capsys):
    interp = interpreters.require("pyenv-3.10")
    proc = _start(spawn, interp, EXCEPTION_TARGET)
    assert cli_main(["dump", "--pid", str(proc.pid)]) == 0
    headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Thread")]
    for name in {**HANDLING, **NOT_HANDLING}:
        (line,) = [h for h in headers if h.endswith(f'"{name}"')]
        assert ("handling an exception" in line) == (name in HANDLING), line
