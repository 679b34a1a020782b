"""The reader against real processes, on every interpreter installed here.

The parked target (tests/targets/parked.py) prints its own view of every thread (from
sys._current_frames()) once all of them are blocked for good; the reader's view of the same
process must be identical, thread for thread and frame for frame.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
from conftest import read_line

UNICODE_THREAD_NAME = "ünïcode-线程-\U00020000"
PARKED_THREAD_NAMES = {
    "recursion-500",
    "methods",
    "lambdas",
    "generators",
    "comprehensions",
    "asyncio",
    "through-C-sorted",
    "through-C-map",
    UNICODE_THREAD_NAME,
    "exec-string",
    "huge-lineno",
    "gap-lines",
    "MainThread",
    None,  # the thread started with _thread.start_new_thread: threading never named it
}


# --- helpers ---------------------------------------------------------------------------------


def view_frames(thread: dict) -> list[tuple]:
    return [(f["name"], f["filename"], f["line"], f["firstlineno"]) for f in thread["frames"]]


def reader_frames(stack) -> list[tuple]:
    return [(f.name, f.filename, f.line, f.firstlineno) for f in stack.frames]


def label(thread: dict) -> str:
    return f"thread {thread['name']!r} (ident {thread['thread_id']}, tid {thread['native_id']})"


def frames_mismatch(expected: list[tuple], got: list[tuple]) -> str:
    """A readable account of where two frame lists (innermost first) part ways."""
    if expected == got:
        return ""
    lines = [f"expected {len(expected)} frames, got {len(got)}"]
    first = next(
        (i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got))
    )
    lines.append(f"first difference at frame #{first} (0 = innermost):")
    for i in range(max(0, first - 2), min(max(len(expected), len(got)), first + 3)):
        exp = expected[i] if i < len(expected) else "-"
        act = got[i] if i < len(got) else "-"
        mark = "  " if exp == act else "!!"
        lines.append(f"  {mark} #{i}: expected {exp}")
        lines.append(f"  {mark} #{i}:      got {act}")
    return "\n".join(lines)


def compare_with_view(view: dict, threads) -> list[str]:
    """Every difference between the target's own view and one read of the reader."""
    problems = []
    expected = {t["thread_id"]: t for t in view["threads"]}
    got = {t.thread_id: t for t in threads}
    if set(expected) != set(got):
        missing = [label(expected[i]) for i in set(expected) - set(got)]
        extra = [
            f"ident {i} name {got[i].name!r} tid {got[i].native_id}"
            for i in set(got) - set(expected)
        ]
        problems.append(f"thread sets differ: missing {missing}, unexpected {extra}")
    for ident in set(expected) & set(got):
        exp, stack = expected[ident], got[ident]
        who = label(exp)
        if stack.error is not None:
            problems.append(f"{who}: read failed: {type(stack.error).__name__}: {stack.error}")
            continue
        if stack.pid != view["pid"]:
            problems.append(f"{who}: pid expected {view['pid']}, got {stack.pid}")
        if stack.native_id != exp["native_id"]:
            problems.append(f"{who}: native_id expected {exp['native_id']}, got {stack.native_id}")
        if stack.name != exp["name"]:
            problems.append(f"{who}: name expected {exp['name']!r}, got {stack.name!r}")
        diff = frames_mismatch(view_frames(exp), reader_frames(stack))
        if diff:
            problems.append(f"{who}: frames differ: {diff}")
    return problems


def thread_by_name(view: dict, name) -> dict:
    (thread,) = [t for t in view["threads"] if t["name"] == name]
    return thread


def names_of(thread: dict) -> list[str]:
    return [f["name"] for f in thread["frames"]]


# --- the target itself (no reader needed): it must park what we think it parks ----------------


def test_target_view_is_what_we_meant(parked, interpreter):
    """Guards the target: a reader test is only as good as the stacks it is checked on."""
    _proc, view = parked
    qual = interpreter.version >= (3, 11)  # co_qualname from 3.11 on
    assert {t["name"] for t in view["threads"]} == PARKED_THREAD_NAMES
    assert len(view["threads"]) == len(PARKED_THREAD_NAMES)
    assert len({t["native_id"] for t in view["threads"]}) == len(view["threads"])
    for t in view["threads"]:
        cond_wait, event_wait, park = names_of(t)[:3]
        assert (cond_wait, event_wait, park) == (
            ("Condition.wait", "Event.wait", "park") if qual else ("wait", "wait", "park")
        ), label(t)
        assert all(f["line"] >= f["firstlineno"] > 0 for f in t["frames"]), label(t)

    recursion = names_of(thread_by_name(view, "recursion-500"))
    assert recursion.count("recurse") == 500

    methods = names_of(thread_by_name(view, "methods"))
    if qual:
        assert methods[3:8] == [
            "Outer.method.<locals>.inner.<locals>.<lambda>",
            "Outer.method.<locals>.inner",
            "Outer.method",
            "Outer.Nested.static_entry",
            "Outer.class_entry",
        ]
    else:
        assert methods[3:8] == ["<lambda>", "inner", "method", "static_entry", "class_entry"]

    lambdas = names_of(thread_by_name(view, "lambdas"))
    assert lambdas[3:5] == ["<lambda>", "run_lambdas.<locals>.<lambda>" if qual else "<lambda>"]

    assert names_of(thread_by_name(view, "generators"))[3:6] == [
        "gen_inner",
        "gen_outer",
        "run_generators",
    ]

    comprehensions = names_of(thread_by_name(view, "comprehensions"))
    genexpr = "run_comprehensions.<locals>.<genexpr>" if qual else "<genexpr>"
    listcomp = "run_comprehensions.<locals>.<listcomp>" if qual else "<listcomp>"
    if interpreter.version >= (3, 12):  # PEP 709 inlined list comprehensions
        assert comprehensions[3:6] == ["park_value", genexpr, "run_comprehensions"]
    else:
        assert comprehensions[3:7] == ["park_value", genexpr, listcomp, "run_comprehensions"]

    asyncio_names = names_of(thread_by_name(view, "asyncio"))
    assert asyncio_names[3:5] == ["coro_inner", "coro_outer"]
    assert "run_asyncio" in asyncio_names

    assert names_of(thread_by_name(view, "through-C-sorted"))[3:5] == ["sort_key", "run_sorted"]
    assert names_of(thread_by_name(view, "through-C-map"))[3:5] == ["map_function", "run_map"]

    assert names_of(thread_by_name(view, UNICODE_THREAD_NAME))[3:7] == [
        "função",  # latin-1 (1-byte kind, not ASCII)
        "函数",  # 2-byte kind
        "\U00020000",  # 4-byte kind
        "Ünïcödé.método_函数" if qual else "método_函数",
    ]

    exec_frames = thread_by_name(view, "exec-string")["frames"]
    assert [(f["name"], f["filename"], f["line"]) for f in exec_frames[3:5]] == [
        ("exec_function", "<string>", 2),
        ("<module>", "<string>", 4),
    ]

    huge = thread_by_name(view, "huge-lineno")["frames"][3]
    assert (huge["name"], huge["filename"]) == ("huge_lineno_function", "<huge-lineno>")
    assert huge["firstlineno"] == 1_000_001 and huge["line"] == 1_000_003

    gap = thread_by_name(view, "gap-lines")["frames"][3]
    assert (gap["name"], gap["filename"]) == ("gap_function", "<gap-lines-函数>")
    assert gap["firstlineno"] == 1 and gap["line"] == 100_004

    main = names_of(thread_by_name(view, "MainThread"))
    assert main[3:] == ["main_thread_parks", "main", "<module>"]
    assert names_of(thread_by_name(view, None))[3:] == ["raw_thread_parks"]


# --- the reader against the target's own view ---------------------------------------------------


def test_reader_matches_target_view(parked, reader_class):
    proc, view = parked
    with reader_class(proc.pid) as reader:
        assert tuple(reader.version) == tuple(view["version"])
        # several reads: the later ones may come from caches, and must not drift
        for attempt in range(3):
            threads = reader.read()
            problems = compare_with_view(view, threads)
            assert not problems, f"read #{attempt + 1}:\n" + "\n".join(problems)


def test_parked_threads_are_idle_and_without_gil(parked, interpreter, reader_class):
    proc, _view = parked
    with reader_class(proc.pid) as reader:
        threads = reader.read()
    assert threads
    busy = [(t.name, t.native_id, t.idle) for t in threads if t.idle is not True]
    assert not busy, f"parked threads not reported idle: {busy}"
    # A free-threaded build has no GIL: there ThreadStack.gil says whether the thread is
    # attached (running Python) instead. Nothing is asserted about it here for those builds.
    if not interpreter.free_threaded:
        holders = [(t.name, t.native_id) for t in threads if t.gil]
        assert not holders, (
            f"all threads are blocked, yet these are said to hold the GIL: {holders}"
        )


def test_reader_closes_and_context_manager(parked, reader_class):
    proc, _view = parked
    reader = reader_class(proc.pid)
    try:
        assert reader.read()
    finally:
        reader.close()
    with reader_class(proc.pid) as again:
        assert again.read()


# --- GIL and idle on a busy process -------------------------------------------------------------

SPINNER = r"""
import json, threading, time

def spin():
    x = 0
    while True:
        x += 1

def sleep_forever():
    while True:
        time.sleep(3600)

for i in range(2):
    threading.Thread(target=sleep_forever, name="sleeper-%d" % i, daemon=True).start()
spinner = threading.Thread(target=spin, name="spinner", daemon=True)
spinner.start()
print(json.dumps({"spinner": spinner.ident}), flush=True)
sleep_forever()
"""

SAMPLES = 50


def test_spinning_thread_holds_gil_and_is_not_idle(interpreter, spawn, reader_class):
    proc = spawn.python(interpreter, SPINNER)
    spinner_ident = json.loads(read_line(proc))["spinner"]
    time.sleep(0.05)  # let the sleepers reach time.sleep()
    spinner_gil = spinner_busy = sleepers_gil = sleepers_idle = sleeper_samples = 0
    several_holders = []
    with reader_class(proc.pid) as reader:
        for i in range(SAMPLES):
            threads = reader.read()
            by_ident = {t.thread_id: t for t in threads}
            assert spinner_ident in by_ident, f"read #{i}: no spinner among {threads}"
            spinner = by_ident[spinner_ident]
            spinner_gil += bool(spinner.gil)
            spinner_busy += spinner.idle is False
            if spinner.error is None:
                assert spinner.frames and spinner.frames[0].name == "spin", spinner.frames[:2]
            for t in threads:
                if t.thread_id != spinner_ident:
                    sleeper_samples += 1
                    sleepers_gil += bool(t.gil)
                    sleepers_idle += t.idle is True
            holders = [t.name for t in threads if t.gil]
            if len(holders) > 1:
                several_holders.append(holders)
            time.sleep(0.002)
    # Generous thresholds: this machine is noisy. The spinner never gives the GIL away (nobody
    # asks for it) and is always runnable.
    summary = (
        f"spinner: gil in {spinner_gil}/{SAMPLES}, not idle in {spinner_busy}/{SAMPLES}; "
        f"sleepers: gil in {sleepers_gil}/{sleeper_samples}, idle in "
        f"{sleepers_idle}/{sleeper_samples}"
    )
    assert spinner_busy >= 0.6 * SAMPLES, summary
    assert sleepers_idle >= 0.6 * sleeper_samples, summary
    # A free-threaded build has no GIL (ThreadStack.gil there says whether the thread is
    # attached): the GIL assertions below are for GIL builds only.
    if not interpreter.free_threaded:
        assert not several_holders, f"reads with more than one GIL holder: {several_holders[:5]}"
        assert spinner_gil >= 0.6 * SAMPLES, summary
        assert sleepers_gil <= 0.2 * sleeper_samples, summary


# --- py-spy as a second opinion -------------------------------------------------------------------


@pytest.fixture(scope="module")
def py_spy_dump(parked, interpreter):
    """`py-spy dump --json` of the parked target, keyed by thread ident."""
    exe = shutil.which("py-spy")
    if exe is None:
        pytest.skip("py-spy executable not found on PATH (pip install py-spy)")
    try:
        subprocess.run([exe, "--version"], capture_output=True, check=True, timeout=30)
    except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"py-spy executable {exe} does not run: {e}")
    proc, _view = parked
    out = subprocess.run(
        [exe, "dump", "--json", "--pid", str(proc.pid)], capture_output=True, text=True, timeout=60
    )
    if out.returncode != 0 and interpreter.free_threaded:
        # py-spy 0.4 does not know free-threaded builds ("Failed to find python version
        # from target process"): no second opinion there.
        error = (out.stderr.strip().splitlines() or ["no message"])[0]
        pytest.skip(f"py-spy cannot read the free-threaded {interpreter.id}: {error}")
    assert out.returncode == 0, f"py-spy dump failed: {out.stderr}"
    return {t["thread_id"]: t for t in json.loads(out.stdout)}


def spy_frame_matches(spy: dict, name: str, filename: str, line: int) -> bool:
    """Compare what py-spy reports comparably.

    Differences between py-spy's JSON and ours, all tolerated here:
    - py-spy has no firstlineno: not compared.
    - py-spy 0.4 reports co_qualname on 3.11+ like us, but older py-spy versions report only
      co_name: accept its name when it is the last component of our qualname.
    - the text output of py-spy shortens filenames; its JSON has the full co_filename in
      "filename" (and the short one in "short_filename"): compare the full one when present.
    - py-spy's "active" is its own idleness heuristic and "owns_gil" its GIL guess: compared
      with ours only for this target, where every thread is blocked for good.
    """
    names_ok = spy["name"] == name or name.endswith("." + spy["name"])
    if spy.get("filename"):
        file_ok = spy["filename"] == filename
    else:
        file_ok = os.path.basename(filename) == spy.get("short_filename")
    return names_ok and file_ok and spy["line"] == line


def compare_with_py_spy(spy_threads: dict, threads, what: str, gil: bool = True) -> list[str]:
    """Differences between py-spy's dump and `threads`; `gil=False` (a free-threaded build,
    where there is no GIL to own) leaves py-spy's owns_gil and our gil uncompared."""
    problems = []
    if set(spy_threads) != {t.thread_id for t in threads}:
        problems.append(
            f"thread idents differ: py-spy {sorted(spy_threads)}, {what} "
            f"{sorted(t.thread_id for t in threads)}"
        )
    for t in threads:
        spy = spy_threads.get(t.thread_id)
        if spy is None:
            continue
        who = f"thread {t.name!r} (ident {t.thread_id})"
        if spy["os_thread_id"] != t.native_id:
            problems.append(f"{who}: py-spy tid {spy['os_thread_id']}, {what} {t.native_id}")
        if spy["thread_name"] != t.name:
            problems.append(f"{who}: py-spy name {spy['thread_name']!r}, {what} {t.name!r}")
        if spy["active"] == bool(t.idle) or (gil and spy["owns_gil"] != bool(t.gil)):
            problems.append(
                f"{who}: py-spy active={spy['active']} owns_gil={spy['owns_gil']}, "
                f"{what} idle={t.idle} gil={t.gil}"
            )
        ours = [(f.name, f.filename, f.line) for f in t.frames]
        theirs = spy["frames"]
        bad = len(ours) != len(theirs) or not all(
            spy_frame_matches(s, *o) for s, o in zip(theirs, ours)
        )
        if bad:
            theirs_t = [(s["name"], s.get("filename"), s["line"]) for s in theirs]
            problems.append(f"{who}: frames differ from py-spy: {frames_mismatch(theirs_t, ours)}")
    return problems


class _ViewThread:
    """The target's own view of a thread, shaped like a ThreadStack (gil/idle: all parked)."""

    def __init__(self, t: dict) -> None:
        self.thread_id, self.native_id, self.name = t["thread_id"], t["native_id"], t["name"]
        self.gil, self.idle = False, True
        self.frames = [_ViewFrame(f) for f in t["frames"]]


class _ViewFrame:
    def __init__(self, f: dict) -> None:
        self.name, self.filename, self.line = f["name"], f["filename"], f["line"]


def test_target_view_matches_py_spy(parked, interpreter, py_spy_dump):
    """Guards the target (no reader needed): an independent tool sees the same stacks."""
    _proc, view = parked
    view_threads = [_ViewThread(t) for t in view["threads"]]
    problems = compare_with_py_spy(
        py_spy_dump, view_threads, "view", gil=not interpreter.free_threaded
    )
    assert not problems, "\n".join(problems)


def test_reader_matches_py_spy(parked, interpreter, py_spy_dump, reader_class):
    proc, _view = parked
    with reader_class(proc.pid) as reader:
        threads = reader.read()
    problems = compare_with_py_spy(
        py_spy_dump, threads, "reader", gil=not interpreter.free_threaded
    )
    assert not problems, "\n".join(problems)
