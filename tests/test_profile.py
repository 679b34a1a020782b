"""Profile aggregation and exports, on hand-made samples (pure data: no processes)."""

from __future__ import annotations

import io
import json
import marshal
import math
import re
import threading
from collections import Counter

import pytest

from spy_magic.engine.sample import ProcessLabel, RateChange, Sample, SampleError, Trace
from spy_magic.profile import (
    FORMATS,
    FunctionStats,
    Profile,
    escape_collapsed,
    read_jsonl,
    to_chrometrace,
    to_collapsed,
    to_jsonl,
    to_speedscope,
    write,
)
from spy_magic.profile.exports import BINARY_FORMATS
from spy_magic.profile.recording import read_recording
from spy_magic.reader import Frame

MAIN = Frame("<module>", "app.py", 30, 1)
RUN = Frame("run", "app.py", 10, 8)
RUN_11 = Frame("run", "app.py", 11, 8)
WORK = Frame("work", "lib.py", 5, 3)
WORK_6 = Frame("work", "lib.py", 6, 3)
FIB = Frame("fib", "fib.py", 4, 1)
FIB_2 = Frame("fib", "fib.py", 2, 1)
WAIT = Frame("wait", "threading.py", 320, 300)

PARENT = ProcessLabel(100, "python app.py")
CHILD = ProcessLabel(200, "python worker.py")


def trace(
    *frames: Frame,
    pid: int = 100,
    tid: int = 1,
    name: str | None = "MainThread",
    gil: bool = True,
    idle: bool | None = False,
    native: int | None = -1,
    processes: tuple[ProcessLabel, ...] | None = None,
) -> Trace:
    """A trace; frames given innermost first, as the reader hands them out.
    native=-1 means "tid + 1000"."""
    if processes is None:
        processes = (PARENT,) if pid == 100 else (PARENT, ProcessLabel(pid, f"python p{pid}.py"))
    return Trace(
        pid=pid,
        thread_id=tid,
        native_id=tid + 1000 if native == -1 else native,
        thread_name=name,
        gil=gil,
        idle=idle,
        frames=tuple(frames),
        processes=processes,
    )


def profile_of(*samples: Sample, metadata: dict | None = None) -> Profile:
    p = Profile(metadata)
    p.extend(samples)
    return p


@pytest.fixture
def basic() -> Profile:
    """Two threads of one process over four samples at uneven times."""
    return profile_of(
        Sample(
            0.0, [trace(WORK, RUN, MAIN), trace(WAIT, tid=2, name="worker", idle=True, gil=False)]
        ),
        Sample(
            0.01,
            [trace(WORK_6, RUN, MAIN), trace(WAIT, tid=2, name="worker", idle=True, gil=False)],
        ),
        Sample(0.03, [trace(RUN_11, MAIN, gil=False)], late=0.005),
        Sample(0.035, [trace(WORK, RUN, MAIN)]),
        metadata={"rate": 100.0, "pid": 100},
    )


# -- aggregation ----------------------------------------------------------------------------
def test_stack_counts_by_line(basic: Profile) -> None:
    counts = basic.stack_counts()
    assert counts == {
        ("<module> (app.py:30)", "run (app.py:10)", "work (lib.py:5)"): 2,
        ("<module> (app.py:30)", "run (app.py:10)", "work (lib.py:6)"): 1,
        ("<module> (app.py:30)", "run (app.py:11)"): 1,
        ("wait (threading.py:320)",): 2,
    }
    assert sum(counts.values()) == basic.trace_count == 6


def test_stack_counts_by_function_merges_lines(basic: Profile) -> None:
    assert basic.stack_counts(by="function") == {
        ("<module> (app.py)", "run (app.py)", "work (lib.py)"): 3,
        ("<module> (app.py)", "run (app.py)"): 1,
        ("wait (threading.py)",): 2,
    }


def test_stack_counts_rejects_unknown_by(basic: Profile) -> None:
    with pytest.raises(ValueError):
        basic.stack_counts(by="file")
    with pytest.raises(ValueError):
        basic.functions(by="file")


def test_filters(basic: Profile) -> None:
    assert basic.stack_counts(by="function", idle=False) == {
        ("<module> (app.py)", "run (app.py)", "work (lib.py)"): 3,
        ("<module> (app.py)", "run (app.py)"): 1,
    }
    # gil_only drops the waiter (no GIL) and the main thread's GIL-less sample
    assert basic.stack_counts(by="function", gil_only=True) == {
        ("<module> (app.py)", "run (app.py)", "work (lib.py)"): 3,
    }
    assert basic.stack_counts(by="function", thread_ids=[2]) == {("wait (threading.py)",): 2}
    assert basic.stack_counts(pids=[999]) == {}
    assert basic.stack_counts(by="function", pids={100}, thread_ids={1}, idle=False) == {
        ("<module> (app.py)", "run (app.py)", "work (lib.py)"): 3,
        ("<module> (app.py)", "run (app.py)"): 1,
    }


def test_idle_none_is_kept_by_idle_filter() -> None:
    p = profile_of(Sample(0.0, [trace(WORK, idle=None), trace(WAIT, tid=2, idle=True)]))
    assert p.stack_counts(idle=False) == {("work (lib.py:5)",): 1}


def test_thread_roots(basic: Profile) -> None:
    counts = basic.stack_counts(by="function", threads=True)
    assert counts[('thread "worker" (2)', "wait (threading.py)")] == 2
    assert counts[('thread "MainThread" (1)', "<module> (app.py)", "run (app.py)")] == 1
    unnamed = profile_of(Sample(0.0, [trace(WORK, name=None, tid=7)]))
    assert unnamed.stack_counts(threads=True) == {("thread (7)", "work (lib.py:5)"): 1}


def test_process_roots_default_follows_pid_count(basic: Profile) -> None:
    # one pid: no process roots unless asked
    assert all(len(k) < 4 for k in basic.stack_counts())
    assert (
        basic.stack_counts(by="function", processes=True, idle=False)[
            ("python app.py (pid 100)", "<module> (app.py)", "run (app.py)")
        ]
        == 1
    )

    p = profile_of(
        Sample(0.0, [trace(WORK, RUN), trace(FIB, pid=200, processes=(PARENT, CHILD))]),
    )
    assert p.pids() == [100, 200]
    assert p.stack_counts(by="function") == {
        ("python app.py (pid 100)", "run (app.py)", "work (lib.py)"): 1,
        ("python app.py (pid 100)", "python worker.py (pid 200)", "fib (fib.py)"): 1,
    }
    assert p.stack_counts(by="function", processes=False, threads=True) == {
        ('thread "MainThread" (1)', "run (app.py)", "work (lib.py)"): 1,
        ('thread "MainThread" (1)', "fib (fib.py)"): 1,
    }
    both = p.stack_counts(by="function", threads=True)
    assert (
        "python app.py (pid 100)",
        "python worker.py (pid 200)",
        'thread "MainThread" (1)',
        "fib (fib.py)",
    ) in both
    # a trace without a process chain still gets a root
    bare = profile_of(Sample(0.0, [trace(WORK, pid=5, processes=())]))
    assert bare.stack_counts(processes=True) == {("pid 5", "work (lib.py:5)"): 1}


def test_traces_without_frames_are_skipped() -> None:
    p = profile_of(Sample(0.0, [trace(), trace(WORK, tid=2)]))
    assert p.trace_count == 2
    assert p.stack_counts(threads=True) == {('thread "MainThread" (2)', "work (lib.py:5)"): 1}
    assert [f.name for f in p.functions()] == ["work"]


def test_functions_self_and_total(basic: Profile) -> None:
    by_function = {(f.name, f.filename): f for f in basic.functions(by="function")}
    assert by_function[("work", "lib.py")] == FunctionStats("work", "lib.py", None, 3, 3)
    assert by_function[("run", "app.py")] == FunctionStats("run", "app.py", None, 1, 4)
    assert by_function[("<module>", "app.py")] == FunctionStats("<module>", "app.py", None, 0, 4)
    assert by_function[("wait", "threading.py")].self_count == 2
    by_line = {(f.name, f.line): f for f in basic.functions()}
    assert by_line[("work", 5)].self_count == 2
    assert by_line[("work", 6)].self_count == 1
    assert by_line[("run", 10)] == FunctionStats("run", "app.py", 10, 0, 3)
    assert by_line[("run", 11)] == FunctionStats("run", "app.py", 11, 1, 1)


def test_functions_sorted_by_self_desc(basic: Profile) -> None:
    selfs = [f.self_count for f in basic.functions(by="function")]
    assert selfs == sorted(selfs, reverse=True)
    assert basic.functions(by="function")[0].name == "work"


def test_recursion_counts_total_once_per_trace() -> None:
    # fib -> fib -> fib -> run (innermost first): deep recursion in one trace
    p = profile_of(
        Sample(0.0, [trace(FIB_2, FIB, FIB, RUN)]),
        Sample(0.1, [trace(WORK, FIB, FIB, RUN)]),
    )
    funcs = {f.name: f for f in p.functions(by="function")}
    assert funcs["fib"].total_count == 2
    assert funcs["fib"].self_count == 1
    assert funcs["run"].total_count == 2 and funcs["run"].self_count == 0
    assert funcs["work"].self_count == funcs["work"].total_count == 1
    lines = {(f.name, f.line): f for f in p.functions(by="line")}
    assert lines[("fib", 4)].total_count == 2  # twice in each trace, counted once
    assert lines[("fib", 2)] == FunctionStats("fib", "fib.py", 2, 1, 1)
    # the folded stack keeps every level
    assert (
        p.stack_counts(by="function")[
            ("run (app.py)", "fib (fib.py)", "fib (fib.py)", "fib (fib.py)")
        ]
        == 1
    )


def test_cached_aggregates_follow_new_samples(basic: Profile) -> None:
    before = basic.stack_counts(by="function", idle=False)
    funcs_before = {f.name: f.total_count for f in basic.functions(by="function")}
    basic.add(Sample(0.05, [trace(FIB, RUN, MAIN)]))
    after = basic.stack_counts(by="function", idle=False)
    assert after[("<module> (app.py)", "run (app.py)", "fib (fib.py)")] == 1
    assert sum(after.values()) == sum(before.values()) + 1
    funcs_after = {f.name: f.total_count for f in basic.functions(by="function")}
    assert funcs_after["run"] == funcs_before["run"] + 1
    # the returned dict is a copy: mutating it does not corrupt the cache
    after.clear()
    assert sum(basic.stack_counts(by="function", idle=False).values()) == 5
    fresh = profile_of(*basic.samples, metadata=basic.metadata)
    assert fresh.stack_counts(by="function", idle=False) == basic.stack_counts(
        by="function", idle=False
    )


def test_concurrent_add_and_read() -> None:
    p = Profile()
    n = 2000

    def writer() -> None:
        for i in range(n):
            p.add(Sample(i * 0.001, [trace(WORK, RUN)]))

    t = threading.Thread(target=writer)
    t.start()
    while t.is_alive():
        p.stack_counts()
    t.join()
    assert p.stack_counts() == {("run (app.py:10)", "work (lib.py:5)"): n}


def test_out_of_order_sample_is_refused() -> None:
    p = profile_of(Sample(1.0))
    with pytest.raises(ValueError):
        p.add(Sample(0.5))
    p.add(Sample(1.0))  # equal timestamps are fine
    assert p.sample_count == 2


# -- plain facts ----------------------------------------------------------------------------
def test_threads_and_pids() -> None:
    p = profile_of(
        Sample(0.0, [trace(WORK, tid=1, name=None), trace(WAIT, tid=2, name="pool-1")]),
        Sample(0.1, [trace(WORK, tid=1, name="MainThread"), trace(FIB, pid=200, tid=1)]),
        Sample(0.2, [trace(WORK, tid=1, name=None)]),  # a name, once seen, is kept
    )
    assert p.threads() == [(100, 1, "MainThread"), (100, 2, "pool-1"), (200, 1, "MainThread")]
    assert p.threads()[1].thread_name == "pool-1"
    assert p.pids() == [100, 200]


def test_errors_and_counts() -> None:
    torn = SampleError(100, 1, "TornStack", "stack changed under us")
    gone = SampleError(200, None, "ProcessExited", "pid 200 exited")
    p = profile_of(
        Sample(0.0, [trace(WORK)], errors=[torn]),
        Sample(0.1, [], errors=[torn, gone]),
        Sample(0.2, [trace(WORK)]),
    )
    assert p.errors == [(0.0, torn), (0.1, torn), (0.1, gone)]
    assert p.errors[2].timestamp == 0.1 and p.errors[2].error is gone
    assert p.error_counts() == {"TornStack": 2, "ProcessExited": 1}
    assert p.sample_count == 3 and p.trace_count == 2


def test_rate_changes_kept_in_order() -> None:
    p = Profile()
    changes = [RateChange(1.0, 100.0, 50.0, "too slow"), RateChange(5.0, 50.0, 75.0, "ok")]
    for c in changes:
        p.add_rate_change(c)
    assert p.rate_changes == changes


def test_lateness_percentiles() -> None:
    # 100 samples: 90 on time, 10 late by 1..10 ms
    samples = [Sample(i * 0.01) for i in range(90)]
    samples += [Sample(0.9 + i * 0.01, late=(i + 1) / 1000) for i in range(10)]
    p = profile_of(*samples)
    lat = p.lateness()
    assert lat["count"] == 10
    assert lat["p50"] == 0.0
    # sorted values: 90 zeros, then 0.001..0.010; p90 sits at index 89.1
    assert lat["p90"] == pytest.approx(0.1 * 0.001)
    assert lat["p99"] == pytest.approx(0.009 + 0.01 * 0.001)
    assert lat["max"] == pytest.approx(0.010)


def test_lateness_zero_late_counts_as_late_and_empty() -> None:
    assert Profile().lateness() == {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    p = profile_of(Sample(0.0, late=0.0), Sample(1.0))
    assert p.lateness()["count"] == 1


def test_gaps_duration_rate() -> None:
    p = profile_of(Sample(1.0), Sample(1.5), Sample(1.75), Sample(3.0))
    assert p.gaps() == [0.5, 0.25, 1.25]
    assert p.duration == 2.0
    assert p.effective_rate == pytest.approx(3 / 2.0)
    assert p.sample_durations() == [0.5, 0.25, 1.25, pytest.approx(2.0 / 3)]
    one = profile_of(Sample(0.3), metadata={"duration": 4.5, "rate": 200})
    assert one.duration == 4.5 and one.effective_rate == 0.0
    assert one.sample_durations() == [0.005]
    assert Profile().duration == 0.0 and Profile().sample_durations() == []
    assert profile_of(Sample(0.3)).sample_durations() == [0.0]


def test_repr_and_equality(basic: Profile) -> None:
    assert "4 samples" in repr(basic)
    assert basic == profile_of(*basic.samples, metadata=dict(basic.metadata))
    assert basic != profile_of(*basic.samples[:3], metadata=dict(basic.metadata))
    assert basic != profile_of(*basic.samples, metadata={})


# -- collapsed ------------------------------------------------------------------------------
COLLAPSED_LINE = re.compile(r"^([^;\n]+)(;[^;\n]+)* (\d+)$")


def test_collapsed_format(basic: Profile) -> None:
    text = to_collapsed(basic)
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 4
    for line in lines:
        assert COLLAPSED_LINE.match(line), line
    assert "<module> (app.py:30);run (app.py:10);work (lib.py:5) 2" in lines
    assert lines == sorted(lines)
    total = sum(int(line.rsplit(" ", 1)[1]) for line in lines)
    assert total == basic.trace_count


def test_collapsed_matches_stack_counts_with_options(basic: Profile) -> None:
    text = to_collapsed(basic, by="function", threads=True, processes=True, idle=False)
    parsed = {}
    for line in text.splitlines():
        stack, count = line.rsplit(" ", 1)
        parsed[tuple(stack.split(";"))] = int(count)
    assert parsed == basic.stack_counts(by="function", threads=True, processes=True, idle=False)


def test_collapsed_escapes_semicolons_and_newlines() -> None:
    odd = Frame("f;g", "dir;x/é.py", 3, 1)
    p = profile_of(
        Sample(
            0.0,
            [
                trace(
                    odd,
                    Frame("naïve\nname", "ü.py", 1, 1),
                    name="w;1",
                    processes=(ProcessLabel(100, 'python -c "a; b"'),),
                )
            ],
        )
    )
    # stack_counts keeps the raw labels
    assert ("naïve\nname (ü.py:1)", "f;g (dir;x/é.py:3)") in p.stack_counts()
    text = to_collapsed(p, threads=True, processes=True)
    (line,) = text.splitlines()
    assert COLLAPSED_LINE.match(line)
    fields = line.rsplit(" ", 1)[0].split(";")
    assert fields == [
        'python -c "a\uff1b b" (pid 100)',
        'thread "w\uff1b1" (1)',
        "naïve\\nname (ü.py:1)",
        "f\uff1bg (dir\uff1bx/é.py:3)",
    ]
    assert escape_collapsed("a;b\r\nc") == "a\uff1bb\\r\\nc"


# -- speedscope -----------------------------------------------------------------------------
def check_speedscope(doc: dict) -> None:
    """The documented speedscope file format, checked field by field (no schema offline)."""
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert isinstance(doc.get("version", ""), str)
    assert isinstance(doc.get("name", ""), str)
    frames = doc["shared"]["frames"]
    assert isinstance(frames, list)
    for f in frames:
        assert set(f) <= {"name", "file", "line", "col"}
        assert isinstance(f["name"], str)
        assert isinstance(f.get("file", ""), str)
        assert isinstance(f.get("line", 1), int)
    assert isinstance(doc["profiles"], list)
    if doc["profiles"]:
        assert 0 <= doc.get("activeProfileIndex", 0) < len(doc["profiles"])
    for prof in doc["profiles"]:
        assert prof["type"] == "sampled"
        assert isinstance(prof["name"], str)
        assert prof["unit"] in (
            "none",
            "nanoseconds",
            "microseconds",
            "milliseconds",
            "seconds",
            "bytes",
        )
        assert isinstance(prof["startValue"], (int, float))
        assert prof["endValue"] >= prof["startValue"]
        assert len(prof["samples"]) == len(prof["weights"])
        for stack in prof["samples"]:
            assert all(isinstance(i, int) and 0 <= i < len(frames) for i in stack)
        assert all(isinstance(w, (int, float)) and w >= 0 for w in prof["weights"])


def test_speedscope_structure_and_stacks(basic: Profile) -> None:
    doc = json.loads(to_speedscope(basic))
    check_speedscope(doc)
    frames = doc["shared"]["frames"]
    names = {p["name"] for p in doc["profiles"]}
    assert names == {'thread "MainThread" (1)', 'thread "worker" (2)'}
    main = next(p for p in doc["profiles"] if "MainThread" in p["name"])
    assert doc["profiles"][doc["activeProfileIndex"]] is not None
    stacks = [[(frames[i]["name"], frames[i].get("line")) for i in s] for s in main["samples"]]
    assert stacks[0] == [("<module>", 30), ("run", 10), ("work", 5)]  # root first
    assert stacks[1][-1] == ("work", 6)
    assert stacks[2] == [("<module>", 30), ("run", 11)]
    assert frames[main["samples"][0][-1]]["file"] == "lib.py"
    # frames are shared: each (name, file, line) once
    keys = [(f["name"], f["file"], f.get("line")) for f in frames]
    assert len(keys) == len(set(keys))
    assert main["startValue"] == 0.0


def test_speedscope_weights_are_real_gaps() -> None:
    times = [0.0, 0.004, 0.019, 0.020, 0.1, 0.1003]
    p = profile_of(*(Sample(t, [trace(WORK, RUN)]) for t in times))
    doc = json.loads(to_speedscope(p))
    (prof,) = doc["profiles"]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert prof["weights"][:-1] == gaps
    assert prof["weights"][-1] == pytest.approx(sum(gaps) / len(gaps))
    assert prof["unit"] == "seconds"
    assert prof["endValue"] == pytest.approx(times[-1] + sum(gaps) / len(gaps))
    # a thread missing from some samples still gets each of its samples' own gap
    q = profile_of(
        Sample(0.0, [trace(WORK), trace(WAIT, tid=2)]),
        Sample(0.5, [trace(WORK)]),
        Sample(0.6, [trace(WORK), trace(WAIT, tid=2)]),
        Sample(1.6, [trace(WORK)]),
    )
    docq = json.loads(to_speedscope(q))
    w = {p["name"]: p["weights"] for p in docq["profiles"]}
    assert w['thread "MainThread" (1)'] == [0.5, 0.6 - 0.5, 1.6 - 0.6, pytest.approx(1.6 / 3)]
    assert w['thread "MainThread" (2)'] == [0.5, 1.6 - 0.6]
    assert docq["profiles"][docq["activeProfileIndex"]]["name"] == 'thread "MainThread" (1)'


def test_speedscope_by_function_and_filters(basic: Profile) -> None:
    doc = json.loads(to_speedscope(basic, by="function", idle=False))
    check_speedscope(doc)
    assert len(doc["profiles"]) == 1
    frames = doc["shared"]["frames"]
    assert {(f["name"], f["line"]) for f in frames} == {("<module>", 1), ("run", 8), ("work", 3)}
    with pytest.raises(ValueError):
        to_speedscope(basic, by="nope")


def test_speedscope_multi_process_names_and_empty() -> None:
    p = profile_of(Sample(0.0, [trace(WORK), trace(FIB, pid=200, processes=(PARENT, CHILD))]))
    doc = json.loads(to_speedscope(p))
    check_speedscope(doc)
    assert {q["name"] for q in doc["profiles"]} == {
        'python app.py (pid 100) > thread "MainThread" (1)',
        'python app.py (pid 100) > python worker.py (pid 200) > thread "MainThread" (1)',
    }
    empty = json.loads(to_speedscope(Profile()))
    check_speedscope(empty)
    assert empty["profiles"] == []


# -- chrometrace ----------------------------------------------------------------------------
def check_chrome_nesting(doc: dict) -> dict[tuple[int, int], list[tuple[str, float, float]]]:
    """Per thread: events ordered, B/E balanced and properly nested, all closed.
    Returns the completed spans (name, start, end) per (pid, tid)."""
    events = doc["traceEvents"]
    last_ts = -math.inf
    stacks: dict[tuple[int, int], list[tuple[str, float]]] = {}
    spans: dict[tuple[int, int], list[tuple[str, float, float]]] = {}
    for e in events:
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "M":
            assert e["name"] in ("thread_name", "process_name")
            assert isinstance(e["args"]["name"], str)
            continue
        assert e["ph"] in ("B", "E")
        assert e["ts"] >= last_ts
        last_ts = e["ts"]
        key = (e["pid"], e["tid"])
        stack = stacks.setdefault(key, [])
        if e["ph"] == "B":
            stack.append((e["name"], e["ts"]))
        else:
            assert stack, f"E without B: {e}"
            name, start = stack.pop()
            assert name == e["name"]
            assert e["ts"] > start
            spans.setdefault(key, []).append((name, start, e["ts"]))
    assert all(not s for s in stacks.values()), stacks
    return spans


def test_chrometrace_nesting_and_times(basic: Profile) -> None:
    doc = json.loads(to_chrometrace(basic))
    spans = check_chrome_nesting(doc)
    main = spans[(100, 1001)]
    # by function: <module> and run span all four samples (0 .. 35ms + mean gap)
    end = (0.035 + 0.035 / 3) * 1e6
    assert [s for s in main if s[0] == "<module>"] == [("<module>", 0.0, pytest.approx(end))]
    assert [s for s in main if s[0] == "run"] == [("run", 0.0, pytest.approx(end))]
    # work: samples 0-1 merged (lines 5 and 6 are one function), gone in sample 2, back in 3
    work = [s for s in main if s[0] == "work"]
    assert work == [("work", 0.0, 30000.0), ("work", 35000.0, pytest.approx(end))]
    # the idle worker thread is present in samples 0 and 1 only
    assert spans[(100, 1002)] == [("wait", 0.0, 30000.0)]
    meta = [e for e in doc["traceEvents"] if e["ph"] == "M"]
    process = {"ph": "M", "name": "process_name", "pid": 100, "tid": 0}
    assert {**process, "args": {"name": "python app.py"}} in meta
    names = {e["tid"]: e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    assert names == {1001: "MainThread", 1002: "worker"}
    begins = [e for e in doc["traceEvents"] if e["ph"] == "B"]
    assert begins[0]["args"] == {"file": "app.py", "line": 1}


def test_chrometrace_by_line_splits_lines(basic: Profile) -> None:
    doc = json.loads(to_chrometrace(basic, by="line", thread_ids=[1]))
    spans = check_chrome_nesting(doc)
    work = sorted(s for s in spans[(100, 1001)] if s[0] == "work")
    assert [(s[1], s[2]) for s in work][:2] == [(0.0, 10000.0), (10000.0, 30000.0)]
    assert list(spans) == [(100, 1001)]


def test_chrometrace_recursion_and_multi_process() -> None:
    p = profile_of(
        Sample(0.0, [trace(FIB, FIB, RUN), trace(WORK, pid=200, tid=1, native=55)]),
        Sample(0.001, [trace(FIB, FIB, FIB, RUN), trace(WORK, pid=200, tid=1, native=55)]),
        Sample(0.002, [trace(FIB, RUN)]),
    )
    doc = json.loads(to_chrometrace(p))
    spans = check_chrome_nesting(doc)
    fibs = sorted(s for s in spans[(100, 1001)] if s[0] == "fib")
    assert fibs == [
        ("fib", 0.0, 2000.0),
        ("fib", 0.0, 3000.0),
        ("fib", 1000.0, 2000.0),
    ]
    assert spans[(200, 55)] == [("work", 0.0, 2000.0)]
    procs = {e["pid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"}
    assert procs == {100: "python app.py", 200: "python p200.py"}


def test_chrometrace_empty() -> None:
    doc = json.loads(to_chrometrace(Profile()))
    assert doc["traceEvents"] == []


# -- jsonl ----------------------------------------------------------------------------------
def rich_profile() -> Profile:
    p = Profile(
        {
            "target": "python app.py",
            "rate": 100.0,
            "mode": "external",
            "python_version": "3.12.1",
            "started_at": 1_700_000_000.25,
            "dropped_stale": 3,
            "note": "naïve ✓ 🐍",
        }
    )
    p.extend(
        [
            Sample(
                0.0,
                [
                    trace(Frame("ünïcødé", "/tmp/日本.py", 1, 1), RUN, name="wörker;1", idle=None),
                    trace(FIB, pid=200, tid=9, native=None, processes=(PARENT, CHILD), gil=False),
                ],
                errors=[SampleError(300, None, "ProcessExited", "gone ✗")],
            ),
            Sample(0.0123456789, [], late=0.0004),
            Sample(
                0.02,
                [trace(Frame("bad\udcff", "x\ud800.py", 2, 2), name=None, native=None)],
                late=0.25,
                errors=[SampleError(100, 1, "TornStack", "retry")],
            ),
        ]
    )
    p.add_rate_change(RateChange(0.01, 100.0, 50.0, "sampling too slow"))
    return p


def test_jsonl_round_trip_string() -> None:
    p = rich_profile()
    text = to_jsonl(p)
    lines = text.splitlines()
    records = [json.loads(line) for line in lines]
    kinds = Counter(r["type"] for r in records)
    assert kinds == {"header": 1, "sample": p.sample_count, "trace": p.trace_count}
    header = json.loads(lines[0])
    assert header["type"] == "header" and header["rate_changes"][0]["new_rate"] == 50.0
    assert text.isascii()
    back = read_jsonl(io.StringIO(text))
    assert back == p
    assert back.samples[0].traces[1].native_id is None
    assert back.samples[0].traces[0].idle is None
    assert isinstance(back.samples[0].traces[0].frames, tuple)
    assert back.samples[0].traces[1].processes == (PARENT, CHILD)
    assert back.lateness() == p.lateness()
    assert back.errors == p.errors and back.error_counts() == p.error_counts()
    assert back.rate_changes == p.rate_changes
    assert back.threads() == p.threads() and back.pids() == p.pids()
    assert back.stack_counts(threads=True) == p.stack_counts(threads=True)
    assert back.metadata == p.metadata


def test_jsonl_round_trip_files(tmp_path) -> None:
    p = rich_profile()
    path = tmp_path / "run.jsonl"
    write(p, path, "jsonl")
    assert read_jsonl(path) == p
    assert read_jsonl(str(path)) == p
    with open(path, "rb") as f:
        assert read_jsonl(f) == p
    buf = io.BytesIO()
    write(p, buf, "jsonl")
    assert read_jsonl(io.BytesIO(buf.getvalue())) == p
    assert read_jsonl(to_jsonl(p).splitlines()) == p
    assert read_jsonl(io.StringIO(to_jsonl(Profile({"a": 1})))) == Profile({"a": 1})


def test_jsonl_names_a_repeated_stack_once_and_shares_it_when_read() -> None:
    steady = trace(WORK, RUN, MAIN)
    p = profile_of(*(Sample(i / 100, [steady]) for i in range(1000)))
    text = to_jsonl(p)
    assert text.count('"type": "trace"') + text.count('"type":"trace"') == 1
    assert len(text) < 100 * 1000, "a sample of a known stack should be a short line"
    back = read_jsonl(io.StringIO(text))
    assert back == p
    assert len({id(s.traces[0]) for s in back.samples}) == 1


def test_jsonl_version_1_files_still_read() -> None:
    """Version 1 wrote every trace in full inside its sample."""
    header = {"type": "header", "format": "spy_magic.profile", "version": 1, "metadata": {}}
    sample = {
        "type": "sample", "timestamp": 0.5, "late": None, "errors": [],
        "traces": [{
            "pid": 100, "thread_id": 1, "native_id": 1001, "thread_name": "MainThread",
            "gil": True, "idle": False, "frames": [["run", "app.py", 10, 8]],
            "processes": [[100, "python app.py"]],
        }],
    }  # fmt: skip
    back = read_jsonl([json.dumps(header), json.dumps(sample)])
    assert back.samples == [Sample(0.5, [trace(RUN)])]


def test_jsonl_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        read_jsonl(io.StringIO(""))
    with pytest.raises(ValueError):
        read_jsonl(io.StringIO('{"type": "sample"}\n'))
    header = to_jsonl(Profile()).splitlines()[0]
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(io.StringIO(header + "\n{oops\n"))
    dangling = '{"type": "sample", "timestamp": 0, "late": null, "traces": [7], "errors": []}'
    with pytest.raises(ValueError, match=r"line 2: .*trace 7, which was never defined"):
        read_jsonl(io.StringIO(header + "\n" + dangling + "\n"))
    newer = json.loads(header)
    newer["version"] = 99
    with pytest.raises(ValueError, match="newer"):
        read_jsonl(io.StringIO(json.dumps(newer)))
    with pytest.raises(TypeError):
        write(Profile(), io.StringIO(), "jsonl", by="line")


# -- every format ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", sorted(BINARY_FORMATS))
def test_binary_formats_write_bytes(fmt: str, tmp_path) -> None:
    p = rich_profile()
    data = FORMATS[fmt](p)
    if fmt == "pstats":
        stats = marshal.loads(data)
        assert ("/tmp/日本.py", 1, "ünïcødé") in stats and ("x\ud800.py", 2, "bad\udcff") in stats
    else:
        assert read_recording(io.BytesIO(data)) == p
    path, bio = tmp_path / f"out.{fmt}", io.BytesIO()
    write(p, path, fmt)
    write(p, bio, fmt)
    assert path.read_bytes() == bio.getvalue()
    with pytest.raises(TypeError, match="binary format"):
        write(p, io.StringIO(), fmt)


@pytest.mark.parametrize("fmt", sorted(set(FORMATS) - set(BINARY_FORMATS)))
def test_every_format_writes_and_parses(fmt: str, tmp_path) -> None:
    p = rich_profile()
    text = FORMATS[fmt](p)
    if fmt in ("speedscope", "chrometrace", "gecko"):
        doc = json.loads(text)
        if fmt == "speedscope":
            check_speedscope(doc)
        elif fmt == "chrometrace":
            check_chrome_nesting(doc)
        else:
            assert doc["meta"]["preprocessedProfileVersion"] == 57 and len(doc["threads"]) == 2
    elif fmt == "jsonl":
        assert all(json.loads(line) for line in text.splitlines())
    elif fmt == "html":
        assert text.startswith("<!DOCTYPE html>") and "sfg-data" in text
    elif fmt == "heatmap":
        assert text.startswith("<!DOCTYPE html>") and 'class="sfg-heat-file"' in text
    else:
        assert all(COLLAPSED_LINE.match(line) for line in text.splitlines())
    # to a path, a text file and a binary file: the same content
    path = tmp_path / f"out.{fmt}"
    write(p, path, fmt)
    on_disk = path.read_text(encoding="utf-8")
    sio, bio = io.StringIO(), io.BytesIO()
    write(p, sio, fmt)
    write(p, bio, fmt)
    assert sio.getvalue() == text
    assert bio.getvalue().decode("utf-8") == on_disk
    if text.isascii():
        assert on_disk == text


def test_write_unknown_format() -> None:
    with pytest.raises(ValueError):
        write(Profile(), io.StringIO(), "svg")


def test_lone_surrogates_survive_text_writes(tmp_path) -> None:
    p = profile_of(Sample(0.0, [trace(Frame("bad\udcff", "x.py", 1, 1))]))
    path = tmp_path / "out.txt"
    write(p, path, "collapsed")
    # collapsed is text: an undecodable byte shows as U+FFFD (JSON keeps the exact name)
    assert path.read_text(encoding="utf-8") == "bad\ufffd (x.py:1) 1\n"
    assert json.loads(to_speedscope(p))["shared"]["frames"][0]["name"] == "bad\udcff"


def test_iter_traces_applies_filters(basic: Profile) -> None:
    got = [(i, s.timestamp, t.thread_id) for i, s, t in basic.iter_traces(idle=False)]
    assert got == [(0, 0.0, 1), (1, 0.01, 1), (2, 0.03, 1), (3, 0.035, 1)]
    assert [t.thread_id for _, _, t in basic.iter_traces(thread_ids=[2])] == [2, 2]
    assert len(list(basic.iter_traces())) == basic.trace_count


# -- storage ----------------------------------------------------------------------------------
def test_samples_read_back_as_they_were_added() -> None:
    p = rich_profile()
    originals = [Sample(s.timestamp, list(s.traces), s.late, list(s.errors)) for s in p.samples]
    assert list(p.samples) == originals
    assert p.samples[-1] == originals[-1] and p.samples[0] == originals[0]
    assert p.samples[1:] == originals[1:] and p.samples[::-1] == originals[::-1]
    assert p.samples[1].late == 0.0004 and p.samples[0].late is None
    assert p.samples[2].errors == [SampleError(100, 1, "TornStack", "retry")]
    with pytest.raises(IndexError):
        p.samples[len(originals)]


def test_a_long_recording_costs_a_few_dozen_bytes_a_sample() -> None:
    """600,000 samples is 10 minutes at 1 kHz: kept as objects that would be over 100 MB."""
    import tracemalloc

    stacks = [trace(WORK, RUN, MAIN), trace(WORK_6, RUN, MAIN), trace(FIB, RUN, MAIN)]
    p = Profile()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(100_000):
        # As the engine hands them over: a fresh list and Sample, shared Trace objects.
        p.add(Sample(i * 0.001, [stacks[i % 3]], 0.0002 if i % 7 == 0 else None))
    per_sample = (tracemalloc.get_traced_memory()[0] - before) / 100_000
    tracemalloc.stop()
    assert per_sample < 40, f"{per_sample:.0f} bytes a sample"
    assert p.sample_count == 100_000 and p.samples[99_999].timestamp == pytest.approx(99.999)
