"""--async: task-aware stacks read from outside, compared with the target's own asyncio view.

tests/targets/async_graph.py builds a known await graph of named tasks and prints, once they
all run, its own view: each task of asyncio.all_tasks() with its coroutine chain and the
tasks awaiting it (asyncio.capture_call_graph on 3.14+). What the reader finds must agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import SUPPORTED, TARGETS, read_line, require_interpreter, start_process

from spy_magic.reader import StackReader
from spy_magic.reader.asyncio_tasks import (
    TASK_FILE,
    AsyncUnsupported,
    open_tasks,
    parse_section,
)

GRAPH = TARGETS / "async_graph.py"
SPY = [sys.executable, "-m", "spy_magic"]
READS = 400  # at most; the test stops once it has seen what it needs
LEAVES = ("alpha-spin", "beta-spin")


def _task_supported(interp) -> bool:
    """Every version but free-threaded 3.13, whose Task layout is not known here."""
    return not (interp.free_threaded and interp.version < (3, 14))


@pytest.fixture(scope="module", params=list(SUPPORTED))
def graph(request, tmp_path_factory):
    """(interpreter, process, its own view) of the async_graph target."""
    interp = require_interpreter(request.param)
    stop = tmp_path_factory.mktemp("stop") / "stop"
    proc = start_process(interp.argv(GRAPH, stop))
    try:
        view = json.loads(read_line(proc))
        assert view["pid"] == proc.pid
        yield interp, proc, view
    finally:
        stop.touch()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _segments(stack) -> list[tuple[str, list[str]]]:
    """(task name, its frame names outermost first) for each task mark of a stack, innermost
    task first; the frames of a task are those just inside its mark."""
    out = []
    inner: list[str] = []
    for frame in stack:
        if frame.filename == TASK_FILE:
            out.append((frame.name[len("<task ") : -1], list(reversed(inner))))
            inner = []
        else:
            inner.append(frame.name)
    return out


def test_task_stacks_agree_with_the_targets_own_view(graph):
    interp, proc, view = graph
    reader = StackReader(proc.pid)
    try:
        if not _task_supported(interp):
            with pytest.raises(AsyncUnsupported, match=rf"free-threaded Python {interp.dotted}\b"):
                open_tasks(reader, "all")
            return
        tasks = open_tasks(reader, "all")
        own = {t["name"]: t for t in view["tasks"]}
        assert {"root", "alpha", "beta", *LEAVES} <= set(own), own
        seen_running: set[str] = set()
        seen_waiting: set[str] = set()
        for _ in range(READS):
            threads = reader.read()
            found = tasks.read(threads)
            assert len(found) == 1, found  # one thread runs a loop
            ((ident, thread_tasks),) = found.items()
            stacks = list(thread_tasks.waiting)
            if thread_tasks.stack is not None:
                stacks.append(thread_tasks.stack)
                segments = _segments(thread_tasks.stack)
                assert segments[0][0] == thread_tasks.running
                seen_running.add(thread_tasks.running)
                thread = next(t for t in threads if t.thread_id == ident)
                # The thread's own frames are all there: the running task's above its mark,
                # the event loop's below the outermost awaiting task's.
                marks = [i for i, f in enumerate(thread_tasks.stack) if f.filename == TASK_FILE]
                own_frames = thread_tasks.stack[: marks[0]] + thread_tasks.stack[marks[-1] + 1 :]
                assert own_frames == thread.frames
                assert "run_until_complete" in {f.name.split(".")[-1] for f in thread.frames}
            for stack in thread_tasks.waiting:
                seen_waiting.add(_segments(stack)[0][0])
            for stack in stacks:
                segments = _segments(stack)
                for position, (name, frames) in enumerate(segments):
                    mine = own.get(name)
                    if mine is None:
                        continue  # the reporter, which finished its view before printing
                    if position == 0:  # the innermost task: where it is right now
                        assert frames[0] == mine["chain"][0], (name, frames, mine)
                    else:  # a task awaiting another one: suspended where its view says
                        assert frames == mine["chain"], (name, frames, mine)
                    outer = segments[position + 1][0] if position + 1 < len(segments) else None
                    assert ([outer] if outer else []) == mine["awaited_by"], (name, segments)
            if {*LEAVES} <= seen_running and {*LEAVES} <= seen_waiting:
                break
            time.sleep(0.002)
        assert set(LEAVES) <= seen_running, seen_running
        assert set(LEAVES) <= seen_waiting, seen_waiting
        assert tasks.loops_seen > 0
    finally:
        reader.close()


def test_running_only_mode_gives_no_waiting_stacks(graph):
    interp, proc, _view = graph
    if not _task_supported(interp):
        pytest.skip(f"no task stacks on Python {interp.dotted} (the test above checks why)")
    with StackReader(proc.pid) as reader:
        tasks = open_tasks(reader, "running")
        for _ in range(20):
            for found in tasks.read(reader.read()).values():
                assert found.waiting == ()


@pytest.mark.parametrize("interpreter_id", ["sid-3.14", "sid-3.15"])
def test_record_async_all_writes_each_tasks_branch(interpreter_id, tmp_path):
    interp = require_interpreter(interpreter_id)
    out = tmp_path / "async.txt"
    stop = tmp_path / "stop"
    target = start_process(interp.argv(GRAPH, stop))
    try:
        read_line(target)  # every task runs
        result = subprocess.run(
            [*SPY, "record", "--async", "all", "-p", str(target.pid), "-d", "2",
             "-f", "collapsed", "-o", out],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        stop.touch()
        try:
            target.wait(5)
        except subprocess.TimeoutExpired:
            target.kill()
            target.wait()
    err = result.stderr
    assert result.returncode == 0, err
    assert "--async" not in err, err  # no warning: loops were seen
    lines = [line.rsplit(" ", 1)[0] for line in out.read_text().splitlines()]
    names = [[part.split(" (")[0] for part in line.split(";")] for line in lines]
    running = ["<task root>", "main", "<task alpha>", "branch", "middle", "<task alpha-spin>",
               "spin", "burn"]  # fmt: skip
    assert any(n[-len(running) :] == running and "Handle._run" in n for n in names), lines[:5]
    waiting = ["<task root>", "main", "<task beta>", "branch", "middle", "<task beta-spin>",
               "spin"]  # fmt: skip
    assert any(n[: len(waiting)] == waiting for n in names), lines[:5]


@pytest.mark.parametrize("interpreter_id", ["debian-3.11", "pyenv-3.12", "sid-3.14"])
def test_record_from_the_start_names_every_awaiting_frame_right(interpreter_id, tmp_path):
    """Sampled from its first moment, the target frees the code objects of its start-up
    (module bodies) before asyncio runs, and their addresses go to its own code: a task frame
    named from a cached code object without re-checking it read `<module>` where `branch`
    is (seen in a manual run; whether an address is reused this way varies from run to run,
    so this catches it often, not always)."""
    interp = require_interpreter(interpreter_id)
    out = tmp_path / "async.txt"
    result = subprocess.run(
        [*SPY, "record", "--async", "-f", "collapsed", "-o", out, "--",
         *interp.argv(GRAPH, tmp_path / "never", 4)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = [
        [part.split(" (")[0] for part in line.rsplit(" ", 1)[0].split(";")]
        for line in out.read_text().splitlines()
    ]
    marked = [n for n in names if "<task alpha-spin>" in n or "<task beta-spin>" in n]
    assert marked, names[:5]
    for n in marked:
        at = n.index("<task root>")
        assert n[at : at + 5] in (
            ["<task root>", "main", "<task alpha>", "branch", "middle"],
            ["<task root>", "main", "<task beta>", "branch", "middle"],
        ), n


NO_LOOP = """\
import time
print('ready', flush=True)
end = time.time() + 30
while time.time() < end:
    sum(range(1000))
"""


@pytest.mark.parametrize(
    "interpreter_id", ["sid-3.14", "sid-3.15", "debian-3.11", "pyenv-3.8", "ft-3.13t"]
)
def test_async_without_an_event_loop_warns_and_keeps_every_sample(interpreter_id, tmp_path):
    interp = require_interpreter(interpreter_id)
    script = tmp_path / "no_loop.py"
    script.write_text(NO_LOOP)
    target = subprocess.Popen(interp.argv(script), stdout=subprocess.PIPE, text=True)
    try:
        assert read_line(target).strip() == "ready"
        out = tmp_path / "out.txt"
        result = subprocess.run(
            [*SPY, "record", "--async", "-p", str(target.pid), "-d", "1", "-f", "collapsed",
             "-o", out],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        target.kill()
        target.wait()
    assert result.returncode == 0, result.stderr
    if _task_supported(interp):
        assert f"warning: --async: pid {target.pid}: no thread ran an asyncio event loop" in (
            result.stderr
        ), result.stderr
    else:
        assert f"free-threaded Python {interp.dotted} build" in result.stderr, result.stderr
    text = out.read_text()
    assert "<module>" in text and TASK_FILE not in text  # the samples, as without --async
    samples = sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines())
    assert samples >= 10, text


def test_bad_async_mode_is_a_one_line_usage_error():
    result = subprocess.run(
        [*SPY, "record", "--async", "every", "--", sys.executable, "-c", "pass"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--async" in result.stderr and "'every'" in result.stderr, result.stderr


def test_a_section_that_lies_is_refused():
    good = [200, 16, 24, 32, 33, 40, 48, 64, 8, 1024, 8, 16, 24]
    assert parse_section(b"".join(v.to_bytes(8, "little") for v in good)).task_coro == 40
    for index, bad in ((1, 200), (0, 0), (0, 1 << 40), (12, 1024)):
        values = list(good)
        values[index] = bad
        with pytest.raises(AsyncUnsupported, match="AsyncioDebug"):
            parse_section(b"".join(v.to_bytes(8, "little") for v in values))
    with pytest.raises(AsyncUnsupported, match="too short"):
        parse_section(b"\0" * 16)


def test_the_warning_is_kept_in_the_metadata(tmp_path):
    """The Python API: Sampler(async_tasks=...) says what it could not do in metadata."""
    from spy_magic.engine import Sampler

    script = tmp_path / "plain.py"
    script.write_text(NO_LOOP)
    target = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, text=True)
    try:
        assert read_line(target).strip() == "ready"
        sampler = Sampler(target.pid, duration=0.5, async_tasks="running")
        samples = list(sampler)
    finally:
        target.kill()
        target.wait()
    meta = sampler.metadata()
    assert meta["async_tasks"] == "running"
    assert "no thread ran an asyncio event loop" in meta["async_warning"]
    assert samples and any(s.traces for s in samples)
    assert os.path.basename(str(script)) in {
        os.path.basename(f.filename) for s in samples for t in s.traces for f in t.frames
    }
