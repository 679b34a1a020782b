"""The timeline's bounded buckets and the line heat map: on known samples, and `record -f
heatmap` on a real process whose source is read through /proc/PID/root while it runs."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from conftest import TARGETS

from spy_magic.engine.sample import Sample, Trace
from spy_magic.profile import Profile
from spy_magic.profile.flametree import StringTable
from spy_magic.profile.heatmap import heatmap_sections, to_heatmap
from spy_magic.profile.sources import SourceCollector, read_source
from spy_magic.profile.timeline import Timeline
from spy_magic.reader import Frame

PYTHON = sys.executable
WORK = TARGETS / "diff_work.py"
MAIN = Frame("main", "/app/run.py", 5, 1)


def trace(*leaves: Frame, tid: int = 1) -> Trace:
    return Trace(1, tid, tid, f"T{tid}", True, False, (*leaves, MAIN))


def test_the_timeline_stays_bounded_and_keeps_every_stack_counted():
    """10 000 s at 10 Hz into 50 buckets: the width doubles as needed, counts are conserved,
    and each bucket's dominant stack is the one that ran most in it."""
    timeline = Timeline(buckets=50, first_width=0.001)
    a, b = Frame("a", "/app/run.py", 10, 10), Frame("b", "/app/run.py", 20, 20)
    seen = Counter()
    for i in range(100_000):
        t = i * 0.1
        leaf = a if t < 5000 else b  # a for the first half, then b
        timeline.add(Sample(t, [trace(leaf), trace(b, tid=2)]))
        seen[leaf.name] += 1
        lanes = timeline.lanes.values()
        assert len(timeline.samples) <= 50 and all(len(ln.buckets) <= 50 for ln in lanes)
    assert timeline.width == pytest.approx(0.001 * 2**18)  # 262 s: 10 000 s in 39 buckets
    strings = StringTable()
    data = timeline.to_json(strings)
    assert sum(data["samples"]) == 100_000
    lane = data["threads"][0]
    assert sum(lane["count"]) == 100_000
    names = [strings.table[data["nodes"]["name"][n]] for n in lane["stack"] if n >= 0]
    half = data["buckets"] // 2
    assert set(names[: half - 1]) == {"a"} and set(names[half + 1 :]) == {"b"}
    assert {strings.table[data["nodes"]["name"][n]] for n in data["threads"][1]["stack"]} == {"b"}
    assert len(data["nodes"]["parent"]) == 3  # main, a, b: each call path shipped once


def test_a_timeline_filled_from_a_profile_spans_it():
    p = Profile({"rate": 100.0})
    for i in range(300):
        p.add(Sample(i * 0.01, [trace(Frame("work", "/app/run.py", 7, 7))]))
    data = Timeline.from_profile(p, buckets=100).to_json(StringTable())
    # the width that fits the recording at once: the buckets are all used, none merged
    assert data["buckets"] in (99, 100)
    assert data["width"] == pytest.approx(p.duration / 99, rel=1e-3)
    assert sum(data["threads"][0]["count"]) == 300


def line_profile() -> Profile:
    source = "import x\n\ndef f():\n    return 1\n\n\ndef main():\n    f()\n"
    p = Profile(
        {
            "rate": 100.0,
            "sources": {"/app/run.py": source},
            "sources_missing": {"/lib/gone.py": "no such file in the target's root"},
        }
    )
    f4, main8 = Frame("f", "/app/run.py", 4, 3), Frame("main", "/app/run.py", 8, 7)
    gone = Frame("helper", "/lib/gone.py", 12, 11)
    for i in range(100):
        stack = (f4, main8) if i < 75 else (gone, main8)
        p.add(Sample(i * 0.01, [Trace(1, 1, 1, "T", True, False, stack)]))
    return p


def test_the_heat_map_puts_each_lines_share_beside_its_source():
    page = to_heatmap(line_profile())
    assert page.startswith("<!DOCTYPE html>")
    row = page[page.index('data-line="4"') :].split("</tr>")[0]
    assert "75.0%" in row and "return 1" in row and "rgba(229, 83, 61" in row
    row8 = page[page.index('data-line="8"') :].split("</tr>")[0]
    assert "100.0%" in row8 and "f()" in row8  # on every stack, running in none
    assert (
        "source not available (no such file in the target&#x27;s root)" in page
        or "source not available (no such file in the target's root)" in page
    )
    gone = page[page.index('data-file="/lib/gone.py"') :]
    assert 'data-line="12"' in gone and "25.0%" in gone  # its shares without its source
    # the notebook's cell heat map: only the files asked for
    cell = heatmap_sections(line_profile(), files=["/app/run.py"], heading="Cell heat map")
    assert "Cell heat map" in cell and "/lib/gone.py" not in cell


def test_sources_are_read_from_the_target_while_it_runs(tmp_path):
    script = tmp_path / "held.py"
    script.write_text("import sys, time\nprint('up', flush=True)\ntime.sleep(30)\n")
    proc = subprocess.Popen([PYTHON, script.name], cwd=tmp_path, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout.readline() == "up\n"
        text, why = read_source(proc.pid, script.name)  # relative: through /proc/PID/cwd
        assert why is None and "time.sleep(30)" in text
        text, why = read_source(proc.pid, str(script))  # absolute: through /proc/PID/root
        assert why is None and "time.sleep(30)" in text
        assert read_source(proc.pid, "/no/such.py") == (None, "no such file in the target's root")
        collector = SourceCollector()
        collector(Sample(0.0, [Trace(proc.pid, 1, 1, None, True, False,
                                     (Frame("<module>", str(script), 3, 1),
                                      Frame("<module>", "<frozen runpy>", 1, 1)))]))  # fmt: skip
        meta = collector.metadata()
        assert "time.sleep(30)" in meta["sources"][str(script)]
        assert meta["sources_missing"] == {"<frozen runpy>": "no source file (generated code)"}
    finally:
        proc.kill()
        proc.wait()
    assert read_source(proc.pid, str(script)) == (
        None,
        "the target ended before its files were read",
    )


def test_record_heatmap_of_a_real_process(tmp_path):
    out = tmp_path / "heat.html"
    result = subprocess.run(
        [PYTHON, "-m", "spy_magic", "record", "-f", "heatmap", "-o", out, "--rate", "300", "--",
         PYTHON, WORK, "--split", "6:1:1", "--repeat", "6", "--loop", "0.2"],
        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    lines = WORK.read_text().splitlines()
    loop_x = next(n for n, text in enumerate(lines, 1) if "def function_x" in text) + 2
    row = page[page.index(f'data-line="{loop_x}"') :].split("</tr>")[0]
    assert "while time.perf_counter() &lt; end:" in row  # the target's own source text
    assert "rgba(229, 83, 61" in row  # and its heat


def test_a_timeline_of_many_threads_ships_the_busiest():
    timeline = Timeline(buckets=10)
    for i in range(100):
        traces = [trace(Frame("work", "/app/run.py", 7, 7), tid=t) for t in range(1, 41)
                  if t <= 5 or i % 10 == 0]  # fmt: skip
        timeline.add(Sample(i * 0.01, traces))
    data = timeline.to_json(StringTable(), max_threads=8)
    assert data["hidden"] == 32 and len(data["threads"]) == 8
    assert {t["tid"] for t in data["threads"]} >= {1, 2, 3, 4, 5}  # the busy ones


def test_only_the_sources_the_heat_map_shows_are_kept():
    p = line_profile()
    f4 = (Frame("f", "/app/run.py", 4, 3), Frame("main", "/app/run.py", 8, 7))
    for i in range(2000):
        p.add(Sample(2 + i * 0.01, [Trace(1, 1, 1, "T", True, False, f4)]))
    rare = (Frame("rare", "/lib/rare.py", 1, 1),)  # 1 of 2101 stacks: no section
    p.add(Sample(50.0, [Trace(1, 1, 1, "T", True, False, rare)]))
    collector = SourceCollector()
    long_lib = "".join(f"line {n}\n" for n in range(1, 1001))
    collector.sources = {"/app/run.py": "x\n" * 9, "/lib/rare.py": "y\n",
                         "/lib/gone.py": long_lib}  # fmt: skip
    sources = collector.metadata(p)["sources"]
    assert sources["/app/run.py"] == "x\n" * 9  # short and hot: whole
    assert "/lib/rare.py" not in sources
    # 25 % own but 1000 lines long: line 12 in context, the rest left out
    assert sources["/lib/gone.py"] == {
        "count": 1000,
        "lines": {str(n): f"line {n}" for n in range(9, 16)},
    }
    p.metadata["sources"] = sources
    page = to_heatmap(p)
    gone = page[page.index('data-file="/lib/gone.py"') :]
    assert "line 12" in gone and "line 16" not in gone and "\u22ef" in gone
