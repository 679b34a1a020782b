"""The notebook front in real front ends: JupyterLab 4 and Notebook 7, in Debian's chromium.

Each test starts a Jupyter server of its own (fresh config, data, runtime and IPython dirs
under tmp, so no user setting leaks in), writes a small notebook into its root and opens it
in chromium driven by playwright, then runs the cells with Shift+Enter on the server's
`python3` kernel (this interpreter, importing spy_magic from this repository):

1. `%load_ext spy_magic`;
2. a `%%spy` cell running the spec's sleeping example (function_a/b/c, about 1 s): the
   report must replace the live table: its header (samples, duration, rate achieved and
   asked, the verdict), the flame graph (canvas with ink, toolbar, legend) in the colours
   of the Jupyter theme, its tooltip naming a hovered frame with seconds beside the shares,
   its search box finding `function_a` in nearly every sample, the by line / by function
   toggle (function_a is two boxes by line, one by function), the function table with
   seconds, and its arrow keys / Enter moving and zooming in the graph rather than between
   the notebook's cells;
3. a cell starting a busy Python process and `%spy_attach`-ing it: the live top table must
   show its functions and change between two readings ~2 s apart; its Stop button must turn
   the output into the attachment's flame graph;
4. a new cell ending the busy process (the kernel still answers).

No error output, no "Error displaying widget", no page error after the cells start. Runs in
JupyterLab (light and dark theme) and Notebook 7, the browser preferring a dark colour scheme.

`test_saved_notebook_reopens_with_its_profile`: run two %%spy cells (one `--function`),
save, shut the kernel down, reload the page: both profiles must show again and work (hover,
zoom, toggle, table), with no "Error displaying widget", in JupyterLab and Notebook 7 and
with the widget manager's "save widget state" on and off; each profile adds at most 200 KB
to the saved file. A copy the server never signed (someone else's notebook: scripts are
stripped) must still show the header, the table and the picture.

Screenshots go to test-artifacts/jupyter-<front end>-*.png. The server, its kernels and
everything they started are killed at the end, whatever happened.

Skipped when chromium, playwright, jupyterlab or notebook 7 is missing, unless
SPY_MAGIC_REQUIRE_BROWSER=1 (CI), where that fails instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import ARTIFACTS, launched_chromium, missing, require_chromium_and_playwright

REPO = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT_S = 180  # a server starting on a loaded 2-core machine is slow
TIMEOUT_MS = 60_000  # any single wait in the page (a loaded 2-core machine is slow)


def _major(distribution: str) -> int:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version(distribution).split(".")[0])
    except (PackageNotFoundError, ValueError):
        return 0


require_chromium_and_playwright()

for _module, _what in (("ipykernel", "ipykernel"), ("nbformat", "nbformat")):
    if importlib.util.find_spec(_module) is None:
        missing(f"{_what} is not installed (pip install -e '.[test]')")
if _major("jupyterlab") < 4:
    missing("JupyterLab 4 is not installed (pip install -e '.[test]')")
if _major("notebook") < 7:
    missing("Notebook 7 is not installed (pip install -e '.[test]')")

import nbformat  # noqa: E402 - only once we know it is there

# id: (the notebook's address, the JupyterLab theme). The browser prefers a dark colour
# scheme throughout (as a dark desktop does): a light Jupyter theme must still win over it.
FRONTENDS = {
    "lab": ("/lab/tree/{name}", "JupyterLab Light"),
    "notebook7": ("/notebooks/{name}", "JupyterLab Light"),
    "lab-dark": ("/lab/tree/{name}", "JupyterLab Dark"),
}
BUSY_MARK = "spy-magic-frontend-busy"  # in the busy process's argv: easy to spot in `ps`

LOAD_CELL = """\
%load_ext spy_magic
import spy_magic
print("spy_magic from", spy_magic.__file__)"""

# The spec's example, short: 6 rounds of 0.16 s.
SPY_CELL = """\
%%spy
import time

def function_c():
    time.sleep(0.01)

def function_b():
    time.sleep(0.05)
    function_c()

def function_a():
    time.sleep(0.1)
    function_b()

for _ in range(6):
    function_a()"""

BUSY_SOURCE = """
import time
def crunch(n):
    return sum(i * i for i in range(n))
def busy_loop(seconds):
    end = time.time() + seconds
    while time.time() < end:
        crunch(20000)
busy_loop(60)
"""
ATTACH_CELL = f"""\
import subprocess, sys
busy = subprocess.Popen([sys.executable, "-c", {BUSY_SOURCE!r}, {BUSY_MARK!r}])
%spy_attach {{busy.pid}}"""

# Errors the front ends themselves log while loading, whatever the notebook holds: they are
# tolerated before the cells run, never after, and never when they mention the widgets.
OURS = re.compile(r"spy|sfg|anywidget|widget|flame", re.IGNORECASE)


# --- the server ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _isolated_env(base: Path) -> dict:
    """Our environment with every Jupyter/IPython user path under `base`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    dirs = {
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "IPYTHONDIR": base / "ipython",
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["PYTHONNOUSERSITE"] = "1"  # keeps ~/.local/share/jupyter (its kernel specs) out
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    # No news toast over the notebook, no update check (it would try to reach PyPI).
    settings = dirs["JUPYTER_CONFIG_DIR"] / "lab" / "user-settings" / "@jupyterlab"
    notification = settings / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True, exist_ok=True)
    notification.write_text(json.dumps({"checkForUpdates": False, "fetchNews": "false"}))
    return env


class JupyterServer:
    def __init__(self, base: Path) -> None:
        self.settings = base / "config" / "lab" / "user-settings"
        self.root = base / "root"
        self.root.mkdir()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0", "--IdentityProvider.token=",
                "--ServerApp.password=", f"--ServerApp.root_dir={self.root}",
            ],
            env=_isolated_env(base), cwd=str(self.root), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def set_widget_state_saving(self, on: bool) -> None:
        """The widget manager's "Save Widget State Automatically" (off by default)."""
        path = (
            self.settings / "@jupyter-widgets" / "jupyterlab-manager" / "plugin.jupyterlab-settings"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"saveState": on}))

    def shut_kernels_down(self, page) -> None:
        """Shut every kernel down, as a restart ends the old one, through the page's own
        session (the server wants its XSRF cookie back); wait until none is listed."""
        xsrf = next((c["value"] for c in page.context.cookies() if c["name"] == "_xsrf"), "")
        kernels = f"{self.url}/api/kernels"
        for kernel in page.request.get(kernels).json():
            answer = page.request.delete(f"{kernels}/{kernel['id']}", headers={"X-XSRFToken": xsrf})
            assert answer.ok, (answer.status, answer.text())
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while page.request.get(kernels).json():
            assert time.monotonic() < deadline, "the kernels did not shut down"
            time.sleep(0.2)

    def set_theme(self, theme: str) -> None:
        """The theme of the pages opened from now on (Lab and Notebook 7 share it)."""
        path = self.settings / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"theme": theme}))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/status", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self._answers():
            if self.proc.poll() is not None:
                raise AssertionError(f"jupyter server exited ({self.proc.returncode}):\n"
                                     f"{self.log()}")  # fmt: skip
            if time.monotonic() > deadline:
                raise AssertionError(f"no jupyter server on {self.url} after "
                                     f"{SERVER_START_TIMEOUT_S} s:\n{self.log()}")  # fmt: skip
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server (it shuts its kernels down), then kill whatever it started that is
        still alive: kernels, spy_magic helpers, the busy process (reparented by then)."""
        import psutil

        try:
            started = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            started = []
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for proc in started:
            with contextlib.suppress(psutil.Error):
                proc.kill()  # psutil checks it is still the same process (no reused pid)
        psutil.wait_procs(started, timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def server(tmp_path):
    srv = JupyterServer(tmp_path)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as b:
        yield b


def write_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in (LOAD_CELL, SPY_CELL, ATTACH_CELL)]
    nbformat.write(nb, str(path))


# --- helpers -------------------------------------------------------------------------------------


def canvas_ink(canvas) -> int:
    """How many pixels of the canvas are not blank."""
    return canvas.evaluate(
        """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n;
    }"""
    )


def check_flame_graph(output, search: str) -> float:
    """The flame graph widget in `output` is drawn and usable; returns the share (in %) of
    the samples its search box finds for `search`."""
    graph = output.locator(".sfg")
    graph.wait_for(state="visible")
    # The graph follows the Jupyter theme (not the browser's dark preference).
    scheme = graph.evaluate("e => getComputedStyle(e).getPropertyValue('--sfg-scheme').trim()")
    light = graph.evaluate("() => document.body.dataset.jpThemeLight")
    assert scheme == ("light" if light == "true" else "dark"), (scheme, light)
    canvas = graph.locator("canvas.sfg-canvas")
    box = canvas.bounding_box()
    rows = graph.evaluate("e => e.__spyFlame.state().rows")
    # As tall as the stack is deep (18 px a row, at least 3, at most 560 px in a notebook):
    # no blank band above it.
    assert box and box["width"] > 300, box
    assert box["height"] == pytest.approx(min(560, max(3, rows) * 18 + 4), abs=1), (box, rows)
    assert canvas_ink(canvas) > 5_000
    legend = graph.locator(".sfg-legend").inner_text()
    assert "your code" in legend and "standard library" in legend, legend
    segments = graph.locator(".sfg-seg").all_inner_texts()
    assert segments == ["By line", "By function", "Flame", "Icicle"], segments
    zoom_info = graph.locator(".sfg-zoominfo").inner_text()
    samples = re.search(r"([\d,]+) samples · \d+(\.\d+)? m?s$", zoom_info)
    assert samples and int(samples.group(1).replace(",", "")) > 10, zoom_info
    box_input = graph.locator("input.sfg-search")
    box_input.fill(search)
    pct = graph.locator(".sfg-match-pct")
    pct.wait_for(state="visible")
    info = graph.locator(".sfg-match").inner_text()
    assert "matched" in info, info
    share = pct.inner_text()
    assert share.endswith("%"), share
    return float(share.rstrip("%").lstrip("<"))


SECONDS = r"\d+(?:\.\d+)? m?s"


def check_report(output) -> None:
    """The header and the table of the report: the numbers people look for, seconds
    beside every share."""
    header = output.locator(".spy-header").inner_text()
    for word in ("Samples", "Duration", "Rate", "Hz of 100 Hz asked", "Threads"):
        assert word in header, header
    verdict = output.locator(".sfg-verdict").inner_text()
    assert re.match(r"(kept up|late|rate lowered|fewer samples)", verdict), verdict
    rows = {}
    for row in output.locator(".sfg-table tbody tr").all():
        name, _file, own, total = row.locator("td").all_inner_texts()
        rows[name] = (own, total)
    assert {"function_a", "function_b", "function_c", "<module>"} <= set(rows), rows
    for own, total in rows.values():
        assert re.fullmatch(rf"[\d.<]+%\s+{SECONDS}", own), own
        assert re.fullmatch(rf"[\d.<]+%\s+{SECONDS}", total), total
    assert float(rows["function_a"][1].split("%")[0]) > 90  # under it: b and c


def check_toggle(output) -> None:
    """By line `function_a` is two boxes (its sleep, its call of function_b) and its
    tooltip gives the function's total beside the box's; by function it is one box."""
    flame = output.locator(".sfg")
    state = lambda: flame.evaluate("e => e.__spyFlame.state()")  # noqa: E731
    if state()["by"] != "line":
        output.locator(".sfg-by-line").click()
    boxes = flame.evaluate("e => e.__spyFlame.findFrames('function_a')")
    assert len(boxes) == 2, boxes
    page = output.page
    page.mouse.move(boxes[1]["clientX"], boxes[1]["clientY"])
    tip = output.locator(".sfg-tooltip")
    tip.wait_for(state="visible")
    text = tip.inner_text()
    assert re.search(rf"Of total\s+[\d.]+% · {SECONDS}", text), text
    assert re.search(rf"Function total\s+[\d.]+% · {SECONDS}, 2 boxes", text), text
    by_line = state()["nodes"]
    output.locator(".sfg-by-function").click()
    assert state()["by"] == "function" and state()["nodes"] < by_line
    assert len(flame.evaluate("e => e.__spyFlame.findFrames('function_a')")) == 1
    page.mouse.move(5, 5)


def check_keyboard(page, output) -> None:
    """With the graph focused, arrows move between frames and Enter zooms, even with the
    notebook in command mode (where they would move between cells)."""
    assert output.evaluate("e => e.contains(window.__spyFlame.root)")
    state = lambda: page.evaluate("window.__spyFlame.state()")  # noqa: E731
    active_cell = "() => [...document.querySelectorAll('.jp-Cell')].findIndex(c => " \
        "c.classList.contains('jp-mod-active'))"  # fmt: skip
    output.locator(".sfg-scroller").click(position={"x": 3, "y": 3})  # blank: above the frames
    cell = page.evaluate(active_cell)
    page.keyboard.press("ArrowUp")  # selects the root
    page.keyboard.press("ArrowUp")  # its heaviest child
    selected = state()["selected"]
    assert selected and selected["name"] == "<module>", selected
    page.keyboard.press("Enter")
    assert state()["zoom"]["name"] == "<module>"
    page.keyboard.press("Escape")
    assert state()["zoom"]["name"] == "all"
    assert page.evaluate("document.activeElement.classList.contains('sfg-scroller')")
    assert page.evaluate(active_cell) == cell
    assert page.locator(".jp-Notebook.jp-mod-editMode").count() == 0
    page.evaluate("document.activeElement.blur()")


def top_status(output) -> tuple[str, int, list[str]]:
    """(status line, samples in it, function names in the rows) of the live top table."""
    status = output.locator(".spy-top-head").inner_text()
    found = re.search(r"(\d+) samples", status)
    names = output.locator(".spy-top tr td:nth-child(4)").all_inner_texts()
    return status, int(found.group(1)) if found else -1, names


def watch_kernel(page) -> list:
    """A list that gets an item once the page's kernel connection has its kernel_info_reply.

    Cells run before that may be dropped silently: both front ends report "idle" before
    the kernel's websocket is even open, and requests queued then can be lost (seen in
    about one JupyterLab start out of three here)."""
    ready: list = []

    def frame(payload) -> None:
        data = payload if isinstance(payload, bytes) else payload.encode("utf-8", "replace")
        if b"kernel_info_reply" in data:
            ready.append(True)

    def websocket(ws) -> None:
        if "/api/kernels/" in ws.url and "/channels" in ws.url:
            ws.on("framereceived", frame)

    page.on("websocket", websocket)
    return ready


def wait_for_kernel(page, ready: list) -> None:
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not ready:
        assert time.monotonic() < deadline, "the page's kernel never answered kernel_info"
        page.wait_for_timeout(100)  # lets playwright deliver the websocket events
    page.wait_for_function(  # and the front end took it in
        "() => [...document.querySelectorAll('.jp-Notebook-ExecutionIndicator')]"
        ".some(e => e.getAttribute('data-status') === 'idle')"
    )
    page.wait_for_timeout(500)


def no_error_outputs(page) -> None:
    notebook = page.locator(".jp-Notebook")
    stderr = notebook.locator("[data-mime-type='application/vnd.jupyter.stderr']")
    assert stderr.count() == 0, stderr.all_inner_texts()
    text = notebook.inner_text()
    for bad in ("Traceback", "Error displaying widget", "Failed to load model"):
        assert bad not in text, f"{bad!r} in the notebook:\n{text[-3000:]}"


# --- the test ------------------------------------------------------------------------------------


@pytest.mark.parametrize("frontend", list(FRONTENDS))
def test_widgets_render_and_update(frontend, server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = lambda what: str(ARTIFACTS / f"jupyter-{frontend}-{what}.png")  # noqa: E731
    Path(shot("failure")).unlink(missing_ok=True)  # only a failure of this run leaves one
    name = f"spy-{frontend}.ipynb"
    write_notebook(server.root / name)

    address, theme = FRONTENDS[frontend]
    server.set_theme(theme)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme="dark")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    phase = ["load"]
    errors: list[tuple[str, str]] = []

    def console(message) -> None:
        if message.type == "error":
            errors.append((phase[0], f"console.error: {message.text}"))

    page.on("pageerror", lambda e: errors.append((phase[0], f"pageerror: {e}")))
    page.on("console", console)
    kernel = watch_kernel(page)
    try:
        page.goto(server.url + address.format(name=name))
        cells = page.locator(".jp-Notebook .jp-Cell")
        cells.nth(2).wait_for(state="visible")
        wait_for_kernel(page, kernel)
        phase[0] = "run"
        cells.nth(0).locator(".jp-InputPrompt").click()
        for _ in range(3):
            page.keyboard.press("Shift+Enter")

        # 1. %load_ext: this repository's spy_magic.
        loaded = cells.nth(0).locator(".jp-OutputArea")
        page.wait_for_function(
            "e => e.innerText.includes('spy_magic from')", arg=loaded.element_handle()
        )
        assert str(REPO) in loaded.inner_text(), loaded.inner_text()

        # 2. %%spy: the flame graph replaced the live view; hover a frame, then search.
        spy_out = cells.nth(1).locator(".jp-OutputArea")
        spy_out.locator(".sfg canvas").wait_for(state="visible")
        spy_out.scroll_into_view_if_needed()
        frames = page.evaluate("window.__spyFlame.findFrames('function_b')")
        assert frames, "no function_b frame drawn"
        page.mouse.move(frames[0]["clientX"], frames[0]["clientY"])
        tip = spy_out.locator(".sfg-tooltip")
        tip.wait_for(state="visible")
        assert "function_b" in tip.inner_text() and "In [2]" in tip.inner_text(), tip.inner_text()
        spy_out.screenshot(path=shot("flamegraph-hover"))
        share = check_flame_graph(spy_out, "function_a")
        assert share >= 80, f"function_a is in only {share}% of the samples"
        page.mouse.move(5, 5)
        spy_out.screenshot(path=shot("flamegraph-search"))
        spy_out.locator("input.sfg-search").fill("")
        check_report(spy_out)
        check_toggle(spy_out)
        spy_out.screenshot(path=shot("flamegraph-by-function"))
        spy_out.locator(".sfg-by-line").click()
        check_keyboard(page, spy_out)

        # 3. %spy_attach: the live top table, two readings apart, then Stop.
        attach_cell = cells.nth(2)
        attach_out = attach_cell.locator(".jp-OutputArea")
        attach_out.locator(".spy-top td").first.wait_for(state="visible")
        printed = attach_out.inner_text()
        pid = re.search(r"sampling pid (\d+)", printed)
        assert pid, printed
        page.wait_for_function(
            "e => /busy_loop/.test(e.innerText) && /[1-9]\\d* samples/.test(e.innerText)",
            arg=attach_out.element_handle(),
        )
        first = top_status(attach_out)
        time.sleep(2.2)
        second = top_status(attach_out)
        assert second[1] > first[1] > 0, (first, second)
        assert second[0] != first[0], (first, second)
        assert {"busy_loop", "crunch"} <= set(second[2]), second
        attach_cell.scroll_into_view_if_needed()
        attach_out.screenshot(path=shot("top"))
        page.screenshot(path=shot("top-page"))

        stop = attach_out.locator("button", has_text="Stop")
        assert stop.is_enabled()
        stop.click()
        attach_out.locator(".sfg canvas").wait_for(state="visible")
        assert attach_out.locator(".spy-top").count() == 0  # the live view was replaced
        page.wait_for_function(  # and so was the line telling how to stop it
            "e => !/to stop/.test(e.innerText)", arg=attach_out.element_handle()
        )
        share = check_flame_graph(attach_out, "busy_loop")
        assert share >= 80, f"busy_loop is in only {share}% of the samples"
        page.mouse.move(5, 5)
        attach_out.screenshot(path=shot("attach-flamegraph"))

        # 4. The kernel is still responsive: end the busy process from a new cell.
        kill_cell = cells.nth(3)
        kill_cell.locator(".cm-content").click()
        page.keyboard.type("busy.kill(); print('busy process ended', busy.wait())")
        page.keyboard.press("Enter")  # the profile the Stop button ended can be fetched
        page.keyboard.type("stopped = %spy_stop 1")
        page.keyboard.press("Enter")
        page.keyboard.type("print('fetched', type(stopped).__name__, stopped.sample_count > 0)")
        page.keyboard.press("Shift+Enter")
        page.wait_for_function(
            "e => e.innerText.includes('fetched')",
            arg=kill_cell.locator(".jp-OutputArea").element_handle(),
        )
        kill_text = kill_cell.locator(".jp-OutputArea").inner_text()
        assert "busy process ended" in kill_text and "fetched Profile True" in kill_text, kill_text
        assert not os.path.exists(f"/proc/{pid.group(1)}")  # reaped by busy.wait()

        no_error_outputs(page)
        page.screenshot(path=shot("page"))
        late = [text for when, text in errors if when == "run" or OURS.search(text)]
        assert not late, late
    except BaseException:
        # What the page showed, for the report: a screenshot, its text, the server's log.
        with contextlib.suppress(Exception):
            page.screenshot(path=shot("failure"))
        with contextlib.suppress(Exception):
            print("--- notebook text ---\n" + page.locator(".jp-Notebook").inner_text()[-4000:])
        print("--- page errors ---\n" + "\n".join(f"[{w}] {t}" for w, t in errors))
        print("--- server log ---\n" + server.log())
        raise
    finally:
        context.close()


# --- a saved notebook, reopened without its kernel -----------------------------------------------

PER_PROFILE_LIMIT = 200_000  # bytes a typical profile may add to the saved notebook
REOPEN_CELLS = (LOAD_CELL, SPY_CELL, SPY_CELL.replace("%%spy", "%%spy --function", 1))


def _saved_profiles(path: Path) -> list[dict] | None:
    """The profile outputs saved in the notebook at `path` (None while it holds none)."""
    try:
        nb = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    outputs = [o for c in nb["cells"] for o in c.get("outputs", []) if "data" in o]
    text = lambda o: "".join(o["data"].get("text/plain", ""))  # noqa: E731
    profiles = [o for o in outputs if text(o).startswith("spy_magic:")]
    return profiles if len(profiles) == 2 else None


def _open(page, server, address: str, name: str) -> None:
    page.goto(server.url + address.format(name=name))
    # The notebook in the active tab (JupyterLab keeps the ones opened before in hidden tabs).
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")
    cells.nth(0).wait_for(state="visible")
    cells.nth(len(REOPEN_CELLS) - 1).wait_for(state="attached")


def _show(output) -> None:
    """Scroll an output into view: the notebook hides (windows) cells out of sight."""
    output.evaluate("e => e.scrollIntoView({block: 'start'})")


def _check_reopened(page, outputs) -> None:
    """Each profile output shows the live report again: drawn, hoverable, zoomable."""
    for index, output in enumerate(outputs):
        _show(output)
        page.wait_for_function(
            "e => e.querySelector('.sfg canvas') || /Error displaying/.test(e.innerText)",
            arg=output.element_handle(),
        )
        assert "Error displaying widget" not in output.inner_text(), output.inner_text()
        output.locator(".sfg canvas").wait_for(state="visible")
        assert output.locator(".sfg-fallback").count() == 0  # the script replaced it
        flame = output.locator(".sfg")
        state = lambda flame=flame: flame.evaluate("e => e.__spyFlame.state()")  # noqa: E731
        assert state()["by"] == ("line", "function")[index]  # the second one is --function
        assert canvas_ink(flame.locator("canvas.sfg-canvas")) > 5_000
        check_report(output)
        box = flame.evaluate("e => e.__spyFlame.findFrames('function_b')")[0]
        page.mouse.move(box["clientX"], box["clientY"])
        tip = output.locator(".sfg-tooltip")
        tip.wait_for(state="visible")
        assert "function_b" in tip.inner_text() and " · " in tip.inner_text(), tip.inner_text()
        page.mouse.click(box["clientX"], box["clientY"])
        assert state()["zoom"]["name"] == "function_b"
        output.locator(".sfg-reset").click()
        check_toggle(output)


@pytest.mark.parametrize("save_state", [False, True], ids=["no-widget-state", "widget-state"])
@pytest.mark.parametrize("frontend", ["lab", "notebook7"])
def test_saved_notebook_reopens_with_its_profile(frontend, save_state, server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    tag = f"{frontend}-{'state' if save_state else 'nostate'}"
    shot = lambda what: str(ARTIFACTS / f"jupyter-{tag}-{what}.png")  # noqa: E731
    Path(shot("failure")).unlink(missing_ok=True)
    name = f"reopen-{tag}.ipynb"
    path = server.root / name
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in REOPEN_CELLS]
    nbformat.write(nb, str(path))
    empty_size = path.stat().st_size
    server.set_theme("JupyterLab Light")
    server.set_widget_state_saving(save_state)
    address = FRONTENDS[frontend][0]
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    try:
        kernel = watch_kernel(page)
        _open(page, server, address, name)
        wait_for_kernel(page, kernel)
        cells = page.locator(".jp-Notebook .jp-Cell")
        cells.nth(0).locator(".jp-InputPrompt").click()
        for _ in REOPEN_CELLS:
            page.keyboard.press("Shift+Enter")
        for i in (1, 2):
            _show(cells.nth(i))
            cells.nth(i).locator(".jp-OutputArea .sfg canvas").wait_for(state="visible")
        page.keyboard.press("Control+s")
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while (saved := _saved_profiles(path)) is None:
            assert time.monotonic() < deadline, "the notebook was not saved with its profiles"
            time.sleep(0.2)
        # The kernel goes away (a restart, a shutdown); the page is loaded afresh.
        server.shut_kernels_down(page)
        page.reload()
        _open(page, server, address, name)
        outputs = [cells.nth(i).locator(".jp-OutputArea") for i in (1, 2)]
        _check_reopened(page, outputs)
        text = page.locator(".jp-Notebook").inner_text()
        for bad in ("Error displaying widget", "model not found", "Traceback"):
            assert bad not in text, f"{bad!r} in the reopened notebook"
        _show(outputs[0])
        page.screenshot(path=shot("reopened"))
        outputs[1].screenshot(path=shot("reopened-function"))

        # What the profiles cost the saved file.
        size = path.stat().st_size
        per_profile = (size - empty_size) / 2
        print(f"\n{tag}: saved notebook {size} bytes, {per_profile:.0f} a profile")
        assert per_profile <= PER_PROFILE_LIMIT, (size, empty_size)
        for output in saved:
            assert "application/vnd.jupyter.widget-view+json" not in output["data"]
            assert len(json.dumps(output)) <= PER_PROFILE_LIMIT
        # The live tables were closed once replaced: no widget state to save, or to miss.
        widgets = json.loads(path.read_text())["metadata"].get("widgets", {})
        models = widgets.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
        assert models == {}, sorted(m.get("model_name") for m in models.values())

        # Someone else's copy (its signature no longer matches): scripts are stripped, the
        # header, the table and the picture still show, and still no error.
        if not save_state:
            other = nbformat.read(str(path), as_version=4)
            other.cells.insert(0, nbformat.v4.new_markdown_cell("A copy from a colleague."))
            nbformat.write(other, str(server.root / f"copy-{name}"))
            _open(page, server, address, f"copy-{name}")
            shown = page.locator(
                ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook",
                has_text="A copy from a colleague.",
            )  # its tab, once active
            shown.wait_for(state="visible")
            copy = shown.locator(".jp-Cell").nth(2).locator(".jp-OutputArea")
            _show(copy)
            image = copy.locator("img.sfg-fallback")
            image.wait_for(state="visible")
            assert image.evaluate("i => i.complete && i.naturalWidth") > 500
            assert copy.locator(".sfg canvas").count() == 0
            assert "Samples" in copy.inner_text() and "function_a" in copy.inner_text()
            text = shown.inner_text()
            assert "Error displaying widget" not in text and "model not found" not in text
            copy.screenshot(path=shot("untrusted"))
        ours = [e for e in errors if OURS.search(e)]
        assert not ours, ours
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=shot("failure"))
        print("--- page errors ---\n" + "\n".join(errors))
        print("--- server log ---\n" + server.log())
        raise
    finally:
        context.close()


# --- the live view, caught mid-cell --------------------------------------------------------------

LIVE_CELL = """\
%%spy
import time

def live_outer():
    live_inner()

def live_inner():
    end = time.perf_counter() + 10
    while time.perf_counter() < end:
        sum(range(500))

live_outer()"""


@pytest.mark.parametrize("frontend", ["lab", "notebook7"])
def test_live_view_shows_only_the_cells_functions(frontend, server, browser):
    """While a %%spy cell runs, its live table lists the cell's own functions only (no
    ipykernel, zmq, tornado or spy_magic frames; no kernel thread), and its status line
    gives the elapsed time, the samples and the rate achieved against the asked one."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = lambda what: str(ARTIFACTS / f"jupyter-{frontend}-live-{what}.png")  # noqa: E731
    name = f"live-{frontend}.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in (LOAD_CELL, LIVE_CELL)]
    nbformat.write(nb, str(server.root / name))
    server.set_theme("JupyterLab Light")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    try:
        kernel = watch_kernel(page)
        page.goto(server.url + FRONTENDS[frontend][0].format(name=name))
        cells = page.locator(".jp-Notebook .jp-Cell")
        cells.nth(1).wait_for(state="visible")
        wait_for_kernel(page, kernel)
        cells.nth(0).locator(".jp-InputPrompt").click()
        page.keyboard.press("Shift+Enter")
        page.keyboard.press("Shift+Enter")
        live = cells.nth(1).locator(".jp-OutputArea")
        page.wait_for_function(
            "e => /live_inner/.test(e.innerText) && /[1-9][\\d,]* samples/.test(e.innerText)",
            arg=live.element_handle(),
        )
        status, samples, names = top_status(live)
        locations = live.locator(".spy-top tr td:nth-child(5)").all_inner_texts()
        live.screenshot(path=shot("mid-cell"))
        assert live.locator(".sfg").count() == 0, "caught after the cell, not during it"
        assert samples > 0 and {"live_inner", "live_outer"} <= set(names), (status, names)
        assert all(loc.startswith("In [") for loc in locations), list(zip(names, locations))
        assert re.search(r"\d+\.\d s, [\d,]+ samples, [\d,]+ Hz of 100 asked", status), status
        # The finished report then replaces it.
        live.locator(".sfg canvas").wait_for(state="visible", timeout=120_000)
        assert live.locator(".spy-top").count() == 0
        no_error_outputs(page)
        ours = [e for e in errors if OURS.search(e)]
        assert not ours, ours
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=shot("failure"))
        print("--- page errors ---\n" + "\n".join(errors))
        print("--- server log ---\n" + server.log())
        raise
    finally:
        context.close()
