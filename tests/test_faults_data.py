"""Fault matrix for the data a user gets out: names that are not text, profiles that are not
profiles, forked and nested notebook cells.

case → what is promised
- a target whose script, thread name and a mapped file hold byte 0xFF; `dump` under
  PYTHONIOENCODING=utf-8, LC_ALL=C.UTF-8, LC_ALL=C → exit 0 and valid UTF-8: text shows
  U+FFFD for the byte, `--json` is ASCII with `\\udcff` (json.loads gives Python's own name)
- that profile as collapsed, speedscope, chrometrace, html, jsonl; `top`, the notebook's
  text view → valid UTF-8 every time: JSON carries `\\udcff`, text U+FFFD; jsonl reads back
  the exact file, thread and command names
- `read_jsonl` of a file cut in the middle of a line (a trace, a sample, the last one; from a
  path, a binary or text file, lines) → the samples before the cut, and a
  `JsonlTruncatedWarning` saying one line was lost and how many samples were read
- a cut in the header, a line of garbage (middle or end), a cut line with lines after it →
  `JsonlError` naming the line and why
- a wrong type (or a missing key) in each field of the header, a trace, a sample, a sample
  error, a rate change; a record that is not an object, of unknown type, out of order →
  `JsonlError`: file, line, field, what was expected, what was there; one line, no traceback
  of ours
- a PNG, an html/speedscope/chrometrace/collapsed export, a text file that is not UTF-8, an
  empty file → `JsonlError` saying what the file is (or that it has no header)
- JSON nested 200,000 deep (header or record) → `JsonlError`, not RecursionError
- `read_jsonl` in a notebook cell → the user sees `JsonlError: FILE, line N: ...`, or the
  truncation warning on stderr with the samples read
- on each real kernel (ipykernel 7, 6, CPython 3.14): a `%%spy --subprocesses` cell that
  forks (multiprocessing's fork context, `os.fork`) → the child's traces are rooted at the
  cell's `<module>`, no ipykernel/IPython/tornado/asyncio/spy_magic frame in them
- a fork Pool made by an earlier cell (plain or `%%spy`) → its workers rooted once at that
  cell's `<module>`, no kernel frame
- a nested `%%spy` (`get_ipython().run_cell_magic("spy", ...)` in a `%%spy` cell) → the
  outer profile reads outer line → inner cell → its code, none of the inner magic's frames;
  the inner profile is rooted at the inner cell
"""

from __future__ import annotations

import json
import os
import pstats
import subprocess
import sys

import notebook_kernels as nk  # tests/ is on sys.path under pytest
import pytest
from conftest import REPO, read_line, require_interpreter, target_env

from spy_magic.engine import Sampler
from spy_magic.profile import Profile
from spy_magic.profile.exports import (
    FORMATS,
    JsonlError,
    JsonlTruncatedWarning,
    read_jsonl,
    write,
)
from spy_magic.profile.recording import read_recording

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


JSON_FORMATS = ["speedscope", "chrometrace", "gecko"]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_writes_non_utf8_names_as_valid_utf8(non_utf8_target, fmt, tmp_path):
    proc, script = non_utf8_target
    profile = recorded_profile(proc.pid, script)
    path = tmp_path / f"out.{fmt}"
    write(profile, path, fmt)
    if fmt == "pstats":  # marshal data: the names are Python str, kept exactly
        stats = pstats.Stats(str(path)).stats
        assert any(name == "park\u00e9" and file == script for file, _, name in stats)
        return
    if fmt == "binary":  # compressed records: lossless, like jsonl
        back = read_recording(path)
        assert any(f.filename == script for _, _, t in back.iter_traces() for f in t.frames)
        assert "main\udcffthread" in {t.thread_name for _, _, t in back.iter_traces()}
        return
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
    elif fmt == "heatmap":  # a page of text: the file named with U+FFFD
        assert "\udcff" not in data and "\ufffd" in data
        assert "park\u00e9" in data or shown(script) in data or "scr\ufffdipt.py" in data
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
    from spy_magic.cli.top import render
    from spy_magic.notebook.views import top_text

    proc, script = non_utf8_target
    profile = recorded_profile(proc.pid, script)
    table = render(profile, Sampler(proc.pid), 1.0, 400, 60)
    table.encode("utf-8")
    assert "park\u00e9 (dir\ufffd/scr\ufffdipt.py:" in table, table
    plain = top_text(profile)
    plain.encode("utf-8")
    assert f"park\u00e9 ({shown(script)})" in plain, plain


# --- read_jsonl on what is not a whole profile -------------------------------------------------

WORK_TARGET = """\
import sys, threading, time
def spin():
    while True:
        sum(range(1000))
def nap():
    while True:
        time.sleep(0.001)
threading.Thread(target=spin, name="spinner", daemon=True).start()
sys.stdout.write("ready\\n")
sys.stdout.flush()
nap()
"""


@pytest.fixture(scope="module")
def recording(spawn_module, tmp_path_factory):
    """(profile, its jsonl file's bytes): 60 samples of a real two-thread target."""
    interp = require_interpreter("pyenv-3.12")
    proc = spawn_module.python(interp, WORK_TARGET)
    assert read_line(proc) == "ready"
    profile = Profile({"target": "work"})
    sampler = Sampler(proc.pid, rate=500)
    for sample in sampler:
        profile.add(sample)
        if profile.sample_count == 60:
            sampler.stop()
    assert profile.trace_count > 60, "both threads should show"
    path = tmp_path_factory.mktemp("jsonl") / "run.jsonl"
    write(profile, path, "jsonl")
    return profile, path.read_bytes()


def samples_in(lines: list[bytes]) -> int:
    return sum(b'"type":"sample"' in line for line in lines)


def jsonl_error(source, *expected: str) -> JsonlError:
    """The JsonlError read_jsonl raises for `source`; its message holds each of `expected`."""
    with pytest.raises(JsonlError) as caught:
        read_jsonl(source)
    message = str(caught.value)
    for text in expected:
        assert text in message, message
    assert "\n" not in message and len(message) < 300, message
    return caught.value


@pytest.mark.parametrize("where", ["a trace record", "a sample record", "the last record"])
@pytest.mark.parametrize("given", ["path", "binary file", "text file", "lines"])
def test_jsonl_cut_mid_line_gives_the_samples_before_and_says_a_line_was_lost(
    recording, tmp_path, where, given
):
    profile, data = recording
    lines = data.splitlines(keepends=True)
    traces = [i for i, line in enumerate(lines) if b'"type":"trace"' in line]
    samples = [i for i, line in enumerate(lines) if b'"type":"sample"' in line]
    cut = {
        "a trace record": traces[-1],
        "a sample record": samples[len(samples) // 2],
        "the last record": len(lines) - 1,
    }[where]
    kept = lines[:cut]
    path = tmp_path / "cut.jsonl"
    path.write_bytes(b"".join(kept) + lines[cut][: len(lines[cut]) // 2])
    source = {
        "path": path,
        "binary file": open(path, "rb"),  # noqa: SIM115 - closed below
        "text file": open(path, encoding="utf-8"),  # noqa: SIM115
        "lines": path.read_text().splitlines(),
    }[given]
    try:
        with pytest.warns(JsonlTruncatedWarning) as warned:
            back = read_jsonl(source)
    finally:
        if hasattr(source, "close"):
            source.close()
    assert back.sample_count == samples_in(kept)
    assert back.samples[:] == profile.samples[: back.sample_count]
    (warning,) = [w.message for w in warned]
    assert warning.lines_lost == 1 and warning.samples == back.sample_count
    assert f"line {cut + 1}" in str(warning) and f"{back.sample_count} samples" in str(warning)


def test_jsonl_cut_in_the_header_is_not_a_profile(recording):
    _, data = recording
    header = data.splitlines()[0]
    jsonl_error([header[:40].decode()], "line 1", "not a spy_magic jsonl profile", "not JSON")


@pytest.mark.parametrize("at", ["middle", "end"])
def test_jsonl_line_of_garbage_names_the_line(recording, tmp_path, at):
    """A whole line (it has its line end) that is not a record: damaged, not cut short."""
    _, data = recording
    lines = data.splitlines(keepends=True)
    where = len(lines) // 2 if at == "middle" else len(lines)
    lines.insert(where, b"this is not json\n")
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(b"".join(lines))
    error = jsonl_error(path, str(path), f"line {where + 1}", "not JSON")
    assert error.line == where + 1 and error.source == str(path)


def test_jsonl_cut_line_with_more_lines_after_it_names_the_line(recording):
    _, data = recording
    lines = data.decode().splitlines()
    lines[5] = lines[5][:10]
    jsonl_error(lines, "line 6", "not JSON", "more lines follow")


HEADER = {"type": "header", "format": "spy_magic.profile", "version": 2, "metadata": {}}
TRACE = {
    "type": "trace", "id": 0, "pid": 10, "thread_id": 1, "native_id": 11,
    "thread_name": "MainThread", "gil": True, "idle": False,
    "frames": [["run", "app.py", 3, 1]], "processes": [[10, "python app.py"]],
}  # fmt: skip
SAMPLE = {"type": "sample", "timestamp": 0.5, "late": None, "traces": [0], "errors": []}
ERROR = {"pid": 10, "thread_id": 1, "kind": "TornStack", "message": "retry"}
RATE = {"timestamp": 0.1, "old_rate": 100.0, "new_rate": 50.0, "reason": "slow"}

# (record, field, wrong value, what the message must say). One row per field; a missing field
# and a wrong container where the field holds several values.
WRONG_FIELDS = [
    ("header", "version", "2", "'version' must be an integer"),
    ("header", "metadata", [1], "'metadata' must be an object"),
    ("header", "rate_changes", {}, "'rate_changes' must be a list"),
    ("header", "rate_changes", [5], "each rate change must be an object"),
    ("header", "rate_changes", [{**RATE, "new_rate": "fast"}], "'new_rate' must be a number"),
    ("header", "rate_changes", [{**RATE, "reason": None}], "'reason' must be a string"),
    ("trace", "id", "0", "'id' must be an integer"),
    ("trace", "pid", 1.5, "'pid' must be an integer"),
    ("trace", "pid", None, "'pid' must be an integer"),
    ("trace", "thread_id", True, "'thread_id' must be an integer"),
    ("trace", "native_id", "11", "'native_id' must be an integer or null"),
    ("trace", "thread_name", 7, "'thread_name' must be a string or null"),
    ("trace", "gil", 1, "'gil' must be true or false"),
    ("trace", "idle", "no", "'idle' must be true or false or null"),
    ("trace", "frames", "run", "'frames' must be a list"),
    ("trace", "frames", [["run", "app.py", 3]], "[name, filename, line, firstlineno]"),
    ("trace", "frames", [["run", "app.py", "3", 1]], "[name, filename, line, firstlineno]"),
    ("trace", "frames", [{"name": "run"}], "[name, filename, line, firstlineno]"),
    ("trace", "processes", {"10": "x"}, "'processes' must be a list"),
    ("trace", "processes", [["10", "python"]], "[pid, command]"),
    ("trace", "pid", ..., "trace has no 'pid'"),
    ("sample", "timestamp", "0.5", "'timestamp' must be a number"),
    ("sample", "timestamp", float("nan"), "'timestamp' must be a number"),
    ("sample", "late", "late", "'late' must be a number or null"),
    ("sample", "traces", 0, "'traces' must be a list"),
    ("sample", "traces", ["0"], "must be a trace id"),
    ("sample", "traces", [True], "must be a trace id"),
    ("sample", "traces", [[0]], "must be a trace id"),
    ("sample", "traces", [3], "trace 3, which was never defined"),
    ("sample", "errors", {}, "'errors' must be a list"),
    ("sample", "errors", ["torn"], "each of 'errors' must be an object"),
    ("sample", "errors", [{**ERROR, "kind": 1}], "'kind' must be a string"),
    ("sample", "errors", [{**ERROR, "thread_id": "1"}], "'thread_id' must be an integer or null"),
    ("sample", "timestamp", ..., "sample has no 'timestamp'"),
]


@pytest.mark.parametrize(
    "record,field,value,message",
    WRONG_FIELDS,
    ids=[f"{r}.{f}={v!r}"[:50] for r, f, v, _ in WRONG_FIELDS],
)
def test_jsonl_wrong_type_in_a_field_names_the_line_and_what_was_expected(
    record, field, value, message
):
    records = {"header": dict(HEADER), "trace": dict(TRACE), "sample": dict(SAMPLE)}
    if value is ...:
        del records[record][field]
    else:
        records[record][field] = value
    lines = [json.dumps(records[k]) for k in ("header", "trace", "sample")]
    line = ["header", "trace", "sample"].index(record) + 1
    error = jsonl_error([*lines, json.dumps({**SAMPLE, "timestamp": 9.0})], message)
    assert error.line == line, str(error)


def test_jsonl_unchanged_fields_read(recording):
    """The rows above change one field each of records that read fine as they are."""
    lines = [json.dumps(r) for r in ({**HEADER, "rate_changes": [RATE]}, TRACE, SAMPLE)]
    lines.append(json.dumps({**SAMPLE, "timestamp": 0.6, "errors": [ERROR], "late": 0.001}))
    back = read_jsonl(lines)
    assert back.sample_count == 2 and back.errors[0].error.kind == "TornStack"
    assert back.samples[0].traces[0].frames[0].name == "run"


@pytest.mark.parametrize(
    "line,message",
    [
        ("[1, 2]", "a record must be a JSON object, got [1,2]"),
        ('"sample"', "a record must be a JSON object"),
        ('{"type": "frame"}', 'unknown record type "frame" (expected trace or sample)'),
        (json.dumps({**SAMPLE, "timestamp": 0.1, "traces": []}), "older than the last one"),
    ],
)
def test_jsonl_record_of_the_wrong_shape_names_the_line(line, message):
    lines = [json.dumps(HEADER), json.dumps(TRACE), json.dumps(SAMPLE), line]
    assert jsonl_error(lines, "line 4", message).line == 4


@pytest.mark.parametrize("fmt", ["png", "html", "speedscope", "chrometrace", "collapsed"])
def test_a_file_that_is_not_jsonl_says_what_it_is(recording, tmp_path, fmt):
    profile, _ = recording
    path = tmp_path / f"not.{fmt}"
    if fmt == "png":
        from spy_magic.notebook.views import flame_png

        path.write_bytes(flame_png(profile))
    else:
        write(profile, path, fmt)
    what = {
        "png": "a PNG image",
        "html": "an HTML page",
        "speedscope": "a speedscope file",
        "chrometrace": "a Chrome trace",
        "collapsed": "collapsed stacks",
    }[fmt]
    error = jsonl_error(path, str(path), "line 1", "not a spy_magic jsonl profile", what)
    assert error.line == 1
    with open(path, "rb") as f:  # the same from an open binary file
        jsonl_error(f, "not a spy_magic jsonl profile", what)


def test_a_text_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(HEADER).encode() + b"\n\xff\xfe\n")
    with open(path, encoding="utf-8") as f:  # decoded ahead: the line is not known
        jsonl_error(f, str(path), "not UTF-8 text")
    jsonl_error(path, "line 2", "not UTF-8 text")  # read as bytes: the same line


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"], ids=["empty", "blank lines"])
def test_an_empty_file_says_it_has_no_header(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    jsonl_error(path, str(path), "empty: no spy_magic jsonl header")


@pytest.mark.parametrize("line", [1, 2])
def test_deeply_nested_json_is_a_clear_error_not_recursion(line):
    deep = "[" * 200_000 + "]" * 200_000
    lines = [json.dumps(HEADER), deep] if line == 2 else [deep]
    jsonl_error(lines, f"line {line}", "nested deeper than it can be parsed")
    nested = {**HEADER, "metadata": {"deep": json.loads("[" * 300 + "]" * 300)}}
    assert read_jsonl([json.dumps(nested)]).metadata["deep"]  # deep but parseable: kept


# --- notebook: forked children and nested magics trimmed like the cell ----------------------

# Defined in each kernel: each trace of a profile as [pid, root-first "name@file" labels].
STACKS_SOURCE = r"""
def _spy_stacks(p):
    import json as _json
    return _json.dumps([[t.pid, [f"{f.name}@{f.filename}" for f in reversed(t.frames)]]
                        for s in p.trace_stats() for t in [s.trace] * s.count])
"""
KERNEL_MACHINERY = ("ipykernel", "IPython", "tornado", "zmq", "spy_magic", "asyncio", "traitlets")
SPIN = """\
import multiprocessing, os, time

def forked_work(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
"""
FORK_CELLS = {
    "multiprocessing fork": SPIN
    + """
child = multiprocessing.get_context("fork").Process(target=forked_work, args=(1.5,))
child.start()
child.join()
""",
    "os.fork": SPIN
    + """
child = os.fork()
if child == 0:
    try:
        forked_work(1.5)
    finally:
        os._exit(0)
os.waitpid(child, 0)
""",
}
CHILD_ATTEMPTS = 3  # a cell whose child was never sampled (a starved machine) runs again


@pytest.fixture(scope="module", params=nk.KERNELS)
def kernel(request, tmp_path_factory):
    """A live kernel of each kind with spy_magic loaded and `_spy_stacks` defined."""
    pytest.importorskip("nbclient", reason="the notebook tests need nbclient")
    spec_dir = tmp_path_factory.mktemp("kernelspecs")
    try:
        info = nk.kernel_for(request.param)
    except nk.KernelUnavailable as exc:
        message = f"no {request.param} kernel here: {exc}"
        if os.environ.get(nk.REQUIRE_ENV):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    nk.write_kernelspec(spec_dir, info)
    nb = nk.NotebookKernel(info, spec_dir, tmp_path_factory.mktemp("cwd"))
    try:
        for source in ("%load_ext spy_magic", STACKS_SOURCE):
            cell = nb.run(source)
            assert not cell_errors(cell), cell.outputs
        nb.pid = nb.json("import json, os\nprint(json.dumps(os.getpid()))")
        yield nb
    finally:
        nb.close()


def cell_errors(cell) -> list:
    return [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]


def profiled_stacks(nb, source: str) -> tuple[int, list[tuple[int, list[str]]]]:
    """Run a `%%spy -r` cell; (its number, its profile's traces as (pid, root-first labels))."""
    cell = nb.run(source)
    assert not cell_errors(cell), cell_errors(cell)
    return cell.execution_count, nb.json(f"print(_spy_stacks(Out[{cell.execution_count}]))")


def machinery_in(labels: list[str]) -> list[str]:
    return [label for label in labels if any(part in label for part in KERNEL_MACHINERY)]


def child_stacks(nb, source: str) -> tuple[int, list[list[str]]]:
    """(cell number, the stacks of the processes the kernel forked) of a cell that forks."""
    for _ in range(CHILD_ATTEMPTS):
        number, stacks = profiled_stacks(nb, source)
        children = [labels for pid, labels in stacks if pid != nb.pid]
        if any("forked_work@" in label for labels in children for label in labels):
            return number, children
    pytest.skip(f"the forked child was never sampled in {CHILD_ATTEMPTS} runs (a starved machine)")


@pytest.mark.parametrize("how", list(FORK_CELLS))
def test_forked_child_of_the_cell_is_rooted_at_the_cell(kernel, how):
    number, children = child_stacks(kernel, "%%spy --subprocesses -r -q\n" + FORK_CELLS[how])
    cell = f"In [{number}]"
    problems = [labels for labels in children if labels[0] != f"<module>@{cell}"]
    problems += [labels for labels in children if machinery_in(labels)]
    assert not problems, problems[:3]
    working = [labels for labels in children if labels[-1] == f"forked_work@{cell}"]
    assert working, children[:3]


@pytest.mark.parametrize("earlier", ["plain cell", "%%spy cell"])
def test_pool_forked_by_an_earlier_cell_is_rooted_at_that_cell(kernel, earlier):
    """Its workers carry the stack of the cell that made the pool, the kernel's below it; a
    `%%spy` cell's own line (the magic call) is not a second root."""
    made = kernel.run(
        ("%%spy -q\n" if earlier == "%%spy cell" else "")
        + "import multiprocessing\n\ndef pool_square_sum(n):\n"
        "    return sum(i * i for i in range(n))\n\n"
        "early_pool = multiprocessing.get_context('fork').Pool(2)\n"
    )
    assert not cell_errors(made), cell_errors(made)
    try:
        _, stacks = profiled_stacks(
            kernel, "%%spy --subprocesses -r -q\nearly_pool.map(pool_square_sum, [3_000_000] * 4)\n"
        )
    finally:
        kernel.run("early_pool.terminate(); early_pool.join()")
    workers = [labels for pid, labels in stacks if pid != kernel.pid]
    if not any("pool_square_sum@" in label for labels in workers for label in labels):
        pytest.skip("no worker was sampled while it worked (a starved machine)")
    root = f"<module>@In [{made.execution_count}]"
    problems = [labels for labels in workers if labels[0] != root or machinery_in(labels)]
    problems += [labels for labels in workers if labels.count(root) > 1]
    assert not problems, problems[:3]


NESTED_CELL = """\
%%spy -r -q
import time

def inner_work():
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        pass

inner = get_ipython().run_cell_magic("spy", "-r -q", "inner_work()\\n")
"""


def test_nested_spy_cell_reads_as_a_continuation_of_the_outer_cell(kernel):
    number, stacks = profiled_stacks(kernel, NESTED_CELL)
    cell = f"In [{number}]"
    main = [labels for pid, labels in stacks if pid == kernel.pid]
    problems = [
        labels for labels in main if machinery_in(labels) or labels[0] != f"<module>@{cell}"
    ]
    assert not problems, problems[:3]
    working = [labels for labels in main if f"inner_work@{cell}" in labels]
    assert working, main[:5]
    # The outer cell's line, the inner cell's code, the function it calls: nothing between.
    assert {tuple(labels[:3]) for labels in working} == {
        (f"<module>@{cell}", f"<module>@{cell}", f"inner_work@{cell}")
    }, working[:3]
    # The inner magic's own profile is rooted at the inner cell, as any %%spy's.
    inner = kernel.json("print(_spy_stacks(inner))")
    assert inner and all(labels[0] == f"<module>@{cell}" for _, labels in inner), inner[:3]
    assert not [labels for _, labels in inner if machinery_in(labels)], inner[:3]


def test_read_jsonl_errors_and_warnings_reach_the_notebook_user(kernel, recording, tmp_path):
    _, data = recording
    lines = data.splitlines(keepends=True)
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"".join([*lines[:3], b"<html>\n", *lines[3:]]))
    cell = kernel.run(f"from spy_magic.profile import read_jsonl\nread_jsonl({str(garbage)!r})")
    (error,) = [o for o in cell.outputs if o.output_type == "error"]
    assert error.ename == "JsonlError", error
    assert (
        error.evalue == f"{garbage}, line 4: not JSON (Expecting value: line 1 column 1 (char 0))"
    )
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(lines[:-1]) + lines[-1][:9])
    cell = kernel.run(f"print(read_jsonl({str(cut)!r}).sample_count)")
    assert not cell_errors(cell), cell_errors(cell)
    assert nk.stdout(cell).strip() == str(samples_in(lines[:-1]))
    warned = nk.stderr(cell)
    assert "JsonlTruncatedWarning" in warned and "1 line lost" in warned, warned


def test_nested_spy_caught_inside_ipython_dispatch_shows_only_the_outer_line():
    """A sample taken as the inner %%spy starts or ends, with IPython's magic dispatch the
    innermost frame and no spy_magic frame yet (seen in a real kernel about one run in ten):
    the dispatch is machinery of the nested magic, not the user's."""
    import IPython.core.interactiveshell as shell_module

    from spy_magic.engine import Trace
    from spy_magic.notebook.cells import CellNamer, trim_trace
    from spy_magic.reader import Frame

    cell_file = "/tmp/ipykernel_1/1234.py"
    outer = Frame("<module>", cell_file, 3, 1)
    for dispatch in ("InteractiveShell.run_cell_magic", "InteractiveShell.run_line_magic"):
        trace = Trace(
            pid=1, thread_id=2, native_id=2, thread_name="MainThread", gil=True, idle=False,
            frames=(Frame(dispatch, shell_module.__file__, 2500, 2480), outer),
        )  # fmt: skip
        kept = trim_trace(trace, CellNamer({cell_file: 16}), frozenset({(1, 2)}), cell_file)
        assert kept is not None and kept.frames == (Frame("<module>", "In [16]", 3, 1),), kept
