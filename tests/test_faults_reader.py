"""Fault matrix for the stack reader: faults real targets show, each case → what is promised.

case                                              → what is promised
executable (static) or libpython (shared) deleted → stacks read from the mapped file itself
  under a running target (a package upgrade)        (/proc/PID/map_files, /proc/PID/exe)
the same file replaced by another Python's        → that other file is never parsed: the
                                                    version and stacks are the target's
threads started one after another, each ending    → each read with its own name and native
  before the next: glibc recycles the ident         id, never the ended thread's
a 10 KB thread name (ASCII, or 2-byte CJK)        → cut to its first THREAD_NAME_CHARS
                                                    characters + "…(N chars)"; the other
                                                    threads' names still read
a stack deeper than the depth limit (16384)       → its innermost 16384 frames and, outermost,
                                                    "<truncated N frames>" ("at least N"
                                                    past twice the limit), on both walkers;
                                                    profiles and exports show it as a frame
1000 threads, 20 of them spinning                 → every thread read with its name and
                                                    stack, read after read (the cheap paths
                                                    for stacks that hold still included),
                                                    and a thread that moves after many
                                                    still reads is seen where it went
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, SID_ROOT, read_line, require_interpreter, target_env, wait_until

from spy_magic.reader import StackReader
from spy_magic.reader.frames import DEFAULT_MAX_DEPTH
from spy_magic.reader.objects import THREAD_NAME_CHARS

# A target that says it is ready, then blocks forever in a function the test looks for.
PARKED_IN_MARKER = """
import sys, threading
def parked_in_marker():
    threading.Event().wait()
print("ready", sys.version_info[:3], flush=True)
parked_in_marker()
"""


def frame_names(stack) -> list[str]:
    return [f.name for f in stack.frames]


# --- 5. the interpreter's file deleted or replaced under a running target --------------------


def _pyenv_library(interp) -> str:
    """The shared libpython a pyenv interpreter loads."""
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(interp.path)))
    found = glob.glob(os.path.join(prefix, "lib", f"libpython{interp.dotted}*.so.1.0"))
    if not found:
        pytest.skip(f"{interp.id} has no shared libpython under {prefix}/lib")
    return found[0]


def _other_python_file(kind: str, version: tuple[int, int]) -> str:
    """A real file of the same kind from another Python version, to put in place of ours:
    it has _PyRuntime and Py_Version too, so parsing it by mistake would go unnoticed."""
    if kind == "library":
        patterns = ["/root/.pyenv/versions/3.*/lib/libpython3.*.so.1.0"]
    else:
        patterns = ["/usr/bin/python3.1[0-9]", os.path.join(SID_ROOT, "usr/bin/python3.1[0-9]")]
    for path in sorted(p for pattern in patterns for p in glob.glob(pattern)):
        name = os.path.basename(path)
        if f"3.{version[1]}" not in name and not os.path.islink(path):
            return path
    pytest.skip(f"no other Python {kind} ({patterns}) to replace the file with")


# (interpreter, which file is moved away): a static build's executable, a shared build's
# executable and libpython (<= 3.10 and 3.11+), and a static build inside a sid root.
DELETED_CASES = ["debian-3.11", "pyenv-3.9", "pyenv-3.12", "sid-3.14"]


@pytest.mark.parametrize("fault", ["deleted", "replaced"])
@pytest.mark.parametrize("interpreter_id", DELETED_CASES)
def test_fault_interpreter_file_gone_stacks_still_read(interpreter_id, fault, spawn):
    interp = require_interpreter(interpreter_id)
    shared = interp.id.startswith("pyenv-")
    # A directory the target sees at the same path (a rooted target: bind-mounted into it).
    tmp = tempfile.mkdtemp(prefix="spy-deleted-")
    try:
        exe = os.path.join(tmp, f"python{interp.dotted}")
        shutil.copy2(os.path.realpath(interp.host_path(interp.path)), exe)
        env = target_env()
        moved = [exe]
        if shared:
            library = os.path.join(tmp, os.path.basename(_pyenv_library(interp)))
            shutil.copy2(_pyenv_library(interp), library)
            env["LD_LIBRARY_PATH"] = tmp
            moved = [exe, library]
        copy = dataclasses.replace(interp, path=exe)
        proc = spawn(copy.argv("-c", PARKED_IN_MARKER), env=env)
        assert read_line(proc).startswith("ready")
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        for path in moved:
            assert path in maps, f"{path} is not mapped by the target"
            if fault == "deleted":
                os.unlink(path)
            else:
                # What an upgrade does: the new file renamed over the old one's path.
                kind = "library" if path.endswith(".so.1.0") else "executable"
                other = _other_python_file(kind, interp.version)
                shutil.copy2(other, path + ".new")
                os.rename(path + ".new", path)
        assert "(deleted)" in Path(f"/proc/{proc.pid}/maps").read_text()
        with StackReader(proc.pid) as reader:
            assert reader.version[:2] == interp.version
            # "ready" comes just before the call: on a busy machine the first read can
            # still find the thread at module level.
            deadline = time.monotonic() + 10
            while True:
                stacks = reader.read()
                if len(stacks) != 1 or stacks[0].error is not None:
                    break
                if "parked_in_marker" in frame_names(stacks[0]) or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        assert len(stacks) == 1, stacks
        assert stacks[0].error is None, stacks[0].error
        names = frame_names(stacks[0])
        assert "parked_in_marker" in names and names[-1] == "<module>", names
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- 11. a thread name far longer than any name is meant to be -------------------------------

# Three threads parked, named as argv says: a 10 KB ASCII name, a long 2-byte (CJK) name, and
# a plain one. Prints each thread's ident and name as JSON once all are parked.
NAMED_THREADS = r"""
import json, sys, threading
names = json.loads(sys.argv[1])
park = threading.Event()
parked = []
for name in names:
    t = threading.Thread(target=park.wait, name=name, daemon=True)
    t.start()
    parked.append(t)
print(json.dumps({t.ident: t.name for t in parked}), flush=True)
park.wait()
"""

LONG_NAMES = ["a" * 10_240, "\u7ebf" * 5_000, "short-name"]


@pytest.mark.parametrize("interpreter_id", ["pyenv-3.8", "pyenv-3.12", "sid-3.14"])
def test_fault_huge_thread_name_cut_with_a_marker(interpreter_id, spawn):
    interp = require_interpreter(interpreter_id)
    proc = spawn(interp.argv("-c", NAMED_THREADS, json.dumps(LONG_NAMES)))
    expected = {int(k): v for k, v in json.loads(read_line(proc)).items()}
    with StackReader(proc.pid) as reader:
        got = {s.thread_id: s.name for s in reader.read()}
    for ident, name in expected.items():
        if len(name) <= THREAD_NAME_CHARS:
            assert got[ident] == name
        else:
            assert got[ident] == name[:THREAD_NAME_CHARS] + f"…({len(name)} chars)"


# --- 7. a new thread with a recycled ident ---------------------------------------------------

# Threads started one after another, each finished and joined before the next starts, so
# glibc hands each the previous one's stack and with it the same pthread ident. Each says
# who it is (ident, native id, name) and waits for a line on stdin before it ends.
SEQUENTIAL_THREADS = r"""
import json, sys, threading
def say_and_wait():
    me = threading.current_thread()
    print(json.dumps([me.ident, threading.get_native_id(), me.name]), flush=True)
    sys.stdin.readline()
for i in range(int(sys.argv[1])):
    t = threading.Thread(target=say_and_wait, name="sequential-%d" % i)
    t.start()
    t.join()
print(json.dumps(None), flush=True)
"""

SEQUENTIAL_COUNT = 6


@pytest.mark.parametrize("interpreter_id", ["pyenv-3.8", "pyenv-3.12", "ft-3.13t", "sid-3.14"])
def test_fault_recycled_thread_ident_gets_its_own_name(interpreter_id, spawn):
    interp = require_interpreter(interpreter_id)
    proc = spawn(interp.argv("-c", SEQUENTIAL_THREADS, SEQUENTIAL_COUNT), stdin=subprocess.PIPE)
    seen: list[tuple[int, int, str]] = []
    reader = None
    try:
        while True:
            said = json.loads(read_line(proc))
            if said is None:
                break
            ident, native, name = said
            seen.append((ident, native, name))
            if reader is None:
                reader = StackReader(proc.pid)  # one reader throughout: its caches persist

            def named(reader=reader, ident=ident, native=native, name=name):
                stack = next(s for s in reader.read() if s.thread_id == ident)
                assert stack.native_id == native, (stack.native_id, native)
                # Never another thread's name; none at all only until the names are read.
                assert stack.name in (None, name), (stack.name, name)
                return stack.name == name

            wait_until(named, 10, f"thread {name} to be read with its name", interval=0.05)
            proc.stdin.write(b"\n")
            proc.stdin.flush()
    finally:
        if reader is not None:
            reader.close()
    assert len(seen) == SEQUENTIAL_COUNT
    if len({ident for ident, _, _ in seen}) == len(seen):
        pytest.skip("glibc gave every thread a new ident here: no ident was recycled")


# --- 12. a stack deeper than the reader's depth limit ----------------------------------------

# Recurses to argv[1] frames in a thread with a big C stack (<= 3.10 recursion uses it), then
# parks; prints the depth of the parked thread's stack as the target counts it.
DEEP_STACK = r"""
import json, sys, threading
depth = int(sys.argv[1])
sys.setrecursionlimit(depth + 1000)
threading.stack_size(1 << 30)
park = threading.Event()
def recurse(n):
    if n:
        return recurse(n - 1)
    frame, count = sys._getframe(), 0
    while frame is not None:
        count, frame = count + 1, frame.f_back
    print(json.dumps({"ident": threading.get_ident(), "depth": count + 2}), flush=True)
    park.wait()  # + Event.wait and Condition.wait
t = threading.Thread(target=recurse, args=(depth,), daemon=True)
t.start()
park.wait()
"""
DEEP = 20_000


@pytest.fixture(scope="module", params=["pyenv-3.9", "pyenv-3.12", "sid-3.14"])
def deep_target(request, spawn_module):
    interp = require_interpreter(request.param)
    proc = spawn_module(interp.argv("-c", DEEP_STACK, DEEP))
    said = json.loads(read_line(proc, timeout=120))
    return proc, said["ident"], said["depth"]


def _deep_stack(pid: int, ident: int, **options):
    with StackReader(pid, **options) as reader:
        for _ in range(2):  # the second read is served from the first's prefetch plan
            stack = next(s for s in reader.read() if s.thread_id == ident)
            assert stack.error is None, stack.error
        return stack


def test_fault_stack_deeper_than_the_limit_innermost_frames_and_a_count(deep_target):
    proc, ident, depth = deep_target
    assert depth > DEFAULT_MAX_DEPTH
    stack = _deep_stack(proc.pid, ident)
    assert len(stack.frames) == DEFAULT_MAX_DEPTH + 1
    assert stack.frames[2].name == "recurse"  # under Event.wait and Condition.wait
    assert {f.name for f in stack.frames[2:DEFAULT_MAX_DEPTH]} == {"recurse"}
    marker = stack.frames[-1]
    assert marker.name == f"<truncated {depth - DEFAULT_MAX_DEPTH} frames>"
    assert marker.filename == "<truncated>"


def test_fault_stack_far_deeper_than_the_limit_says_at_least(deep_target):
    proc, ident, _ = deep_target
    stack = _deep_stack(proc.pid, ident, max_depth=100)
    assert len(stack.frames) == 101
    assert {f.name for f in stack.frames[2:100]} == {"recurse"}
    assert stack.frames[-1].name == "<truncated at least 100 frames>"


def test_fault_truncated_stack_marker_shows_in_profile_and_exports(deep_target, tmp_path):
    proc, _, depth = deep_target
    marker = f"<truncated {depth - DEFAULT_MAX_DEPTH} frames>"
    outputs = {}
    for fmt in ("collapsed", "html"):
        outputs[fmt] = tmp_path / f"deep.{fmt}"
        record = [sys.executable, "-m", "spy_magic", "record", "--pid", str(proc.pid)]
        record += ["--duration", "1", "--rate", "20", "--format", fmt, "-o", str(outputs[fmt])]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        run = subprocess.run(record, capture_output=True, text=True, timeout=120, env=env)
        assert run.returncode == 0, run.stderr
    collapsed = outputs["collapsed"].read_text()
    deep_lines = [line for line in collapsed.splitlines() if "recurse" in line]
    assert deep_lines, collapsed[:2000]
    for line in deep_lines:
        # collapsed stacks are root first: the marker is the deep thread's outermost frame
        assert line.startswith(f"{marker} (<truncated>:0);recurse"), line[:300]
    # The flame graph's page holds it as a frame name (its string table, "<" escaped).
    assert json.dumps(marker).replace("<", "\\u003c") in outputs["html"].read_text()


# --- 14. a thousand threads ------------------------------------------------------------------

# argv[1] threads, thread i named "worker-i" and parked i % 4 + 1 calls deep in park_<i % 3>,
# waiting in `before`; the first argv[2] of them spin in Python instead (their stacks move all
# the time). A line "move K" on stdin makes parked thread K return from `before` and wait in
# `after`: a function of the very same frame size called from the same place, so its stack
# stays where it was (the same top, the same innermost frame's address) and only the bytes
# in it tell the move. Each move is acknowledged on stdout.
MANY_THREADS = r"""
import json, sys, threading
count, spinning = int(sys.argv[1]), int(sys.argv[2])
threading.stack_size(256 * 1024)
moves = [threading.Event() for _ in range(count)]
parks = [threading.Event() for _ in range(count)]
def before(i):
    moves[i].wait()
def after(i):
    parks[i].wait()
def nest(i, n, then):
    if n:
        return nest(i, n - 1, then)
    then(i)
def park_0(i):
    before(i)
    after(i)
def park_1(i):
    park_0(i)
def park_2(i):
    park_1(i)
def spin(i):
    while True:
        sum(range(50))
def run(i):
    if i < spinning:
        spin(i)
    else:
        nest(i, i % 4 + 1, [park_0, park_1, park_2][i % 3])
threads = [threading.Thread(target=run, args=(i,), name="worker-%d" % i, daemon=True)
           for i in range(count)]
for t in threads[spinning:] + threads[:spinning]:  # spinners last: they slow every start
    t.start()
print(json.dumps({t.ident: [i, t.name] for i, t in enumerate(threads)}), flush=True)
for line in sys.stdin:
    moves[int(line.split()[1])].set()
    print("moved", flush=True)
"""
MANY = 1000


BOOTSTRAP = ["run", "run", "_bootstrap_inner", "_bootstrap"]  # ours, Thread.run, threading's


def _expected_names(i: int, spinning: int, moved: set[int]) -> list[str]:
    """Thread i's frame names (without class names), innermost first."""
    if i < spinning:
        return ["spin", *BOOTSTRAP]
    chain = ["park_0", "park_1", "park_2"][: i % 3 + 1]
    inner = ["wait", "wait", "after" if i in moved else "before"]
    return [*inner, *chain, *["nest"] * (i % 4 + 2), *BOOTSTRAP]


def _check_many(
    stacks, workers: dict[int, tuple[int, str]], spinning: int, moved=frozenset(), skip=()
):
    """Every worker's stack as the target has it; `skip`: indexes of threads in transit."""
    by_ident = {s.thread_id: s for s in stacks}
    assert set(workers) <= set(by_ident), "threads missing from the read"
    for ident, (i, name) in workers.items():
        if i in skip:
            continue
        stack = by_ident[ident]
        assert stack.error is None, (name, stack.error)
        assert stack.name == name, (stack.name, name)
        names = [f.name.rsplit(".", 1)[-1] for f in stack.frames]
        assert names == _expected_names(i, spinning, moved), (name, names)


def _settled(reader, workers, spinning, moved):
    """A read in which every moved thread is where it went (None until then)."""
    stacks = reader.read()
    by_ident = {s.thread_id: s for s in stacks}
    for ident, (i, _) in workers.items():
        if i in moved:
            names = [f.name.rsplit(".", 1)[-1] for f in by_ident[ident].frames]
            if names != _expected_names(i, spinning, moved):
                return None
    return stacks


@pytest.mark.parametrize("interpreter_id", ["pyenv-3.9", "pyenv-3.12", "ft-3.13t", "sid-3.14"])
def test_fault_thousand_threads_every_thread_named_and_walked(interpreter_id, spawn):
    interp = require_interpreter(interpreter_id)
    spinning = 20
    proc = spawn(interp.argv("-c", MANY_THREADS, MANY, spinning), stdin=subprocess.PIPE)
    workers = {int(k): tuple(v) for k, v in json.loads(read_line(proc, timeout=120)).items()}
    with StackReader(proc.pid) as reader:

        def all_parked():
            stacks = reader.read()
            parked = [s for s in stacks if any(f.name == "before" for f in s.frames)]
            return len(parked) >= MANY - spinning and stacks

        stacks = wait_until(all_parked, 60, "every parked thread to reach its park")
        # Many reads of a still target: served as the last read, they must stay right; and
        # once every run state has been read in turn (64 a snapshot), the parked are blocked.
        for _ in range(5):
            _check_many(reader.read(), workers, spinning)
        for _ in range(MANY // 64 + 2):
            stacks = reader.read()
        parked = {ident for ident, (i, _) in workers.items() if i >= spinning}
        assert all(s.idle is True for s in stacks if s.thread_id in parked)
        # Threads that start running a new function mid-recording, a few at a time between
        # reads, are seen where they went (not a kept walk of where they were), and every
        # other thread, on every read, where it is.
        moved: set[int] = set()
        rounds = [[MANY - 1, MANY // 2], [spinning, spinning + 1, 333], [MANY - 2, 500, 777]]
        for batch in rounds:
            for k in batch:
                proc.stdin.write(b"move %d\n" % k)
                proc.stdin.flush()
                assert read_line(proc) == "moved"
            in_transit = set(batch)
            moved |= in_transit
            for _ in range(3):
                _check_many(reader.read(), workers, spinning, moved, skip=in_transit)
            stacks = wait_until(
                lambda moved=moved: _settled(reader, workers, spinning, moved),
                30,
                f"threads {sorted(in_transit)} to be read where they went",
            )
            _check_many(stacks, workers, spinning, moved)
            for _ in range(3):
                _check_many(reader.read(), workers, spinning, moved)
