"""The notebook front on real kernels: %%spy, %spy_attach/%spy_stop/%spy_dump, the tour.

Every test runs on an ipykernel 7 kernel, on an ipykernel 6 one and on a CPython 3.14 one
chrooted into the Debian sid root (see notebook_kernels.py: the second lives in a venv cached
under .ci/, the third in the root's /opt/venv-3.14). Cells go through nbclient exactly as a
notebook's would; tests of one kernel share it (the kernel starts once per module and
kernel) and look at the kernel's objects by running a cell that prints JSON.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("nbclient", reason="the notebook tests need nbclient (pip install nbclient)")
pytest.importorskip("nbformat", reason="the notebook tests need nbformat (pip install nbformat)")

import notebook_kernels as nk  # tests/ is on sys.path under pytest

WIDGET = "application/vnd.jupyter.widget-view+json"
# A finished profile's output: the report, its picture, a top list, and no widget view (a
# reopened notebook would show "model not found" for it instead of the profile).
PROFILE_MIMES = {"text/html", "image/png", "text/plain"}
MACHINERY = ("ipykernel", "tornado", "IPython", "asyncio", "zmq", "spy_magic", "threading")
TOUR = nk.REPO / "notebooks" / "tour.ipynb"

# Defined in each kernel: a Profile's facts as JSON (the test process cannot hold the object).
FACTS_SOURCE = r"""
def _spy_facts(p):
    import json as _json
    traces = [s.trace for s in p.trace_stats()]  # distinct stacks: the kernel has no samples
    n = p.trace_count or 1
    return _json.dumps({
        "class": type(p).__module__ + "." + type(p).__qualname__,
        "sample_count": p.sample_count,
        "trace_count": p.trace_count,
        "keep_samples": p.keep_samples,
        "pids": p.pids(),
        "functions": [[s.name, s.filename, round(100 * s.self_count / n, 2),
                       round(100 * s.total_count / n, 2)] for s in p.functions(by="function")],
        "roots": sorted({f"{t.frames[-1].name}@{t.frames[-1].filename}"
                         for t in traces if t.frames}),
        "filenames": sorted({f.filename for t in traces for f in t.frames}),
        "errors": dict(p.error_counts()),
        "error_pids": sorted({e.error.pid for e in p.errors}),
        "metadata": {k: v for k, v in p.metadata.items() if isinstance(v, (str, int, float))},
    })
"""

# The spec's example, timing each sleep as it really happened: on a loaded machine a 10 ms
# sleep can last much longer, and a wall-clock profile must follow the real time.
SLEEPY_SOURCE = """\
%%spy -r --rate 200
import time

slept = {"function_a": 0.0, "function_b": 0.0, "function_c": 0.0}

def function_c():
    started = time.perf_counter()
    time.sleep(0.01)
    slept["function_c"] += time.perf_counter() - started

def function_b():
    started = time.perf_counter()
    time.sleep(0.05)
    slept["function_b"] += time.perf_counter() - started
    function_c()

def function_a():
    started = time.perf_counter()
    time.sleep(0.1)
    slept["function_a"] += time.perf_counter() - started
    function_b()

for i in range(8):
    function_a()
"""
NOMINAL_SHARES = {"function_a": 62.5, "function_b": 31.25, "function_c": 6.25}


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def spec_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kernelspecs")


def _require_kernel(kernel_id: str, spec_dir: Path) -> nk.KernelInfo:
    try:
        info = nk.kernel_for(kernel_id)
    except nk.KernelUnavailable as exc:
        message = f"no {kernel_id} kernel here: {exc}"
        if os.environ.get(nk.REQUIRE_ENV):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    nk.write_kernelspec(spec_dir, info)
    return info


@pytest.fixture(scope="module", params=nk.KERNELS)
def kernel_info(request, spec_dir) -> nk.KernelInfo:
    return _require_kernel(request.param, spec_dir)


@pytest.fixture(scope="module")
def nb(kernel_info, spec_dir, tmp_path_factory):
    """A live kernel of that version with spy_magic loaded and _spy_facts defined."""
    kernel = nk.NotebookKernel(kernel_info, spec_dir, tmp_path_factory.mktemp("cwd"))
    try:
        loaded = kernel.run("%load_ext spy_magic")
        assert errors(loaded) == [] and nk.stderr(loaded) == "", loaded.outputs
        kernel.run(FACTS_SOURCE)
        where, version = kernel.json(
            "import json, spy_magic, sys\n"
            "print(json.dumps([spy_magic.__file__, sys.version.split()[0]]))"
        )
        assert where.startswith(str(nk.REPO)), f"the kernel imports spy_magic from {where}"
        assert version == kernel_info.python_version, (version, kernel_info)
        yield kernel
    finally:
        kernel.close()


@pytest.fixture(scope="module")
def sleepy(nb):
    """The spec's example profiled with `%%spy -r` (cell, facts of the returned Profile)."""
    cell = nb.run(SLEEPY_SOURCE)
    assert errors(cell) == [], cell.outputs
    facts = nb.json(f"print(_spy_facts(Out[{cell.execution_count}]))")
    slept = nb.json("import json\nprint(json.dumps(slept))")
    total = sum(slept.values())
    facts["true_shares"] = {name: 100 * seconds / total for name, seconds in slept.items()}
    return cell, facts


# --- helpers -------------------------------------------------------------------------------------


def errors(cell) -> list:
    return [o for o in cell.outputs if o.output_type == "error"]


def displays(cell) -> list:
    return [o for o in cell.outputs if o.output_type == "display_data"]


def final_bundle(cell) -> dict:
    shown = displays(cell)
    assert shown, f"no display_data in the cell's outputs: {cell.outputs}"
    return shown[-1]["data"]


def result_text(cell) -> str | None:
    results = [o for o in cell.outputs if o.output_type == "execute_result"]
    return results[-1]["data"]["text/plain"] if results else None


def shares(facts: dict) -> dict[str, float]:
    """Own time % per function name (summed over files)."""
    out: Counter = Counter()
    for name, _file, own, _total in facts["functions"]:
        out[name] += own
    return dict(out)


def function_files(facts: dict) -> dict[str, str]:
    return {name: filename for name, filename, _own, _total in facts["functions"]}


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def assert_profile_then_error(cell, ename: str, shows: str) -> None:
    """The cell ends with the `ename` error, and the profile's bundle is shown before it."""
    kinds = [o.output_type for o in cell.outputs]
    assert kinds and kinds[-1] == "error", kinds
    assert cell.outputs[-1].ename == ename, cell.outputs[-1]
    before = [o for o in cell.outputs[:-1] if o.output_type == "display_data"]
    assert before, f"no profile shown before the {ename}: {kinds}"
    bundle = before[-1]["data"]
    assert set(bundle) == PROFILE_MIMES, sorted(bundle)
    assert shows in bundle["text/plain"], bundle["text/plain"]


# --- %%spy: the cell runs as if unprofiled -------------------------------------------------------


def test_variables_defined_in_a_spy_cell_stay_defined(nb):
    cell = nb.run("%%spy -q\ndef helper_fn(x):\n    return 2 * x\n\nkept_value = helper_fn(21)\n")
    assert errors(cell) == []
    after = nb.run("kept_value, helper_fn(1)")
    assert result_text(after) == "(42, 2)"


def test_last_expression_value_is_displayed(nb):
    cell = nb.run("%%spy\nvalue_source = [1, 2, 3]\nsum(value_source) * 7\n")
    assert errors(cell) == []
    assert result_text(cell) == "42"
    results = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert results[0]["execution_count"] == cell.execution_count


def test_exception_propagates_after_the_profile_is_shown(nb):
    cell = nb.run(
        "%%spy\nimport time\n\ndef spin_then_fail():\n"
        "    end = time.perf_counter() + 0.3\n"
        "    while time.perf_counter() < end:\n        pass\n"
        "    raise LookupError('from the cell')\n\nspin_then_fail()\n"
    )
    assert_profile_then_error(cell, "LookupError", shows="spin_then_fail")
    assert cell.outputs[-1].evalue == "from the cell"
    traceback = strip_ansi("\n".join(cell.outputs[-1].traceback))
    assert "spin_then_fail" in traceback
    # The cell's frames read as a plain cell's would: none of the magic's own machinery.
    assert "magics.py" not in traceback and "_execute" not in traceback, traceback


def test_interrupt_shows_the_partial_profile_and_stops_queued_cells(nb):
    source = (
        "%%spy\nimport time\n\ndef wait_for_interrupt():\n"
        "    while True:\n        time.sleep(0.01)\n\nwait_for_interrupt()\n"
    )
    kc = nb.blocking_client()
    kc.wait_for_ready(timeout=60)
    seen: dict = {}

    def interrupt_once_sampling() -> None:
        # Queue a second cell behind the looping one, as Run All does; once the live view
        # shows (the cell is being sampled), let it run ~1 s more, then interrupt.
        running = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except Exception:
                continue
            parent = msg["parent_header"].get("msg_id")
            if msg["msg_type"] == "execute_input" and msg["content"]["code"] == source:
                running = parent
                seen["queued"] = kc.execute("ran_after_interrupt = True", stop_on_error=True)
            elif msg["msg_type"] == "display_data" and running and parent == running:
                time.sleep(1.0)
                break
        seen["interrupted_at"] = time.monotonic()
        nb.interrupt()

    thread = threading.Thread(target=interrupt_once_sampling, daemon=True)
    thread.start()
    try:
        cell = nb.run(source, stop_on_error=True)
    finally:
        thread.join(70)
    try:
        assert "queued" in seen, "the looping cell never started"
        assert_profile_then_error(cell, "KeyboardInterrupt", shows="wait_for_interrupt")
        reply = None
        deadline = time.monotonic() + 30
        while reply is None and time.monotonic() < deadline:
            msg = kc.get_shell_msg(timeout=30)
            if msg["parent_header"].get("msg_id") == seen["queued"]:
                reply = msg
        assert reply is not None, "no reply to the queued cell"
        assert reply["content"]["status"] == "aborted", reply["content"]
    finally:
        kc.stop_channels()
    state = nb.json("import json\nprint(json.dumps('ran_after_interrupt' in globals()))")
    assert state is False, "the cell queued behind the interrupted one ran"


# --- the profile ---------------------------------------------------------------------------------


def test_return_flag_returns_a_profile_with_the_sleep_shares(sleepy):
    cell, facts = sleepy
    assert facts["class"] == "spy_magic.profile.model.Profile"
    assert result_text(cell).startswith("<Profile "), result_text(cell)
    assert facts["sample_count"] > 100, facts["sample_count"]
    own, truth = shares(facts), facts["true_shares"]
    top3 = sorted(own, key=own.get, reverse=True)[:3]
    assert set(top3) == set(NOMINAL_SHARES), own
    # Nominally 62.5 / 31.25 / 6.25 %; compared with the sleeps' measured durations.
    for name, bound in (("function_a", 10), ("function_b", 10), ("function_c", 5)):
        assert abs(own[name] - truth[name]) < bound, (name, own, truth, NOMINAL_SHARES)


def test_profile_is_rooted_at_the_cell(sleepy):
    cell, facts = sleepy
    here = f"In [{cell.execution_count}]"
    assert facts["roots"] == [f"<module>@{here}"], facts["roots"]
    assert facts["filenames"] == [here], facts["filenames"]  # time.sleep has no Python frame
    text = final_bundle(cell)["text/plain"]
    table = "\n".join(text.splitlines()[2:])  # below the "spy_magic: N samples" header
    for word in MACHINERY:
        assert word not in table, (word, text)
    listed = re.findall(r"^\s*[\d.]+\s+[\d.]+\s+(\S+) \((.*)\)$", text, re.M)
    assert listed, text
    assert {name for name, _file in listed} <= {*NOMINAL_SHARES, "<module>"}, text
    assert {file for _name, file in listed} == {here}, text


def test_cell_frames_are_named_in_n_with_the_right_n(nb, sleepy):
    defined_in = sleepy[0].execution_count
    cell = nb.run("%%spy -r -q\nfor i in range(2):\n    function_a()\n")
    facts = nb.json(f"print(_spy_facts(Out[{cell.execution_count}]))")
    files = function_files(facts)
    assert files["<module>"] == f"In [{cell.execution_count}]", files
    assert files["function_a"] == f"In [{defined_in}]", files
    assert facts["metadata"].get("target") == f"In [{cell.execution_count}]", facts["metadata"]


def test_final_output_is_one_bundle_with_every_representation(nb, sleepy):
    cell, _facts = sleepy
    bundle = final_bundle(cell)
    assert set(bundle) == PROFILE_MIMES, sorted(bundle)
    assert bundle["image/png"].startswith("iVBORw0KGgo"), bundle["image/png"][:20]  # PNG magic
    assert "function_a" in bundle["text/plain"]
    report = bundle["text/html"]
    assert report.startswith('<div class="sfg-report">'), report[:100]
    data = json.loads(re.search(r'class="sfg-data">(.*?)</script>', report, re.S).group(1))
    assert data["by"] == "line" and set(data["views"]) == {"line", "function"}
    names = {data["strings"][i] for i in data["functions"]["name"]}
    assert {"function_a", "function_b", "function_c"} <= names, names
    assert bundle["image/png"] in report  # the picture where no script runs


def test_html_report_is_self_contained(sleepy):
    page_html = final_bundle(sleepy[0])["text/html"]
    assert "<script" in page_html and "function_a" in page_html
    assert "<iframe" not in page_html
    remote = re.compile(
        r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//""", re.I
    )
    assert not remote.search(page_html), remote.search(page_html)


def test_function_option_opens_the_graph_by_function(nb, sleepy):  # sleepy defines function_a
    cell = nb.run("%%spy --function\nfor i in range(2):\n    function_a()\n")
    assert errors(cell) == [], cell.outputs
    report = final_bundle(cell)["text/html"]
    data = json.loads(re.search(r'class="sfg-data">(.*?)</script>', report, re.S).group(1))
    assert data["by"] == "function"


# --- bad arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "%%spy --rate -1\npass\n",
        "%%spy --nope\npass\n",
        "%%spy --python /usr/bin/python3\npass\n",
        "%spy_attach notapid",
        "%spy_stop 99",
        "%spy_dump notapid",
        "%spy_attach 999999999",
        "%%spy --subprocess --python /nonexistent/python\npass\n",
        "%%spy -o /nonexistent/dir/profile.html\npass\n",
    ],
    ids=[
        "rate-negative",
        "unknown-option",
        "python-without-subprocess",
        "attach-notapid",
        "stop-unknown",
        "dump-notapid",
        "attach-no-such-process",
        "python-missing",
        "output-dir-missing",
    ],
)
def test_bad_arguments_are_a_one_line_usage_error(nb, source):
    cell = nb.run(source)
    kinds = [o.output_type for o in cell.outputs]
    assert kinds == ["stream"], cell.outputs
    message = nk.stderr(cell).strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("UsageError: "), message
    assert "Traceback" not in message


# --- -o FILE --format F -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt", ["html", "collapsed", "speedscope", "chrometrace", "jsonl", "pstats", "gecko", "binary"]
)
def test_output_file_in_each_format(nb, fmt, tmp_path):
    import json
    import pstats

    from spy_magic.profile.exports import read_jsonl

    path = tmp_path / f"profile.{fmt}"
    cell = nb.run(
        f"%%spy -q --function --threads -o {path} --format {fmt}\nimport time\n\n"
        "def busy_for_export():\n    end = time.perf_counter() + 0.3\n"
        "    while time.perf_counter() < end:\n        pass\n\nbusy_for_export()\n"
    )
    assert errors(cell) == [] and cell.outputs == [], cell.outputs  # -q: nothing shown
    here = f"In [{cell.execution_count}]"
    if fmt in ("pstats", "binary"):
        if fmt == "pstats":
            names = {(key[2], key[0]) for key in pstats.Stats(str(path)).stats}
        else:  # read by the kernel's Python: a 3.14+ one writes zstd, which this may not read
            shown = nb.run(
                "import json\nfrom spy_magic.profile.recording import read_recording\n"
                f"p = read_recording({str(path)!r})\n"
                "print(json.dumps(sorted({(f.name, f.filename) for _i, _s, t in p.iter_traces()"
                " for f in t.frames})))\n"
            )
            assert errors(shown) == [], shown.outputs
            names = {tuple(n) for n in json.loads(nk.stdout(shown))}
        assert ("busy_for_export", here) in names, sorted(names)[:10]
        return
    text = path.read_text(encoding="utf-8")
    if fmt == "html":
        assert text.lstrip().lower().startswith("<!doctype html") and "busy_for_export" in text
    elif fmt == "collapsed":
        stacks = [line.rsplit(" ", 1) for line in text.splitlines()]
        assert stacks and all(count.isdigit() for _stack, count in stacks), text
        assert any(
            stack.startswith('thread "MainThread"')
            and stack.endswith(f"<module> ({here});busy_for_export ({here})")
            for stack, _count in stacks
        ), text
    elif fmt == "speedscope":
        document = json.loads(text)
        assert "speedscope" in document["$schema"]
        assert "busy_for_export" in {f["name"] for f in document["shared"]["frames"]}
    elif fmt == "chrometrace":
        events = json.loads(text)["traceEvents"]
        assert "busy_for_export" in {e.get("name") for e in events}
    elif fmt == "gecko":
        document = json.loads(text)
        assert "busy_for_export" in document["shared"]["stringArray"]
    else:
        profile = read_jsonl(path)
        frames = {(f.name, f.filename) for _i, _s, t in profile.iter_traces() for f in t.frames}
        assert ("busy_for_export", here) in frames, sorted(frames)[:10]


# --- %spy_attach / %spy_stop / %spy_dump ---------------------------------------------------------

START_BACKGROUND = """\
import json, subprocess, sys
from spy_magic.demos import demo_path
background = subprocess.Popen([sys.executable, str(demo_path("slow_script")), "--repeat", "1000"])
print(json.dumps(background.pid))
"""
STOP_BACKGROUND = "background.kill(); background.wait()"


def shown_text(cell) -> str:
    """What the cell's display outputs read as text (after nbclient applied their updates)."""
    return "".join(o["data"].get("text/plain", "") for o in displays(cell))


def _attachment_number(cell) -> int:
    match = re.search(r"as attachment (\d+)", shown_text(cell))
    assert match, cell.outputs
    return int(match.group(1))


def test_attach_returns_at_once_and_stop_returns_the_profile(nb):
    pid = nb.json(START_BACKGROUND)
    try:
        started = time.monotonic()
        attach = nb.run(f"%spy_attach {pid}")
        assert time.monotonic() - started < 15, "%spy_attach did not return at once"
        assert errors(attach) == [] and nk.stderr(attach) == "", attach.outputs
        assert WIDGET in final_bundle(attach), attach.outputs  # the live view
        number = _attachment_number(attach)
        usable = nb.run("time_while_attached = 6 * 7\ntime_while_attached")  # kernel free
        assert result_text(usable) == "42"
        time.sleep(1.5)
        stop = nb.run(f"attached = %spy_stop {number}")
        assert errors(stop) == [], stop.outputs
        facts = nb.json("print(_spy_facts(attached))")
    finally:
        nb.run(STOP_BACKGROUND)
    assert facts["class"] == "spy_magic.profile.model.Profile"
    assert facts["pids"] == [pid], facts["pids"]
    assert facts["sample_count"] > 50, facts["sample_count"]
    assert {"function_a", "function_b"} <= set(shares(facts)), facts["functions"][:5]
    # %spy_stop replaced the attachment's live output with the final bundle, and the
    # "%spy_stop N to stop" line with nothing: a saved notebook does not keep it.
    assert set(final_bundle(attach)) == PROFILE_MIMES, sorted(final_bundle(attach))
    assert "function_a" in final_bundle(attach)["text/plain"]
    assert "to stop" not in shown_text(attach), shown_text(attach)
    # A stopped attachment's profile can be fetched again; an unknown one is an error.
    again = nb.run(f"again = %spy_stop {number}\nprint(again is attached)")
    assert errors(again) == [] and nk.stdout(again).strip() == "True", again.outputs
    unknown = nb.run(f"%spy_stop {number + 50}")
    assert nk.stderr(unknown).startswith("UsageError"), unknown.outputs
    assert f"no attachment {number + 50}" in nk.stderr(unknown)


def test_attachment_that_ends_by_itself_updates_its_display(nb):
    pid = nb.json(START_BACKGROUND)
    kc = nb.blocking_client()
    try:
        kc.wait_for_ready(timeout=60)
        source = f"%spy_attach {pid} --duration 1"
        attach = nb.run(source)
        assert errors(attach) == [], attach.outputs
        parent = display_id = None
        deadline = time.monotonic() + 30
        update = None
        while update is None and time.monotonic() < deadline:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except Exception:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "execute_input" and content["code"] == source:
                parent = msg["parent_header"]["msg_id"]
            elif kind == "display_data" and parent and msg["parent_header"]["msg_id"] == parent:
                display_id = content.get("transient", {}).get("display_id")
            elif (
                kind == "update_display_data"
                and display_id
                and (
                    content.get("transient", {}).get("display_id") == display_id
                    and "image/png" in content["data"]
                )
            ):
                update = content["data"]
        assert display_id, "the attachment showed no live output with a display id"
        assert update is not None, "the display was not updated when the attachment ended"
        assert set(update) == PROFILE_MIMES, sorted(update)
        assert "function_a" in update["text/plain"], update["text/plain"]
        # It is no longer running: %spy_stop says so, and fetches its profile by number.
        left = nb.run("%spy_stop")
        assert "no attachment is running" in nk.stdout(left), left.outputs
        last = re.search(r"%spy_stop (\d+) returns the profile of the last one", nk.stdout(left))
        assert last, nk.stdout(left)
        fetched = nb.json(
            f"ended_by_itself = %spy_stop {last.group(1)}\nprint(_spy_facts(ended_by_itself))"
        )
        assert fetched["class"] == "spy_magic.profile.model.Profile", fetched["class"]
        assert fetched["sample_count"] > 10 and "function_a" in shares(fetched), fetched
    finally:
        kc.stop_channels()
        nb.run(STOP_BACKGROUND)


def test_spy_dump_prints_the_stacks(nb):
    pid = nb.json(START_BACKGROUND)
    try:
        for _attempt in range(20):  # until the script is past its start (a slow machine)
            time.sleep(0.25)
            cell = nb.run(f"%spy_dump {pid}")
            if "function_a" in nk.stdout(cell):
                break
    finally:
        nb.run(STOP_BACKGROUND)
    assert errors(cell) == [] and nk.stderr(cell) == "", cell.outputs
    text = nk.stdout(cell)
    assert f"Process {pid}" in text and "function_a" in text, text


def test_spy_dump_json(nb):
    pid = nb.json(START_BACKGROUND)
    try:
        for _attempt in range(20):  # until the script is past its start (a slow machine)
            time.sleep(0.25)
            cell = nb.run(f"%spy_dump --json {pid}")
            if "function_a" in nk.stdout(cell):
                break
    finally:
        nb.run(STOP_BACKGROUND)
    assert errors(cell) == [] and nk.stderr(cell) == "", cell.outputs
    threads = json.loads(nk.stdout(cell))
    names = {f["name"] for t in threads for f in t["frames"]}
    assert "function_a" in names, names
    bad = nb.run("%spy_dump --xml 1")
    assert "usage: %spy_dump [--json] PID" in nk.stderr(bad), bad.outputs


def test_attach_to_a_non_python_pid_fails_at_once(nb):
    """As fast as the command line: no waiting out --start-timeout for a process that has
    run a while and is not Python (here a 30 s timeout that a retry would wait out)."""
    pid = nb.json(
        "import json, subprocess, time\nnot_python = subprocess.Popen(['sleep', '60'])\n"
        "time.sleep(1.5)\nprint(json.dumps(not_python.pid))"
    )
    try:
        started = time.monotonic()
        cell = nb.run(f"%spy_attach {pid} --start-timeout 30")
        took = time.monotonic() - started
    finally:
        nb.run("not_python.kill(); not_python.wait()")
    assert nk.stderr(cell).startswith("UsageError"), cell.outputs
    assert "is not running CPython" in nk.stderr(cell), nk.stderr(cell)
    assert took < 15, f"%spy_attach took {took:.1f} s to refuse a non-Python process"
    gone = nb.run(f"%spy_attach {2**22 + 12345}")
    assert "no process" in nk.stderr(gone).lower() or "No such" in nk.stderr(gone), gone.outputs


def test_rate_above_the_maximum_is_clamped_with_a_stated_line(nb):
    cell = nb.run("%%spy -r -q --rate 100000\nimport time\ntime.sleep(0.3)")
    assert errors(cell) == [], cell.outputs
    said = nk.stderr(cell)
    assert "--rate 100000 is above the 10000 Hz" in said and "sampling at 10000 Hz" in said, said
    facts = nb.json(f"print(_spy_facts(Out[{cell.execution_count}]))")
    assert facts["metadata"]["rate"] == 10000, facts["metadata"]


def test_no_samples_says_why_and_what_to_do(nb):
    """A cell far shorter than the sampling period: the header and (with -q) stderr say so
    and suggest a higher rate; the cell's result is kept."""
    quiet = nb.run("%%spy -q --rate 1\nshort_value = 6 * 7")
    hint = nk.stderr(quiet)
    assert "no samples of the cell" in hint and "try --rate" in hint, quiet.outputs
    shown = nb.run("%%spy --rate 1\nshort_value = 6 * 7")
    html = final_bundle(shown)["text/html"]
    assert "no samples of the cell" in html and "try --rate" in html
    assert result_text(nb.run("short_value")) == "42"


DEEP_FAST_SOURCE = """\
%%spy -r --rate 10000
import time

def deep_fast(n):
    if n:
        return deep_fast(n - 1)
    end = time.perf_counter() + 2.5
    while time.perf_counter() < end:
        pass

deep_fast(400)
"""


def test_a_lowered_rate_is_told_in_the_final_header(nb):
    """10 kHz on a 400-frame stack is more than the sampler can read, so the load
    adaptation lowers the rate; the final header must say so in words."""
    cell = nb.run(DEEP_FAST_SOURCE)
    assert errors(cell) == [], cell.outputs
    changes = nb.json(
        f"import json\nprint(json.dumps([[c.old_rate, c.new_rate] for c in "
        f"Out[{cell.execution_count}].rate_changes]))"
    )
    if not any(new < old for old, new in changes):
        pytest.skip(f"the sampler kept up with 10 kHz here ({changes}): nothing to tell")
    bundle = final_bundle(cell)
    assert "rate lowered 10000 →" in bundle["text/html"], bundle["text/html"][:3000]
    assert "the sampler could not keep up" in bundle["text/plain"], bundle["text/plain"]


LIVE_SOURCE = """\
%%spy --rate 200
import time

def live_outer():
    live_inner()

def live_inner():
    end = time.perf_counter() + 4
    while time.perf_counter() < end:
        sum(range(500))

live_outer()
"""


def test_live_view_shows_only_the_cells_functions(nb):
    """The live table, as the kernel sends it while the cell runs: only the cell's frames
    (no ipykernel, zmq, tornado or spy_magic ones, no idle kernel thread), with elapsed
    time, samples and the achieved and asked rate in its status."""
    kc = nb.blocking_client()
    updates: list[dict] = []
    try:
        kc.wait_for_ready(timeout=60)
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                try:
                    msg = kc.get_iopub_msg(timeout=0.5)
                except Exception:
                    continue
                if msg["msg_type"] == "comm_msg":
                    state = msg["content"].get("data", {}).get("state", {})
                    if "rows" in state or "status" in state:
                        updates.append(state)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        cell = nb.run(LIVE_SOURCE)
        done.set()
        watcher.join()
    finally:
        kc.stop_channels()
    assert errors(cell) == [], cell.outputs
    rows = [u["rows"] for u in updates if u.get("rows")]
    assert rows, f"no live update with rows: {updates[:3]}"
    for table in rows:
        for _own, _total, _seconds, function, location in table:
            assert location.startswith("In ["), (function, location, table)
            assert not any(m in location for m in MACHINERY), (function, location)
    assert {"live_inner", "live_outer"} <= {r[3] for r in rows[-1]}, rows[-1]
    statuses = [u["status"] for u in updates if "samples" in u.get("status", "")]
    assert statuses, [u.get("status") for u in updates]
    assert re.search(r"\d+\.\d s, [\d,]+ samples, [\d,]+ Hz of 200 asked", statuses[-1]), statuses


# --- --subprocess ------------------------------------------------------------------------------

SUBPROCESS_BODY = """\
import sys, time

def in_subprocess():
    end = time.perf_counter() + 0.8
    while time.perf_counter() < end:
        pass

in_subprocess()
only_in_subprocess = 1
print("child python", sys.version.split()[0])
"""


def _run_subprocess_cell(nb, options: str):
    cell = nb.run(f"%%spy --subprocess -r {options}\n{SUBPROCESS_BODY}")
    assert errors(cell) == [], cell.outputs
    facts = nb.json(f"print(_spy_facts(Out[{cell.execution_count}]))")
    leaked = nb.json("import json\nprint(json.dumps('only_in_subprocess' in globals()))")
    return cell, facts, leaked


def test_subprocess_runs_the_cell_in_a_fresh_interpreter(nb):
    cell, facts, leaked = _run_subprocess_cell(nb, "")
    assert leaked is False, "a variable of the --subprocess cell is defined in the kernel"
    assert "child python" in nk.stdout(cell), cell.outputs
    kernel_pid = nb.json("import json, os\nprint(json.dumps(os.getpid()))")
    assert facts["pids"] and kernel_pid not in facts["pids"], facts["pids"]
    own = shares(facts)
    assert own.get("in_subprocess", 0) > 70, own
    assert function_files(facts)["in_subprocess"] == f"In [{cell.execution_count}]", facts
    assert set(final_bundle(cell)) == PROFILE_MIMES
    # Trimmed as they came, into aggregates and the timeline: the kernel kept no samples.
    kept = nb.json(
        f"import json\np = Out[{cell.execution_count}]\n"
        "print(json.dumps([p.keep_samples, p.timeline is not None and bool(p.timeline.lanes)]))"
    )
    assert kept == [False, True], kept


def test_subprocess_with_another_python(nb, kernel_info, interpreters):
    # Another CPython than the kernel's, one the kernel can run: pyenv's 3.8 on the host; in
    # the sid root (which sees nothing of pyenv) that root's 3.15.
    other = interpreters.require("sid-3.15" if kernel_info.root else "pyenv-3.8")
    if other.root != kernel_info.root:
        pytest.skip(f"{other.id} lives in {other.root}, the kernel in {kernel_info.root}")
    cell, facts, leaked = _run_subprocess_cell(nb, f"--python {other.path}")
    assert leaked is False
    assert f"child python {other.dotted}." in nk.stdout(cell), cell.outputs
    assert shares(facts).get("in_subprocess", 0) > 70, facts["functions"][:5]


def test_subprocess_interrupt_shows_the_partial_profile(nb):
    timer = threading.Timer(2.0, nb.interrupt)
    timer.start()
    try:
        cell = nb.run(
            "%%spy --subprocess\nimport time\n\ndef loop_in_child():\n"
            "    while True:\n        time.sleep(0.01)\n\nloop_in_child()\n"
        )
    finally:
        timer.join()
    assert_profile_then_error(cell, "KeyboardInterrupt", shows="loop_in_child")


# --- async cells ---------------------------------------------------------------------------------


def test_async_cell_with_top_level_await(nb):
    cell = nb.run("%%spy\nimport asyncio\nawait asyncio.sleep(0.3)\n'awaited ' + 'value'\n")
    assert errors(cell) == [], cell.outputs
    assert result_text(cell) == "'awaited value'"
    assert set(final_bundle(cell)) == PROFILE_MIMES


def test_mode_exception_and_opcodes_work_in_a_cell(nb):
    """The magics take the shared options: only the time spent handling an exception is
    kept, and traces carry the innermost instruction."""
    cell = nb.run(
        "%%spy -r -q --mode exception --opcodes --rate 200\nimport time\n\n"
        "def spin(seconds):\n    end = time.perf_counter() + seconds\n"
        "    while time.perf_counter() < end:\n        pass\n\n"
        "def outside():\n    spin(0.4)\n\ndef in_handler():\n    spin(0.4)\n\n"
        "outside()\ntry:\n    raise KeyError(1)\nexcept KeyError:\n    in_handler()\n"
    )
    assert errors(cell) == [], cell.outputs
    facts = nb.json(f"print(_spy_facts(Out[{cell.execution_count}]))")
    names = set(shares(facts))
    # The exception state is read just after the stack (advisory, extras.py): a sample at
    # the moment the handler is entered may see the frame before it. One in a hundred, no more.
    totals = {row[0]: row[3] for row in facts["functions"]}
    assert "in_handler" in names and totals.get("outside", 0.0) < 5.0, facts["functions"][:6]
    assert facts["metadata"]["profile_mode"] == "exception", facts["metadata"]
    ops = nb.json(
        f"import json; print(json.dumps(sorted({{s.trace.opcode or '' for s in "
        f"Out[{cell.execution_count}].trace_stats()}})))"
    )
    assert ops and "" not in ops, ops


def test_async_cell_profile_is_rooted_at_the_cell(nb):
    # The await comes first: the whole body (not just a last expression) is a coroutine.
    cell = nb.run(
        "%%spy -r -q\nimport asyncio, time\n\ndef busy_after_await():\n"
        "    end = time.perf_counter() + 0.5\n    while time.perf_counter() < end:\n"
        "        pass\n\nawait asyncio.sleep(0.05)\nbusy_after_await()\n'done'\n"
    )
    assert errors(cell) == [], cell.outputs
    facts = nb.json(f"print(_spy_facts(Out[{cell.execution_count}]))")
    assert shares(facts).get("busy_after_await", 0) > 50, facts["functions"][:5]
    assert facts["roots"] == [f"<module>@In [{cell.execution_count}]"], facts["roots"]


ASYNC_CELL = """\
%%spy -r -q --async --rate 200
import asyncio, time

def burn(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

async def worker(rounds):
    for _ in range(rounds):
        burn(0.004)
        await asyncio.sleep(0)

await asyncio.gather(*(asyncio.create_task(worker(60), name=f"worker-{n}") for n in range(3)))
"""


def test_async_cell_shows_each_tasks_own_branch(nb):
    """%%spy --async on a cell awaiting three named tasks: each task's work sits on its own
    branch, `<task worker-N>` between the worker's frames and the cell that awaits it."""
    cell = nb.run(ASYNC_CELL)
    assert errors(cell) == [] and "warning" not in nk.stderr(cell), cell.outputs
    stacks = nb.json(
        "import json\nprint(json.dumps([[f.name for f in s.trace.frames] for s in "
        f"Out[{cell.execution_count}].trace_stats() for _ in range(s.count)]))"
    )
    branches = {tuple(names[:4]) for names in stacks if names[:1] == ["burn"]}
    for n in range(3):
        assert ("burn", "worker", f"<task worker-{n}>", "<module>") in branches, branches
    # A sample whose task switched between the stack read and the task read keeps its plain
    # stack (trimmed to the worker's frames): rare, never the rule.
    rooted = sum(names[-1] == "<module>" for names in stacks)
    assert rooted >= 0.8 * len(stacks), [n for n in stacks if n[-1] != "<module>"][:3]


# --- --subprocesses ----------------------------------------------------------------------------


def test_subprocesses_does_not_sample_the_helper(nb):
    cell = nb.run("%%spy --subprocesses -r -q\nimport time\ntime.sleep(0.6)\n")
    assert errors(cell) == [], cell.outputs
    facts = nb.json(f"print(_spy_facts(Out[{cell.execution_count}]))")
    kernel_pid = nb.json("import json, os\nprint(json.dumps(os.getpid()))")
    assert set(facts["error_pids"]) <= {kernel_pid}, (kernel_pid, facts["errors"], facts)


def test_subprocesses_keeps_workers_of_a_pool_forked_earlier(nb):
    workers = nb.json(
        "import json, multiprocessing\n\ndef pool_square_sum(n):\n"
        "    return sum(i * i for i in range(n))\n\n"
        "early_pool = multiprocessing.get_context('fork').Pool(2)\n"
        "print(json.dumps(sorted(p.pid for p in early_pool._pool)))\n"
    )
    try:
        cell = nb.run(
            "%%spy --subprocesses -r -q\nearly_pool.map(pool_square_sum, [3_000_000] * 4)\n"
        )
        assert errors(cell) == [], cell.outputs
        facts = nb.json(f"print(_spy_facts(Out[{cell.execution_count}]))")
    finally:
        nb.run("early_pool.terminate(); early_pool.join()")
    assert set(workers) <= set(facts["pids"]), (workers, facts["pids"])
    own = shares(facts)
    in_workers = sum(v for k, v in own.items() if "pool_square_sum" in k or "genexpr" in k)
    assert in_workers > 30, facts["functions"][:6]


def test_kernel_threads_in_generated_code_are_trimmed():
    from spy_magic.engine import Trace
    from spy_magic.notebook.cells import CellNamer, trim_trace
    from spy_magic.reader import Frame

    session = str(nk.REPO / "spy_magic" / "notebook" / "session.py")
    threading_py = threading.__file__
    trace = Trace(
        pid=1, thread_id=2, native_id=2, thread_name="spy_magic-collect", gil=True, idle=False,
        frames=(
            Frame("__create_fn__.<locals>.__init__", "<string>", 2, 1),
            Frame("RemoteSession._collect", session, 120, 100),
            Frame("Thread.run", threading_py, 975, 970),
            Frame("Thread._bootstrap", threading_py, 995, 990),
        ),
    )  # fmt: skip
    kept = trim_trace(trace, CellNamer({}), frozenset({(1, 3)}), "/tmp/cell.py")
    assert kept is None, kept.frames


# --- the tour ----------------------------------------------------------------------------------


def test_tour_notebook_runs_top_to_bottom(kernel_info, spec_dir, tmp_path):
    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    notebook = nbformat.read(TOUR, as_version=4)
    stored = [c for c in notebook.cells if c.cell_type == "code" and c.get("outputs")]
    assert stored == [], "notebooks/tour.ipynb must be stored without outputs"
    started = time.monotonic()
    km = AsyncKernelManager(
        kernel_name=kernel_info.name, kernel_spec_manager=nk.kernel_spec_manager(spec_dir)
    )
    client = NotebookClient(
        notebook, km=km, kernel_name=kernel_info.name, timeout=120, startup_timeout=120,
        allow_errors=False, resources={"metadata": {"path": str(tmp_path)}},
    )  # fmt: skip
    client.execute(cleanup_kc=True)  # our km: shut the kernel down afterwards all the same
    took = time.monotonic() - started
    assert took < 120, f"the tour took {took:.0f} s"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [], f"the tour wrote into its working directory: {left}"
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    bundles = [o["data"] for o in outputs if "data" in o]
    profiles = [b for b in bundles if set(b) == PROFILE_MIMES]
    # %%spy cells shown (the example, CPU, threads, processes) and the attachment (updated
    # to the flame graph by %spy_stop).
    assert len(profiles) >= 5, [sorted(b) for b in bundles]
    assert any(set(b) == {"image/png", "text/plain"} for b in bundles), "no lag plot"
    # Every live view was replaced: nothing in the saved notebook needs widget state.
    assert not [b for b in bundles if WIDGET in b], [sorted(b) for b in bundles]
    texts = "\n".join(b["text/plain"] for b in profiles)
    for name in ("function_a", "longest_collatz", "crunch", "sum_of_squares"):
        assert name in texts, (name, texts)


def test_tour_notebook_is_what_its_generator_writes():
    import subprocess
    import sys

    script = TOUR.parent / "make_tour.py"
    check = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr or check.stdout


# --- %%spy --save / --baseline: the diff, the timeline and the cell heat map --------------------

DIFF_CELL = """\
import time

def shrinking_work(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def growing_work(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

shrinking_work({a})
growing_work({b})
"""


def test_save_then_baseline_diffs_the_cell_against_the_saved_run(nb):
    unknown = nb.run("%%spy --baseline never_saved\nran_anyway = 1\n")
    message = nk.stderr(unknown).strip()
    assert message.startswith("UsageError: ") and "no run saved as 'never_saved'" in message
    assert "ran_anyway" not in nb.json("import json\nprint(json.dumps(list(globals())))")
    base = nb.run("%%spy --rate 200 --save before -q\n" + DIFF_CELL.format(a=0.8, b=0.2))
    assert errors(base) == [] and base.outputs == [], base.outputs  # -q: kept, not shown
    after = nb.run("%%spy --rate 200 --baseline before\n" + DIFF_CELL.format(a=0.2, b=0.8))
    assert errors(after) == [], after.outputs
    report = final_bundle(after)["text/html"]
    data = json.loads(re.search(r'class="sfg-data">(.*?)</script>', report, re.S).group(1))
    strings, diff = data["strings"], data["diff"]
    shares = {strings[n]: (b, a) for n, b, a in
              zip(diff["name"], diff["base_share"], diff["new_share"])}  # fmt: skip
    assert shares["shrinking_work"][1] < shares["shrinking_work"][0] / 2, shares
    assert shares["growing_work"][1] > 2 * shares["growing_work"][0], shares
    assert "Change against the baseline" in report and "within sampling noise" in report
    # the same report holds the timeline and the heat map of the cell's own lines
    assert data["timeline"]["threads"] and 'class="sfg-timeline"' in report
    here = f"In [{after.execution_count}]"
    assert "Cell heat map" in report and f'data-file="{here}"' in report
    assert "growing_work(0.8)" in report


# --- what crosses the pipe: aggregates, samples only for an output that needs them ----------

# Wraps the kernel's decoder of the helper's profile message, noting each message's fields.
WATCH_DECODES = """\
import spy_magic.notebook.protocol as _proto
_decoded, _real_decode = [], _proto.decode_profile
def _watching_decode(data):
    _decoded.append(sorted(data))
    return _real_decode(data)
_proto.decode_profile = _watching_decode
"""
BUSY_CELL = """\
import time

def busy_for_the_pipe():
    end = time.perf_counter() + 0.4
    while time.perf_counter() < end:
        pass

busy_for_the_pipe()
"""


def test_the_kernel_receives_aggregates_and_samples_only_when_an_output_needs_them(nb, tmp_path):
    from spy_magic.profile.exports import read_jsonl

    assert errors(nb.run(WATCH_DECODES)) == []
    try:
        shown = nb.run("%%spy -r --rate 500 --lag\n" + BUSY_CELL)
        assert errors(shown) == [], shown.outputs
        facts = nb.json(f"print(_spy_facts(Out[{shown.execution_count}]))")
        assert facts["keep_samples"] is False and facts["sample_count"] > 20, facts
        assert "busy_for_the_pipe" in shares(facts), facts["functions"]
        said = nb.json(
            "import json\nfrom spy_magic.profile.model import SamplesNotKept\n"
            f"try:\n    Out[{shown.execution_count}].samples\n"
            "except SamplesNotKept as exc:\n    print(json.dumps(str(exc)))\n"
        )
        assert "needs every sample" in said
        bundles = [o["data"] for o in displays(shown)]
        # the report drawn from the aggregates, then the lag plot from them too
        assert set(bundles[0]) == PROFILE_MIMES and set(bundles[-1]) == {"image/png"}, [
            sorted(b) for b in bundles
        ]
        path = tmp_path / "every.jsonl"
        kept = nb.run(f"%%spy -r -q -o {path} --format jsonl\n" + BUSY_CELL)
        assert errors(kept) == [], kept.outputs
        fields = nb.json("import json\nprint(json.dumps(_decoded))")
        assert len(fields) == 2 and "samples" not in fields[0] and "samples" in fields[1], fields
        facts = nb.json(f"print(_spy_facts(Out[{kept.execution_count}]))")
        assert facts["keep_samples"] is True
        assert read_jsonl(path).sample_count == facts["sample_count"] > 20
    finally:
        nb.run("_proto.decode_profile = _real_decode")


# The kernel's helper started through nk.CUTTING_PYTHON: its profile line arrives cut.
CUT_THE_HELPER = f"""\
import os, sys, tempfile
from spy_magic.notebook.session import RemoteSession
_cutter = os.path.join(tempfile.mkdtemp(), "cutting-python")
with open(_cutter, "w") as _fh:
    _fh.write({nk.CUTTING_PYTHON!r}.format(python=sys.executable))
os.chmod(_cutter, 0o755)
_python_was = RemoteSession.__init__.__kwdefaults__["python"]
RemoteSession.__init__.__kwdefaults__["python"] = _cutter
"""


def test_a_helper_cut_off_in_the_profile_is_told_in_the_cell(nb):
    assert errors(nb.run(CUT_THE_HELPER)) == []
    try:
        cell = nb.run("%%spy --rate 200\nimport time\n\ntime.sleep(1.6)\n")
    finally:
        nb.run("RemoteSession.__init__.__kwdefaults__['python'] = _python_was")
    assert errors(cell) == [], cell.outputs
    said = nk.stderr(cell)
    assert "spy_magic: warning: the sampling helper failed:" in said, said
    assert "broke off in a message" in said and "last live summary counted" in said, said
    bundle = final_bundle(cell)
    assert set(bundle) == PROFILE_MIMES, sorted(bundle)  # no live widget left behind
    assert "the sampling helper failed" in bundle["text/html"]


def test_an_attachment_whose_helper_is_cut_off_says_so_in_its_report(nb):
    pid = nb.json(START_BACKGROUND)
    assert errors(nb.run(CUT_THE_HELPER)) == []
    try:
        attach = nb.run(f"%spy_attach --rate 200 {pid}")
        assert errors(attach) == [], attach.outputs
        number = _attachment_number(attach)
        time.sleep(1.6)
        stop = nb.run(f"attached = %spy_stop {number}")
        assert errors(stop) == [], stop.outputs
        note = nb.json("import json\nprint(json.dumps(attached.metadata.get('note')))")
    finally:
        nb.run("RemoteSession.__init__.__kwdefaults__['python'] = _python_was")
        nb.run(STOP_BACKGROUND)
    assert note and note.startswith("the sampling helper failed:"), note
    assert "broke off in a message" in note and "last live summary counted" in note, note
    bundle = final_bundle(attach)
    assert set(bundle) == PROFILE_MIMES, sorted(bundle)  # no live widget left behind
    assert "the sampling helper failed" in bundle["text/html"]


# --- the in-process fallback (no kernel needed) ----------------------------------------------


def test_in_process_fallback_trims_and_summarises_like_the_helper():
    """When the kernel cannot be read from outside, the in-process sampler's live view and
    its final profile are trimmed to the cell's thread and frames too."""
    pytest.importorskip("IPython")
    from spy_magic.notebook.cells import CellContext
    from spy_magic.notebook.magics import _InProcessSession

    cell_file = __file__  # this test's own frames stand for the cell's
    summaries: list[dict] = []
    this_thread = frozenset({(os.getpid(), threading.get_ident())})
    context = CellContext({cell_file: 7}, cell_file, this_thread)
    session = _InProcessSession({"rate": 200}, context, summaries.append).start()

    def fallback_busy():
        # It lets go of the GIL now and then: a sampler thread inside the process waits a
        # switch interval (5 ms) for it per sample otherwise, and gets a few dozen samples.
        end = time.perf_counter() + 1.6
        while time.perf_counter() < end:
            sum(range(300))
            time.sleep(0.0002)

    fallback_busy()
    profile = session.stop(context)
    assert summaries, "no live summary in 1.6 s"
    names = {row[3].rsplit(".", 1)[-1] for row in summaries[-1]["rows"]}
    assert "fallback_busy" in names, summaries[-1]["rows"]
    assert all(row[4] == "In [7]" for row in summaries[-1]["rows"]), summaries[-1]["rows"]
    files = {f.filename for stats in profile.trace_stats() for f in stats.trace.frames}
    assert files == {"In [7]"}, files
    assert profile.metadata["mode"] and profile.sample_count > 50
    assert not profile.keep_samples and profile.timeline.lanes, "aggregates and timeline only"


def test_in_process_fallback_retrims_what_it_aggregated_when_the_context_changes():
    """A context sent mid-cell (the thread running the cell became known) trims again what
    was sampled before it, from the aggregates and the timeline: no sample log is kept."""
    pytest.importorskip("IPython")
    from spy_magic.notebook.cells import CellContext
    from spy_magic.notebook.magics import _InProcessSession

    cell_file = __file__
    this_thread = frozenset({(os.getpid(), threading.get_ident())})
    # First the cell is thought to be another file: every stack of this thread is the
    # kernel's, trimmed away.
    wrong = CellContext({cell_file: 7, "/elsewhere/cell.py": 8}, "/elsewhere/cell.py", this_thread)
    session = _InProcessSession({"rate": 200}, wrong).start()

    def fallback_spin(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            sum(range(300))
            time.sleep(0.0002)

    fallback_spin(0.8)
    assert session.live.profile.trace_count == 0, "the wrong context kept a stack"
    session.update_context(CellContext({cell_file: 7}, cell_file, this_thread))
    fallback_spin(0.8)
    profile = session.stop()
    assert not profile.keep_samples
    # Every sample saw this thread in the cell: the ones before the new context too.
    assert profile.sample_count > 50
    assert profile.trace_count >= 0.95 * profile.sample_count, (
        profile.trace_count, profile.sample_count)  # fmt: skip
    names = {f.name.rsplit(".", 1)[-1] for st in profile.trace_stats() for f in st.trace.frames}
    assert "fallback_spin" in names, names
    lane = next(iter(profile.timeline.lanes.values()))
    span = max(profile.timeline.samples) + 1
    assert min(lane.buckets) < span / 4, "the first half's stacks are gone from the timeline"
