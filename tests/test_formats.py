"""pstats, gecko (Firefox Profiler) and the binary recording, made by `record` of real
processes and read back: by `pstats.Stats` (this Python, the oldest and the newest), by the
Firefox Profiler's documented schema, and by `replay` — also after the recorder was killed,
and from cut, damaged and foreign files."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pstats
import signal
import struct
import subprocess
import sys
import warnings
import zlib
from collections import Counter
from pathlib import Path

import pytest
from conftest import (
    REPO,
    independent_worth,
    looks,
    reaped_pid,
    require_interpreter,
    target_env,
    wait_until,
)

from spy_magic.demos import demo_path
from spy_magic.engine.sample import Sample, Trace
from spy_magic.profile import Profile
from spy_magic.profile.exports import read_jsonl, write
from spy_magic.profile.gecko import CATEGORIES, state_category
from spy_magic.profile.pstats_export import pstats_dict
from spy_magic.profile.recording import (
    FRAME,
    HEAD,
    MAGIC,
    RecordingError,
    RecordingTruncatedWarning,
    RecordingWriter,
    read_recording,
    zstd_available,
)
from spy_magic.reader import Frame

PYTHON = sys.executable
SPY = [PYTHON, "-m", "spy_magic"]
SPLIT = {"function_x": 3 / 6, "function_y": 2 / 6, "function_z": 1 / 6}


def run(args, timeout=180, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SPY, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def read_quietly(path) -> tuple[Profile, list[str]]:
    """read_recording, with the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        profile = read_recording(path)
    return profile, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def cpu_split(tmp_path_factory):
    """`record -f pstats --recording` of the 3:2:1 demo at 200 Hz: (pstats path, the
    recording as a Profile, record's stderr)."""
    tmp = tmp_path_factory.mktemp("split")
    out, rec = tmp / "split.pstats", tmp / "split.bin"
    result = run(["record", "-f", "pstats", "-o", out, "--recording", rec, "--rate", "200",
                  "--", PYTHON, demo_path("cpu_split"), "--repeat", "40"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    profile, notes = read_quietly(rec)
    assert notes == [], notes  # a recording closed by its recorder is whole
    return out, profile, result.stderr


# -- pstats ---------------------------------------------------------------------------------
def _entries(stats: dict, name: str) -> list[tuple]:
    return [(key, value) for key, value in stats.items() if key[2] == name]


def test_pstats_loads_and_shows_the_3_2_1_split(cpu_split):
    out, profile, _ = cpu_split
    stats = pstats.Stats(str(out))
    split = str(demo_path("cpu_split"))
    own = {}
    for name in SPLIT:
        [(key, (cc, nc, tt, ct, callers))] = _entries(stats.stats, name)
        assert key[0] == split and isinstance(key[1], int)
        assert cc == nc > 0  # no recursion: one number, the samples that saw it
        own[name] = tt
        # called only from the module's loop: that one caller edge holds all of it
        [(caller, edge)] = callers.items()
        assert caller[2] == "<module>" and caller[0] == split
        assert edge == (nc, cc, tt, ct)
    total = sum(own.values())
    print("tottime shares:", {name: round(tt / total, 3) for name, tt in own.items()})
    assert profile.sample_count >= 100, profile
    # tottime weighs each sample by its gap: the bound is for what the samples are worth
    # (samples a late sampler took back to back are one look; a long gap weighs much).
    durations = profile.sample_durations()
    weights, at = [], 0
    for size in looks([s.timestamp for s in profile.samples]):
        weights.append(sum(durations[at : at + size]))
        at += size
    worth = independent_worth(weights)
    print(f"worth {worth:.0f} independent samples of {profile.sample_count}")
    if worth < 100:
        pytest.skip(f"the machine ran the sampler at moments worth only {worth:.0f} independent"
                    " samples, not the 100 the split's bound needs")  # fmt: skip
    for name, truth in SPLIT.items():
        bound = 3 * math.sqrt(truth * (1 - truth) / worth) + 0.01
        assert abs(own[name] / total - truth) < bound, (name, own, total, worth)
    text = io.StringIO()
    pstats.Stats(str(out), stream=text).sort_stats("tottime").print_stats(3)
    assert "function_x" in text.getvalue()


def test_pstats_times_are_the_samples_measured_gaps(cpu_split):
    """tottime is exactly the summed gaps of the samples that had the function innermost,
    cumtime of those that had it anywhere, ncalls their count (checked against the raw
    recording of the same run)."""
    out, profile, _ = cpu_split
    stats = pstats.Stats(str(out)).stats
    durations = profile.sample_durations()
    own, anywhere, seen = Counter(), Counter(), Counter()
    split = str(demo_path("cpu_split"))
    for i, sample in enumerate(profile.samples):
        for trace in sample.traces:
            if trace.frames:
                own[trace.frames[0].name, trace.frames[0].filename] += durations[i]
                for key in {(f.name, f.filename) for f in trace.frames}:
                    anywhere[key] += durations[i]
                    seen[key] += 1
    for name in [*SPLIT, "<module>"]:
        [(_, (cc, _nc, tt, ct, _callers))] = [e for e in _entries(stats, name) if e[0][0] == split]
        assert math.isclose(tt, own[name, split], rel_tol=1e-9, abs_tol=1e-12), name
        assert math.isclose(ct, anywhere[name, split], rel_tol=1e-9), name
        assert cc == seen[name, split], name
    with_frames = sum(
        d for d, s in zip(durations, profile.samples) if any(t.frames for t in s.traces)
    )
    assert math.isclose(pstats.Stats(str(out)).total_tt, with_frames, rel_tol=1e-9)


def test_pstats_counts_recursion_as_frames_over_samples():
    fib = [
        Frame("fib", "fib.py", 2, 1),
        Frame("fib", "fib.py", 4, 1),
        Frame("<module>", "m.py", 9, 1),
    ]
    deep = Trace(1, 1, 1, "MainThread", True, False, (fib[0], fib[1], fib[1], fib[2]))
    work = Frame("work", "fib.py", 7, 6)
    shallow = Trace(1, 1, 1, "MainThread", True, False, (work, fib[1], fib[2]))
    profile = Profile()
    profile.extend([Sample(0.0, [deep]), Sample(0.5, [shallow]), Sample(1.0, [deep])])
    stats = pstats_dict(profile)
    cc, nc, tt, ct, callers = stats[("fib.py", 1, "fib")]
    assert (cc, nc) == (3, 7)  # 3 samples, 7 fib frames in them
    assert tt == 1.0 and ct == 1.5  # innermost in samples 0 and 2 (0.5 s each), anywhere in all
    # per caller (nc, cc, tt, ct): from the module once a sample, never innermost there
    assert callers[("m.py", 1, "<module>")] == (3, 3, 0.0, 1.5)
    assert callers[("fib.py", 1, "fib")] == (4, 2, 1.0, 1.0)  # fib called by fib, innermost
    assert stats[("fib.py", 6, "work")][4] == {("fib.py", 1, "fib"): (1, 1, 0.5, 0.5)}
    by_line = pstats_dict(profile, by="line")
    assert ("fib.py", 2, "fib") in by_line and ("fib.py", 4, "fib") in by_line


def _load_elsewhere(interp_id: str, path: Path) -> dict:
    interp = require_interpreter(interp_id)
    code = (
        "import json, pstats, sys\n"
        "s = pstats.Stats(sys.argv[1])\n"
        "print(json.dumps({'class': type(s).__name__, 'tt': s.total_tt,"
        " 'names': sorted({k[2] for k in s.stats})}))"
    )
    out = subprocess.run(
        interp.argv("-c", code, path), capture_output=True, text=True, timeout=120,
        env=target_env(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.mark.parametrize("interp_id", ["pyenv-3.9", "sid-3.15"])
def test_pstats_loads_in_the_oldest_and_newest_pythons(cpu_split, interp_id):
    out, _profile, _ = cpu_split
    loaded = _load_elsewhere(interp_id, out)
    assert loaded["class"] == "Stats"
    assert set(SPLIT) <= set(loaded["names"])
    assert math.isclose(loaded["tt"], pstats.Stats(str(out)).total_tt, rel_tol=1e-9)


def test_pstats_sampled_marker_is_for_python_3_15(cpu_split, tmp_path):
    _out, profile, _ = cpu_split
    marked = tmp_path / "marked.pstats"
    write(profile, marked, "pstats", sampled_marker=True)
    assert _load_elsewhere("sid-3.15", marked)["class"] == "SampledStats"


# -- gecko ----------------------------------------------------------------------------------
COLORS = {"transparent", "purple", "green", "orange", "yellow", "lightblue", "blue", "brown",
          "magenta", "red", "lightred", "darkgrey", "grey"}  # fmt: skip
# Processed profile format version 57, from the Firefox Profiler's src/types/profile.ts and
# docs-developer/CHANGELOG-formats.md (53: no stack categories, 54: no frame implementation,
# 56: strings shared, 58: funcTable.source replaces fileName).
TABLES = {
    "samples": ("stack", "time", "weight"),
    "markers": ("data", "name", "startTime", "endTime", "phase", "category"),
    "stackTable": ("frame", "prefix"),
    "frameTable": ("address", "inlineDepth", "category", "subcategory", "func", "nativeSymbol",
                   "innerWindowID", "line", "column"),
    "funcTable": ("name", "isJS", "relevantForJS", "resource", "fileName", "lineNumber",
                  "columnNumber"),
    "resourceTable": ("lib", "name", "host", "type"),
    "nativeSymbols": ("libIndex", "address", "name", "functionSize"),
}  # fmt: skip
GONE = {"stackTable": {"category", "subcategory"}, "frameTable": {"implementation",
        "optimizations"}, "funcTable": {"source"}}  # fmt: skip
THREAD_KEYS = {"processType", "processStartupTime", "processShutdownTime", "registerTime",
               "unregisterTime", "pausedRanges", "name", "isMainThread", "pid", "tid",
               *TABLES}  # fmt: skip
META_KEYS = {"interval", "startTime", "processType", "product", "stackwalk", "version",
             "preprocessedProfileVersion", "markerSchema", "categories"}  # fmt: skip


def check_gecko_schema(doc: dict) -> None:
    """The key structural rules of processed profile version 57."""
    assert {"meta", "libs", "threads", "shared"} <= set(doc)
    meta = doc["meta"]
    assert set(meta) >= META_KEYS, META_KEYS - set(meta)
    assert meta["preprocessedProfileVersion"] == 57 and meta["stackwalk"] in (0, 1)
    categories = meta["categories"]
    assert any(c["color"] == "grey" for c in categories)  # the default category
    for c in categories:
        assert c["color"] in COLORS and c["subcategories"] and isinstance(c["name"], str)
    strings = doc["shared"]["stringArray"]
    assert all(isinstance(s, str) for s in strings)
    assert doc["threads"]
    for thread in doc["threads"]:
        assert set(thread) >= THREAD_KEYS, THREAD_KEYS - set(thread)
        assert "stringArray" not in thread  # shared since 56
        assert isinstance(thread["pid"], str) and isinstance(thread["isMainThread"], bool)
        for table, columns in TABLES.items():
            t = thread[table]
            assert not GONE.get(table, set()) & set(t), (table, set(t))
            for column in columns:
                assert len(t[column]) == t["length"], (table, column)
        samples, stacks = thread["samples"], thread["stackTable"]
        frames, funcs = thread["frameTable"], thread["funcTable"]
        assert samples["weightType"] in ("samples", "tracing-ms", "bytes")
        assert samples["length"] > 0
        assert all(s is None or 0 <= s < stacks["length"] for s in samples["stack"])
        assert samples["time"] == sorted(samples["time"])
        assert all(w > 0 for w in samples["weight"])
        for i, (frame, prefix) in enumerate(zip(stacks["frame"], stacks["prefix"])):
            assert 0 <= frame < frames["length"]
            assert prefix is None or 0 <= prefix < i  # parents come first
        for func, category, sub in zip(frames["func"], frames["category"], frames["subcategory"]):
            assert 0 <= func < funcs["length"]
            assert category is None or (0 <= category < len(categories))
            assert category is None or 0 <= sub < len(categories[category]["subcategories"])
        for name, file, resource in zip(funcs["name"], funcs["fileName"], funcs["resource"]):
            assert 0 <= name < len(strings) and (file is None or 0 <= file < len(strings))
            assert resource == -1 or 0 <= resource < thread["resourceTable"]["length"]


def gecko_samples(doc: dict, thread: dict) -> list[tuple[float, tuple[str, ...], int]]:
    """(time ms, function names root first, the innermost frame's category) per sample."""
    strings = doc["shared"]["stringArray"]
    stacks, frames, funcs = thread["stackTable"], thread["frameTable"], thread["funcTable"]
    out = []
    for time_ms, stack in zip(thread["samples"]["time"], thread["samples"]["stack"]):
        names = []
        leaf_category = frames["category"][stacks["frame"][stack]]
        while stack is not None:
            names.append(strings[funcs["name"][frames["func"][stacks["frame"][stack]]]])
            stack = stacks["prefix"][stack]
        out.append((time_ms, tuple(reversed(names)), leaf_category))
    return out


TWO_THREADS = """\
import threading, time
def sleeper():
    while True:
        time.sleep(0.005)
def spinner():
    end = time.perf_counter() + 1.5
    while time.perf_counter() < end:
        pass
threading.Thread(target=sleeper, name="sleeper", daemon=True).start()
spinner()
"""


@pytest.fixture(scope="module")
def two_threads_gecko(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gecko")
    out, rec = tmp / "two.gecko.json", tmp / "two.bin"
    result = run(["record", "-f", "gecko", "-o", out, "--recording", rec, "--rate", "200",
                  "--", PYTHON, "-c", TWO_THREADS])  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text()), read_quietly(rec)[0]


def test_gecko_follows_the_documented_schema(two_threads_gecko):
    doc, _ = two_threads_gecko
    check_gecko_schema(doc)
    assert [c["name"] for c in doc["meta"]["categories"]] == [c["name"] for c in CATEGORIES]
    assert {t["name"] for t in doc["threads"]} == {"MainThread", "sleeper"}


def test_gecko_round_trips_times_stacks_and_states(two_threads_gecko):
    doc, profile = two_threads_gecko
    threads = {(int(t["pid"]), t["tid"]): t for t in doc["threads"]}
    durations = profile.sample_durations()
    expected: dict[tuple, list] = {}
    for i, sample in enumerate(profile.samples):
        for trace in sample.traces:
            if trace.frames:
                key = (trace.pid, trace.native_id)
                names = tuple(f.name for f in reversed(trace.frames))
                ms, weight = round(sample.timestamp * 1000, 6), round(durations[i] * 1000, 6)
                expected.setdefault(key, []).append((ms, names, state_category(trace), weight))
    assert set(threads) == set(expected)
    for key, thread in threads.items():
        got = [(*s, w) for s, w in zip(gecko_samples(doc, thread), thread["samples"]["weight"])]
        assert got == expected[key], thread["name"]
    by_name = {t["name"]: gecko_samples(doc, t) for t in doc["threads"]}
    idle = CATEGORIES.index(next(c for c in CATEGORIES if c["name"] == "Idle"))
    python = CATEGORIES.index(next(c for c in CATEGORIES if c["name"] == "Python"))
    assert any(s[2] == idle and s[1][-1] == "sleeper" for s in by_name["sleeper"])
    assert any(s[2] == python and s[1][-1] == "spinner" for s in by_name["MainThread"])
    assert doc["meta"]["startTime"] == profile.metadata["started_at"] * 1000


# -- the binary recording -------------------------------------------------------------------
def frames_of(data: bytes) -> list[tuple[bytes, int, int]]:
    """(kind, offset, end) of each whole frame after the head."""
    out, offset = [], HEAD.size
    while offset + FRAME.size <= len(data):
        kind, length, _ = FRAME.unpack_from(data, offset)
        end = offset + FRAME.size + length
        if end > len(data):
            break
        out.append((kind, offset, end))
        offset = end
    return out


def test_binary_recording_is_compact_and_lossless(tmp_path):
    out, jsonl = tmp_path / "r.bin", tmp_path / "r.jsonl"
    result = run(["record", "-f", "binary", "-o", out, "--rate", "500", "--",
                  PYTHON, demo_path("cpu_split"), "--repeat", "40"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"wrote binary to {out}" in result.stderr
    data = out.read_bytes()
    magic, version, compression, _ = HEAD.unpack_from(data)
    assert magic == MAGIC and version == 1
    assert compression == (2 if zstd_available() else 1)  # zstd, else zlib
    kinds = [kind for kind, _, _ in frames_of(data)]
    assert kinds[0] == b"H" and kinds[-1] == b"E" and kinds.count(b"D") >= 2  # ~0.5 s a frame
    profile, notes = read_quietly(out)
    assert notes == []
    assert profile.sample_count > 100 and profile.metadata["end_reason"] == "target exited"
    write(profile, jsonl, "jsonl")
    assert read_jsonl(jsonl) == profile
    per_sample = len(data) / profile.sample_count
    print(f"binary: {len(data)} bytes, {per_sample:.1f} bytes a sample; "
          f"jsonl {jsonl.stat().st_size} bytes")  # fmt: skip
    assert len(data) * 4 < jsonl.stat().st_size


def test_recording_beside_another_format_is_the_same_profile(tmp_path):
    out, rec = tmp_path / "p.jsonl", tmp_path / "p.bin"
    result = run(["record", "-f", "jsonl", "-o", out, "--recording", rec, "--",
                  PYTHON, demo_path("slow_script"), "--repeat", "2"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"wrote the recording to {rec}" in result.stderr
    assert read_quietly(rec)[0] == read_jsonl(out)


def test_a_killed_recorder_leaves_a_readable_recording(spawn, tmp_path):
    target = spawn([PYTHON, demo_path("cpu_split"), "--repeat", "100000"])
    out = tmp_path / "killed.bin"
    recorder = subprocess.Popen(
        [*SPY, "record", "--pid", str(target.pid), "-r", "200", "-f", "binary", "-o", str(out)],
        stderr=subprocess.DEVNULL,
    )
    try:

        def samples_so_far() -> int:
            with contextlib.suppress(FileNotFoundError, RecordingError):
                return read_quietly(out)[0].sample_count
            return 0

        wait_until(lambda: samples_so_far() >= 200, 120, "200 samples on disk")
        before = samples_so_far()
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    assert recorder.returncode == -signal.SIGKILL
    assert target.poll() is None  # the target runs on
    profile, notes = read_quietly(out)
    print(f"killed: {before} samples read before the kill, {profile.sample_count} recovered")
    assert profile.sample_count >= before >= 200
    assert profile.metadata["pid"] == target.pid
    assert len(notes) == 1 and f"{profile.sample_count} samples recovered" in notes[0], notes
    collapsed = tmp_path / "killed.txt"
    result = run(["replay", out, "-f", "collapsed", "-o", collapsed])
    assert result.returncode == 0, result.stderr
    assert f"{profile.sample_count} samples recovered" in result.stderr
    assert "function_x" in collapsed.read_text()
    counts = sum(int(line.rsplit(" ", 1)[1]) for line in collapsed.read_text().splitlines())
    assert counts == sum(1 for s in profile.samples for t in s.traces if t.frames)


@pytest.mark.skipif(zstd_available(), reason="this Python reads zstd")
def test_zstd_recording_needs_python_3_14(tmp_path):
    """Made by the tool under 3.15 in the sid root, from a real process there; read back
    there (replay to jsonl), and refused here with the reason."""
    interp = require_interpreter("sid-3.15")
    venv = "/opt/venv-3.15/bin/python"  # a symlink that resolves only inside the root
    if not os.path.isfile(os.path.join(interp.root, "opt/venv-3.15/pyvenv.cfg")):
        pytest.skip(f"no {venv} in {interp.root} (tools/install_pythons.sh sid makes it)")
    rec, jsonl = tmp_path / "z.bin", tmp_path / "z.jsonl"
    env = target_env(PYTHONPATH=str(REPO))

    def in_root(*args):
        cmd = ["chroot", interp.root, venv, "-m", "spy_magic", *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)

    made = in_root("record", "-f", "binary", "-o", rec, "--", interp.path,
                   demo_path("cpu_split"), "--repeat", "10")  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    assert HEAD.unpack_from(rec.read_bytes())[2] == 2  # zstd
    replayed = in_root("replay", rec, "-f", "jsonl", "-o", jsonl)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    assert read_jsonl(jsonl).sample_count > 20
    result = run(["replay", rec, "-f", "collapsed", "-o", tmp_path / "z.txt"])
    assert result.returncode == 1
    assert "zstd" in result.stderr and "3.14" in result.stderr
    assert not (tmp_path / "z.txt").exists()


# -- replay of bad input ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_recording(tmp_path_factory) -> tuple[bytes, Profile]:
    """A recording of a real run with several data frames (flushed every 10 ms)."""
    tmp = tmp_path_factory.mktemp("good")
    jsonl = tmp / "src.jsonl"
    result = run(["record", "-f", "jsonl", "-o", jsonl, "--rate", "300", "--",
                  PYTHON, demo_path("cpu_split"), "--repeat", "10"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    profile = read_jsonl(jsonl)
    buffer = io.BytesIO()
    writer = RecordingWriter(buffer, profile.metadata, compression="zlib", flush_every=0.0)
    for change in profile.rate_changes:
        writer.add_rate_change(change)
    for sample in profile.samples:
        writer.add(sample)
    writer.close(profile.metadata)
    data = buffer.getvalue()
    assert read_recording(io.BytesIO(data)) == profile
    return data, profile


def _samples_before(data: bytes, cut: int) -> int:
    """Samples in the whole data frames before byte `cut`."""
    kept = data[:cut]
    whole = [end for kind, _, end in frames_of(kept)]
    last = whole[-1] if whole else HEAD.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_recording(io.BytesIO(data[:last])).sample_count


def _replay(tmp_path, data: bytes, name: str) -> tuple[subprocess.CompletedProcess, Path]:
    src, out = tmp_path / name, tmp_path / (name + ".jsonl")
    src.write_bytes(data)
    return run(["replay", src, "-f", "jsonl", "-o", out]), out


@pytest.mark.parametrize("where", ["mid-frame", "frame-head", "between-frames", "end-frame"])
def test_replay_of_a_cut_recording_gives_everything_before_the_cut(tmp_path, good_recording, where):
    data, profile = good_recording
    frames = frames_of(data)
    data_frames = [f for f in frames if f[0] == b"D"]
    middle = data_frames[len(data_frames) // 2]
    cut = {
        "mid-frame": (middle[1] + middle[2]) // 2,
        "frame-head": middle[1] + 3,
        "between-frames": middle[2],
        "end-frame": frames[-1][2] - 2,
    }[where]
    expected = _samples_before(data, cut)
    assert 0 < expected <= profile.sample_count
    if where == "end-frame":
        assert expected == profile.sample_count
    result, out = _replay(tmp_path, data[:cut], "cut.bin")
    assert result.returncode == 0, result.stderr
    assert f"{expected} samples recovered" in result.stderr and "no end frame" in result.stderr
    replayed = read_jsonl(out)
    assert replayed.sample_count == expected
    assert list(replayed.samples) == list(profile.samples[:expected])


def test_replay_of_a_damaged_recording_converts_what_came_before(tmp_path, good_recording):
    data, profile = good_recording
    data_frames = [f for f in frames_of(data) if f[0] == b"D"]
    _, start, end = data_frames[len(data_frames) // 2]
    expected = _samples_before(data, start)
    damaged = bytearray(data)
    damaged[(start + FRAME.size + end) // 2] ^= 0xFF
    result, out = _replay(tmp_path, bytes(damaged), "damaged.bin")
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr
    assert f"{expected} samples were recovered before it" in result.stderr
    assert list(read_jsonl(out).samples) == list(profile.samples[:expected])
    # the API: the same, as an exception carrying the samples
    with pytest.raises(RecordingError, match="checksum") as caught:
        read_recording(io.BytesIO(bytes(damaged)))
    assert caught.value.samples == expected == caught.value.profile.sample_count


def _cpython_binary(tmp_path) -> bytes:
    interp = require_interpreter("sid-3.15")
    script, out = tmp_path / "t.py", tmp_path / "tachyon.bin"
    script.write_text("import time\nend = time.time() + 0.3\nwhile time.time() < end: pass\n")
    made = subprocess.run(
        interp.argv("-m", "profiling.sampling", "run", "--binary", "-o", out, script),
        capture_output=True, text=True, timeout=120, env=target_env(),
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"CPython 3.15's sampler could not record here: {made.stderr[-500:]}")
    return out.read_bytes()


@pytest.mark.parametrize(
    "kind, message",
    [
        ("empty", "the file is empty"),
        ("png", "starts with b'\\x89PNG"),
        ("text", "not a spy_magic recording"),
        ("jsonl-garbage", "no samples recovered"),
        ("head-only", "cut off inside its first 12 bytes"),
        ("magic-only", "stops before its header"),
        ("newer", "version 9 is newer"),
        ("tachyon", "profiling.sampling replay"),
    ],
)
def test_replay_of_a_foreign_file_says_what_it_is(tmp_path, good_recording, kind, message):
    data, _ = good_recording
    content = {
        "empty": lambda: b"",
        "png": lambda: b"\x89PNG\r\n\x1a\n" + os.urandom(64),
        "text": lambda: b"function_x 12\n",
        "jsonl-garbage": lambda: b'{"type": "header", "format": "spy_magic.profile"}\n{oops\n',
        "head-only": lambda: data[:7],
        "magic-only": lambda: data[: HEAD.size],
        "newer": lambda: struct.pack("<8sHBB", MAGIC, 9, 1, 0) + data[HEAD.size :],
        "tachyon": lambda: _cpython_binary(tmp_path),
    }[kind]()
    result, out = _replay(tmp_path, content, f"{kind}.in")
    assert result.returncode == 1, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_replay_converts_to_every_format(tmp_path, good_recording):
    data, profile = good_recording
    src = tmp_path / "all.bin"
    src.write_bytes(data)
    from spy_magic.profile import FORMATS

    for fmt in sorted(FORMATS):
        result = run(["replay", src, "-f", fmt, "-o", tmp_path / f"all.{fmt}"])
        assert result.returncode == 0, (fmt, result.stderr)
        assert f"{profile.sample_count} samples" in result.stderr
    assert read_quietly(tmp_path / "all.binary")[0] == profile
    assert read_jsonl(tmp_path / "all.jsonl") == profile
    assert pstats.Stats(str(tmp_path / "all.pstats")).total_tt > 0
    check_gecko_schema(json.loads((tmp_path / "all.gecko").read_text()))
    # jsonl is a recording too
    again = run(["replay", tmp_path / "all.jsonl", "-f", "binary", "-o", tmp_path / "again.bin"])
    assert again.returncode == 0, again.stderr
    assert read_quietly(tmp_path / "again.bin")[0] == profile
    same = run(["replay", src, "-f", "binary", "-o", src])
    assert same.returncode == 2 and "is the input" in same.stderr
    assert src.read_bytes() == data
    # Without -f the output's suffix says the format; a bare .json is refused, -f asked.
    by_suffix = run(["replay", src, "-o", tmp_path / "named.pstats"])
    assert by_suffix.returncode == 0, by_suffix.stderr
    assert pstats.Stats(str(tmp_path / "named.pstats")).total_tt > 0
    vague = run(["replay", src, "-o", tmp_path / "named.json"])
    assert vague.returncode == 2 and "say which with -f" in vague.stderr
    assert not (tmp_path / "named.json").exists()


def test_record_rejects_recording_twice():
    result = run(["record", "-f", "binary", "--recording", "x.bin", "--", PYTHON, "-c", "0"])
    assert result.returncode == 2 and "drop --recording" in result.stderr


def test_crc_guards_every_frame(good_recording):
    data, _ = good_recording
    for _kind, start, end in frames_of(data):
        _, length, crc = FRAME.unpack_from(data, start)
        assert zlib.crc32(data[start + FRAME.size : end]) == crc and end - start == length + 9
    with pytest.warns(RecordingTruncatedWarning):
        read_recording(io.BytesIO(data[:-1]))


def test_binary_record_that_samples_nothing_leaves_no_file(tmp_path):
    pid = reaped_pid()
    out = tmp_path / "nothing.bin"
    result = run(["record", "--pid", pid, "-f", "binary", "-o", out])
    assert result.returncode == 1 and f"no process with pid {pid}" in result.stderr
    assert not out.exists()


def test_binary_record_to_an_unwritable_path_is_a_clear_error(tmp_path):
    out = tmp_path / "no" / "such" / "dir" / "x.bin"
    result = run(
        ["record", "-f", "binary", "-o", out, "--", PYTHON, "-c", "import time; time.sleep(60)"]
    )
    # Tried before anything runs, like any -o: exit 2, the command never started.
    assert result.returncode == 2, result.stderr
    assert str(out) in result.stderr and "Traceback" not in result.stderr
