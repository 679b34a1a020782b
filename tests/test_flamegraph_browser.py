"""The flame graph in a real browser: Debian's chromium driven by playwright.

Writes an HTML page (`render_html`) from a synthetic tree (3 processes, 6 threads, ~20k
nodes), opens it from file:// and drives it like a person: hover, click to zoom, Escape,
search, icicle toggle, thread/process filters; then times a 50k-node build + first draw.
A small hand-made profile (a function called from two lines) checks the report around it:
the by line / by function toggle, the tooltip's seconds and the function's true total, the
sortable function table, Python and JS formatting alike, and the notebook fragment sized to
its stack. Screenshots go to test-artifacts/. Skipped when /usr/bin/chromium or playwright
is missing.
"""

from __future__ import annotations

import base64
import random
import re
from collections import Counter

import pytest
from browser import ARTIFACTS, launched_chromium, require_chromium_and_playwright

from spy_magic.profile import flametree
from spy_magic.profile.flametree import build_tree, build_views, node_count
from spy_magic.profile.html import asset, render_html
from spy_magic.profile.summary import fmt_pct

require_chromium_and_playwright()

APP = "/home/dev/proj/app.py"
TRAIN = "/home/dev/proj/train.py"
NEEDLE = "needle_fn"
HOVER = "train_epoch"

_STDLIB = [
    ("loads", "/usr/lib/python3.11/json/__init__.py"),
    ("decode", "/usr/lib/python3.11/json/decoder.py"),
    ("raw_decode", "/usr/lib/python3.11/json/decoder.py"),
    ("_run_once", "/usr/lib/python3.11/asyncio/base_events.py"),
    ("select", "/usr/lib/python3.11/selectors.py"),
    ("run", "/usr/lib/python3.11/threading.py"),
    ("wait", "/usr/lib/python3.11/threading.py"),
    ("_bootstrap_inner", "/usr/lib/python3.11/threading.py"),
    ("_find_and_load", "<frozen importlib._bootstrap>"),
    ("sub", "/usr/lib/python3.11/re/__init__.py"),
]
_LIB = [
    ("array_function_dispatch", "/venv/lib/python3.11/site-packages/numpy/core/overrides.py"),
    ("matmul", "/venv/lib/python3.11/site-packages/numpy/core/numeric.py"),
    ("read_csv", "/venv/lib/python3.11/site-packages/pandas/io/parsers/readers.py"),
    ("_read", "/venv/lib/python3.11/site-packages/pandas/io/parsers/readers.py"),
    ("get", "/venv/lib/python3.11/site-packages/requests/api.py"),
    ("send", "/venv/lib/python3.11/site-packages/requests/sessions.py"),
]
_USER = [
    ("load_batch", "/home/dev/proj/data.py"),
    ("augment", "/home/dev/proj/data.py"),
    ("forward", "/home/dev/proj/model.py"),
    ("backward", "/home/dev/proj/model.py"),
    ("Layer.__call__", "/home/dev/proj/model.py"),
    ("<lambda>", "/home/dev/proj/util.py"),
    ("f (x)", "/home/dev/proj/odd (copy).py"),
    ("ns::op", "/home/dev/proj/util.py"),
    ("compute_loss", "/home/dev/proj/losses.py"),
    ("<genexpr>", "/home/dev/proj/util.py"),
]
_POOL = _STDLIB + _LIB + _USER

THREADS = [
    (101, 1001, "MainThread"),
    (101, 1002, "worker-1"),
    (101, 1003, "worker-2"),
    (202, 2001, "MainThread"),
    (202, 2002, "io"),
    (303, 3001, "MainThread"),
]


def _label(name: str, filename: str, line: int) -> str:
    return f"{name} ({filename}:{line})"


def synthetic_counts(scale: float = 1.0, *, seed: int = 7, min_weight: int = 12) -> dict:
    """A deterministic pseudo-random "program" per thread in THREADS: a call tree whose
    weights split unevenly at each level (so there are towers and plateaus, like real
    profiles), user code calling into libraries further down, a known hot frame
    (`train_epoch`, a third of pid 101's main thread) and a rare needle that sometimes
    recurses. `scale` multiplies the samples, hence (roughly) the node count."""
    rng = random.Random(seed)
    counts: dict = {}
    for pid, tid, tname in THREADS:
        per: dict[tuple[str, ...], int] = {}
        weight = int((9000 if tname == "MainThread" else 4000) * scale)

        def grow(path: tuple[str, ...], weight: int, depth: int, per: dict = per) -> None:
            if weight < min_weight or depth > 40:
                per[path] = per.get(path, 0) + weight
                return
            own = int(weight * rng.random() ** 3 * 0.4)
            if own:
                per[path] = per.get(path, 0) + own
            rest = weight - own
            fan = 1 + int(rng.random() ** 1.5 * (7 if depth < 6 else 4))
            shares = sorted((rng.random() ** 2.5 for _ in range(fan)), reverse=True)
            total_share = sum(shares)
            pool = _USER if depth < 5 else _USER + _STDLIB + _LIB if depth < 9 else _POOL
            picks = rng.sample(pool, min(fan, len(pool)))
            for (name, filename), share in zip(picks, shares):
                w = int(rest * share / total_share)
                if not w:
                    continue
                label = _label(name, filename, 10 + 7 * rng.randrange(4))
                if rng.random() < 0.02:  # the needle, sometimes under another needle
                    label = _label(NEEDLE, TRAIN, 120)
                    if rng.random() < 0.5:
                        path = (*path, label, _label("helper", TRAIN, 130))
                grow((*path, label), w, depth + 1)

        base = (_label("<module>", APP, 1), _label("main", APP, 40))
        if tid == 1001:
            grow((*base, _label(HOVER, TRAIN, 88)), weight // 3, 3)
            weight -= weight // 3
        grow(base, weight, 2)
        counts[(pid, tid, tname)] = per
    return counts


def expected_share(counts: dict, term: str) -> tuple[int, int]:
    """(samples whose stack has a frame matching `term`, all samples), brute force."""
    hit = total = 0
    for per in counts.values():
        for stack, n in per.items():
            total += n
            if any(term in label.split(" (", 1)[0].lower() for label in stack):
                hit += n
    return hit, total


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as b:
        yield b


@pytest.fixture(scope="module")
def synthetic():
    counts = synthetic_counts(6)
    tree = build_tree(counts, min_fraction=0)
    return counts, tree


@pytest.fixture
def page(browser, tmp_path, synthetic):
    _, tree = synthetic
    doc = render_html(
        tree,
        title="train.py — synthetic profile",
        metadata={"duration": 12.5, "rate": 100, "command": "python train.py --epochs 3"},
    )
    path = tmp_path / "flame.html"
    path.write_text(doc, encoding="utf-8")
    pg = browser.new_page(viewport={"width": 1400, "height": 820})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    requests: list[str] = []
    pg.on("request", lambda r: requests.append(r.url))
    pg.goto(path.as_uri())
    pg.wait_for_function("window.__spyFlame !== undefined")
    yield pg
    assert not errors, errors
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    pg.close()


def state(pg) -> dict:
    return pg.evaluate("window.__spyFlame.state()")


def frames(pg, name: str) -> list[dict]:
    return pg.evaluate("name => window.__spyFlame.findFrames(name)", name)


def canvas_ink(pg) -> int:
    """How many pixels of the canvas are not blank."""
    return pg.evaluate(
        """() => {
        const c = document.querySelector('.sfg-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n;
    }"""
    )


def test_tree_size(synthetic):
    _, tree = synthetic
    assert 15_000 <= node_count(tree) <= 30_000
    assert len({t["pid"] for t in tree["threads"]}) == 3


def test_interactions(page, synthetic):
    counts, tree = synthetic
    ARTIFACTS.mkdir(exist_ok=True)

    # Header and first render.
    header = page.inner_text(".spy-header")
    assert "synthetic profile" in header
    assert f"{tree['total']:,}" in header
    assert "12.50 s" in header and "100 Hz" in header and "python train.py" in header
    s = state(page)
    assert s["total"] == tree["total"] and s["zoom"]["id"] == 0
    assert s["visibleCount"] > 200
    assert s["aggregatedCount"] > 0  # sub-pixel children drawn as one block per parent
    assert s["visibleCount"] < s["nodes"] / 2  # the rest is not drawn at all
    assert s["size"]["width"] > 1000 and s["size"]["height"] > 400
    assert canvas_ink(page) > 100_000

    # Hover a known frame: the tooltip names it and gives its share.
    target = frames(page, HOVER)[0]
    hover_total = target["total"]
    page.mouse.move(target["clientX"], target["clientY"])
    tip = page.locator(".sfg-tooltip")
    tip.wait_for(state="visible")
    text = tip.inner_text()
    assert HOVER in text
    assert f"{TRAIN}:88" in text
    assert fmt_pct(hover_total / tree["total"]) in text
    assert f"{round(hover_total):,}" in text
    assert state(page)["hover"]["name"] == HOVER
    page.screenshot(path=str(ARTIFACTS / "flamegraph-hover.png"))

    # Click: it becomes the zoom root and spans the width.
    page.mouse.click(target["clientX"], target["clientY"])
    s = state(page)
    assert s["zoom"]["name"] == HOVER and s["history"] == 1
    zoomed = frames(page, HOVER)[0]
    assert zoomed["x"] <= 0.5 and zoomed["w"] >= s["size"]["width"] - 1
    assert "sfg-crumb-current" in page.inner_html(".sfg-crumbs")
    assert HOVER in page.inner_text(".sfg-crumbs")
    # The tooltip over a child now also gives the share of the zoom.
    child = next(f for f in s["visibleNames"] if f not in (HOVER, "main", "<module>", "all"))
    c = frames(page, child)[0]
    page.mouse.move(c["clientX"], c["clientY"])
    assert "Of zoom" in tip.inner_text()
    page.screenshot(path=str(ARTIFACTS / "flamegraph-zoomed.png"))

    # Escape resets; Back returns to the zoom.
    page.keyboard.press("Escape")
    s = state(page)
    assert s["zoom"]["id"] == 0
    page.click(".sfg-back")
    assert state(page)["zoom"]["name"] == HOVER
    page.click(".sfg-reset")
    assert state(page)["zoom"]["id"] == 0

    # Search: highlights matches and shows the share, each sample counted once.
    hit, total = expected_share(counts, NEEDLE)
    assert 0 < hit < total
    ink_before = canvas_ink(page)
    page.fill(".sfg-search", NEEDLE.upper())
    s = state(page)
    assert s["search"]["matched"] == hit
    assert s["search"]["fraction"] == pytest.approx(hit / total)
    info = page.inner_text(".sfg-match")
    assert fmt_pct(hit / total) in info and f"{hit:,}" in info
    assert canvas_ink(page) > ink_before * 0.5
    page.screenshot(path=str(ARTIFACTS / "flamegraph-search.png"))
    # A regex, and a bad one.
    page.fill(".sfg-search", "/^needle_f.$/")
    assert state(page)["search"]["matched"] == hit
    page.fill(".sfg-search", "/([/")
    assert state(page)["search"]["error"]
    assert "bad regex" in page.inner_text(".sfg-match")
    page.fill(".sfg-search", "")
    assert state(page)["search"]["matched"] == 0

    # Orientation: the root row goes from the bottom to the top.
    root_flame = frames(page, "all")[0]
    assert root_flame["y"] > s["size"]["height"] - 40
    page.click("text=Icicle")
    s = state(page)
    assert s["orientation"] == "icicle"
    root_icicle = frames(page, "all")[0]
    assert root_icicle["y"] < 10
    page.click("text=Flame")
    assert state(page)["orientation"] == "flame"

    # Thread filter: the totals become the thread's.
    index, worker = next((i, t) for i, t in enumerate(tree["threads"]) if t["name"] == "worker-1")
    label = page.eval_on_selector(f".sfg-thread option[value='{index}']", "o => o.text")
    assert re.match(r"pid 101 › worker-1 \(1002\) · \d+\.\d%$", label), label
    page.select_option(".sfg-thread", str(index))
    s = state(page)
    assert s["total"] == worker["total"] < tree["total"]
    assert s["filter"]["thread"] is not None
    assert f"{worker['total']:,} samples" in page.inner_text(".sfg-zoominfo")
    # Process filter: the threads of pid 202 only, and the thread list follows.
    page.select_option(".sfg-pid", "202")
    s = state(page)
    pid_total = sum(t["total"] for t in tree["threads"] if t["pid"] == 202)
    assert s["total"] == pid_total and s["filter"] == {"pid": 202, "thread": None}
    options = page.eval_on_selector_all(".sfg-thread option", "os => os.map(o => o.text)")
    assert len(options) == 3 and any("io" in o for o in options)
    page.select_option(".sfg-pid", "")
    assert state(page)["total"] == tree["total"]

    # Grouping by thread adds a level per process and thread.
    page.select_option(".sfg-group", "thread")
    s = state(page)
    assert s["groupBy"] == "thread" and "thread worker-1 (1002)" in s["visibleNames"]
    page.select_option(".sfg-group", "none")

    # Keyboard: focus, arrows select frames, Enter zooms, Escape resets.
    page.focus(".sfg-scroller")
    page.keyboard.press("ArrowUp")  # selects the root
    page.keyboard.press("ArrowUp")  # its heaviest child
    sel = state(page)["selected"]
    assert sel and sel["name"] == "<module>"
    page.keyboard.press("Enter")
    assert state(page)["zoom"]["name"] == "<module>"
    page.keyboard.press("Escape")
    assert state(page)["zoom"]["id"] == 0

    # The final picture: the whole graph, a frame hovered.
    page.evaluate("document.activeElement.blur()")
    assert state(page)["selected"] is None  # leaving the graph drops the keyboard selection
    page.mouse.move(target["clientX"], target["clientY"])
    tip.wait_for(state="visible")
    page.screenshot(path=str(ARTIFACTS / "flamegraph.png"))
    assert (ARTIFACTS / "flamegraph.png").stat().st_size > 10_000


def test_resize_redraws(page):
    before = state(page)["size"]["width"]
    page.set_viewport_size({"width": 900, "height": 700})
    page.wait_for_function(f"window.__spyFlame.state().size.width < {before}")
    s = state(page)
    assert s["size"]["width"] < 900
    root = frames(page, "all")[0]
    assert root["w"] == pytest.approx(s["size"]["width"], abs=1)


def test_es_module_form(browser):
    """The file also works as an ES module (how a notebook widget would load it)."""
    pg = browser.new_page()
    pg.set_content("<div id=c style='width:800px'></div>")
    encoded = base64.b64encode(asset("flamegraph.js").encode()).decode()
    result = pg.evaluate(
        """async (src) => {
        const mod = await import('data:text/javascript;base64,' + src);
        const tree = {format: 'spy_magic.flametree', version: 1, total: 3, min_fraction: 0,
          pruned: 0, strings: ['', 'f', '/a.py'],
          threads: [{pid: 1, tid: 2, name: 'T', total: 3, nodes: {parent: [-1, 0],
            name: [0, 1], file: [0, 2], line: [0, 3], self: [0, 3], total: [3, 3]}}]};
        const fg = mod.render(document.getElementById('c'), tree);
        return [typeof mod.default.render, fg.state().nodes, fg.state().zoom.name];
    }""",
        encoded,
    )
    assert result == ["function", 2, "all"]
    pg.close()


def test_big_tree_is_fast(browser):
    """Build + first render of a ~50k-node tree (1e6 samples) in well under a second."""
    counts = synthetic_counts(8, seed=11, min_weight=4)
    scale = 1_000_000 / sum(sum(per.values()) for per in counts.values())
    counts = {k: {s: max(1, round(n * scale)) for s, n in per.items()} for k, per in counts.items()}
    tree = build_tree(counts, min_fraction=0)
    nodes = node_count(tree)
    assert 45_000 <= nodes <= 80_000, nodes
    assert tree["total"] == pytest.approx(1_000_000, rel=0.01)

    pg = browser.new_page(viewport={"width": 1400, "height": 900})
    pg.set_content("<div id=c style='width:1300px'></div>")
    pg.add_style_tag(content=asset("flamegraph.css"))
    pg.add_script_tag(content=render_js_classic())
    timings = pg.evaluate(
        """(tree) => {
        const t0 = performance.now();
        const fg = SpyFlameGraph.render(document.getElementById('c'), tree, {height: 700});
        const first = performance.now() - t0;
        const t1 = performance.now();
        fg.setSearch('needle');
        const search = performance.now() - t1;
        const t2 = performance.now();
        fg.setFilter({pid: 101, thread: null});
        fg.state();
        const filter = performance.now() - t2;
        return {first, search, filter, s: fg.state()};
    }""",
        tree,
    )
    pg.close()
    print(
        f"\n50k-node tree: {nodes} nodes, first render {timings['first']:.0f} ms, "
        f"search {timings['search']:.0f} ms, filter {timings['filter']:.0f} ms"
    )
    assert timings["s"]["nodes"] >= 0.4 * nodes
    assert timings["first"] < 3000
    assert timings["search"] < 1000
    assert timings["filter"] < 3000


def render_js_classic() -> str:
    from spy_magic.profile.html import classic_script

    return classic_script()


# --- both views, the function table, seconds: what the notebook and the page show ---------------

APP_PY, LIB_PY = "/home/dev/app.py", "/home/dev/lib.py"
MAIN_T, WORKER_T = (7, 70, "MainThread"), (7, 71, "worker")
# `main` calls `work` from two lines (40 and 41) and `work` runs on lines 5 and 6: by line
# `work` is two boxes, by function one; `leaf` is under both and under the worker's `loop`.
VIEW_COUNTS = {
    MAIN_T: {
        (f"<module> ({APP_PY}:1)", f"main ({APP_PY}:40)", f"work ({APP_PY}:5)",
         f"leaf ({LIB_PY}:9)"): 50,
        (f"<module> ({APP_PY}:1)", f"main ({APP_PY}:41)", f"work ({APP_PY}:6)",
         f"leaf ({LIB_PY}:9)"): 20,
        (f"<module> ({APP_PY}:1)", f"main ({APP_PY}:40)", f"work ({APP_PY}:5)"): 10,
        (f"<module> ({APP_PY}:1)", f"main ({APP_PY}:40)", f"helper ({APP_PY}:70)"): 15,
        (f"<module> ({APP_PY}:1)", f"main ({APP_PY}:42)"): 5,
    },
    WORKER_T: {
        ("run (/usr/lib/python3.12/threading.py:1)", "loop (/w.py:2)", f"leaf ({LIB_PY}:9)"): 30,
    },
}  # fmt: skip
PER_SAMPLE = 0.01  # seconds one sample stands for


def brute_functions(counts: dict) -> list[tuple[str, str, int, int]]:
    """(name, file, own, total) per function, each stack counted once, as Profile does."""
    from spy_magic.profile.flametree import parse_label

    own: Counter = Counter()
    total: Counter = Counter()
    for per in counts.values():
        for stack, n in per.items():
            frames = [parse_label(label)[:2] for label in stack]
            own[frames[-1]] += n
            for key in set(frames):
                total[key] += n
    rows = [(name, file, own[(name, file)], t) for (name, file), t in total.items()]
    return sorted(rows, key=lambda r: (-r[2], -r[3], r[0], r[1]))


@pytest.fixture
def views_page(browser, tmp_path):
    views = build_views(VIEW_COUNTS, brute_functions(VIEW_COUNTS), min_fraction=0,
                        seconds_per_sample=PER_SAMPLE)  # fmt: skip
    metadata = {"duration": 1.3, "rate": 100, "asked_rate": 100}
    verdict = "kept up: p99 lateness 0.10 ms at 100 Hz"
    doc = render_html(views, title="app.py", metadata=metadata, verdict=verdict)
    path = tmp_path / "views.html"
    path.write_text(doc, encoding="utf-8")
    pg = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(path.as_uri())
    pg.wait_for_function("window.__spyFlame !== undefined")
    yield pg
    assert not errors, errors
    pg.close()


def hover_tip(pg, frame: dict) -> str:
    pg.mouse.move(frame["clientX"], frame["clientY"])
    tip = pg.locator(".sfg-tooltip")
    tip.wait_for(state="visible")
    return tip.inner_text()


def test_by_line_by_function_toggle_and_true_function_totals(views_page):
    pg, total = views_page, 130
    header = pg.inner_text(".spy-header")
    assert "100 Hz of 100 Hz asked" in header and "kept up: p99 lateness" in header
    assert pg.locator(".sfg-seg").all_inner_texts() == ["By line", "By function", "Flame", "Icicle"]
    s = state(pg)
    assert s["by"] == "line" and s["views"] == ["line", "function"]
    assert s["secondsPerSample"] == PER_SAMPLE
    assert "130 samples · 1.30 s" in pg.inner_text(".sfg-zoominfo")
    # By line, `work` is two boxes (60 and 20): the tooltip of either names its own share
    # and the function's true total (80 samples, 0.80 s), which the table shows too.
    work = frames(pg, "work")
    assert sorted(f["total"] for f in work) == [20, 60]
    text = hover_tip(pg, work[0])
    assert f"Of total\n{fmt_pct(60 / total)} · 600 ms" in text, text
    assert f"Function total\n{fmt_pct(80 / total)} · 800 ms, 2 boxes" in text, text
    pg.screenshot(path=str(ARTIFACTS / "flamegraph-by-line.png"))
    row = pg.locator(".sfg-table tbody tr", has_text="work").inner_text()
    assert f"{fmt_pct(80 / total)}" in row and "800 ms" in row and "100 ms" in row, row

    # By function: one `work` box of 80 under one `main`; fewer boxes; the zoom follows.
    pg.mouse.click(work[0]["clientX"], work[0]["clientY"])
    assert state(pg)["zoom"]["name"] == "work"
    boxes_by_line = state(pg)["nodes"]
    pg.click(".sfg-by-function")
    s = state(pg)
    assert s["by"] == "function" and s["nodes"] < boxes_by_line
    assert s["zoom"]["name"] == "work" and s["zoom"]["total"] == 80 and s["zoom"]["line"] == 0
    pg.click(".sfg-reset")
    assert state(pg)["zoom"]["id"] == 0
    assert [f["total"] for f in frames(pg, "work")] == [80]
    assert len(frames(pg, "main")) == 1
    text = hover_tip(pg, frames(pg, "work")[0])
    assert f"Of total\n{fmt_pct(80 / total)} · 800 ms" in text and "Function total" not in text
    # `leaf` is still two boxes (under `work` and under the worker's `loop`).
    leaf = frames(pg, "leaf")
    assert sorted(f["total"] for f in leaf) == [30, 70]
    assert f"Function total\n{fmt_pct(100 / total)} · 1.00 s, 2 boxes" in hover_tip(pg, leaf[0])
    pg.screenshot(path=str(ARTIFACTS / "flamegraph-by-function.png"))
    pg.click(".sfg-by-line")
    assert state(pg)["by"] == "line" and len(frames(pg, "work")) == 2


def test_function_table_sorts_and_finds_a_function(views_page):
    pg = views_page
    rows = brute_functions(VIEW_COUNTS)
    table = state(pg)["table"]
    assert table["names"] == [r[0] for r in rows]  # the data's order: own time first
    assert table["sort"] == {"key": "self", "descending": True}
    assert "7 functions, by own time, all 2 threads" in pg.inner_text(".sfg-table caption")
    pg.click(".sfg-table th:has-text('Total')")
    by_total = [r[0] for r in sorted(rows, key=lambda r: -r[3])]  # stable, like the JS
    assert state(pg)["table"]["names"] == by_total
    assert "Total ▾" in pg.inner_text(".sfg-table thead")
    pg.click(".sfg-table th:has-text('Total')")
    assert state(pg)["table"]["names"][0] == min(rows, key=lambda r: r[3])[0]
    pg.click(".sfg-table th:has-text('Function')")
    assert state(pg)["table"]["names"] == sorted((r[0] for r in rows), key=str.lower)
    # A row finds its function: the search's share is the function's total.
    pg.locator(".sfg-table tbody tr", has_text="leaf").click()
    s = state(pg)
    assert s["search"]["term"] == "/^leaf$/" and s["search"]["matched"] == 100
    assert pg.locator(".sfg-table tr.sfg-row-on").inner_text().startswith("leaf")
    assert "100 samples · 1.00 s" in pg.inner_text(".sfg-match")
    pg.screenshot(path=str(ARTIFACTS / "flamegraph-table.png"))
    pg.locator(".sfg-table tbody tr", has_text="leaf").click()  # again: search cleared
    assert state(pg)["search"]["term"] == ""


def test_js_and_python_print_shares_and_seconds_alike(browser):
    from spy_magic.profile.summary import fmt_seconds

    pg = browser.new_page()
    pg.set_content("<div></div>")
    pg.add_script_tag(content=render_js_classic())
    fractions = [0, 1e-5, 0.0042, 0.0099, 0.01, 0.123, 0.5, 1]
    seconds = [0, 0.00042, 0.0042, 0.042, 0.42, 0.999, 4.2, 42, 420]
    got = pg.evaluate("([f, s]) => [f.map(SpyFlameGraph.fmtPct), s.map(SpyFlameGraph.fmtSec)]",
                      [fractions, seconds])  # fmt: skip
    assert got == [[fmt_pct(f) for f in fractions], [fmt_seconds(x) for x in seconds]]
    pg.close()


def test_notebook_fragment_fits_its_stack_and_keeps_the_picture_until_drawn(browser):
    """The fragment a notebook output holds: the graph is as tall as the stack is deep (no
    blank band above a short one), its picture gives way to the live graph, and a tooltip
    over the short graph is not cut off."""
    from spy_magic.profile.html import render_report

    views = build_views(VIEW_COUNTS, brute_functions(VIEW_COUNTS), by="function",
                        min_fraction=0, seconds_per_sample=PER_SAMPLE)  # fmt: skip
    png = (ARTIFACTS / "flamegraph.png").read_bytes() if (ARTIFACTS / "flamegraph.png").exists() \
        else b"\x89PNG"  # fmt: skip
    fragment = render_report(views, title="In [2]", verdict="kept up", fallback_png=png)
    pg = browser.new_page(viewport={"width": 1100, "height": 800})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_content(f"<html><body><p>before</p>{fragment}{fragment}</body></html>")
    pg.wait_for_function("document.querySelectorAll('.sfg canvas').length === 2")
    assert not errors, errors
    assert pg.locator(".sfg-fallback").count() == 0
    first = pg.locator(".sfg-report").first
    s = first.locator(".sfg").evaluate("e => e.__spyFlame.state()")
    assert s["by"] == "function"
    rows = 5  # all, <module>, main, work, leaf
    stage = first.locator(".sfg-stage").bounding_box()
    assert stage["height"] == pytest.approx(rows * 18 + 4, abs=1), stage
    assert first.locator(".sfg-table tbody tr").count() == 7
    top = first.locator(".sfg").evaluate("e => e.__spyFlame.findFrames('leaf')")[0]
    pg.mouse.move(top["clientX"], top["clientY"])
    tip = first.locator(".sfg-tooltip")
    tip.wait_for(state="visible")
    box, root = tip.bounding_box(), first.locator(".sfg").bounding_box()
    assert root["y"] <= box["y"] and box["y"] + box["height"] <= root["y"] + root["height"]
    first.screenshot(path=str(ARTIFACTS / "flamegraph-fragment.png"))
    pg.close()


def test_a_thin_deep_column_does_not_stretch_the_graph(browser):
    """One import-time sample 40 frames deep among 200 shallow ones: the graph is as tall as
    the levels that show something (under 1 % of the width is a sliver), and the deep
    column is still there, scrolled to."""
    from spy_magic.profile.html import render_report

    deep = tuple(f"<module> (imp{i}.py:1)" for i in range(40))
    counts = {MAIN_T: {
        (f"<module> ({APP_PY}:1)", f"main ({APP_PY}:40)", f"work ({APP_PY}:5)"): 199,
        deep: 1,
    }}  # fmt: skip
    views = build_views(counts, brute_functions(counts), by="function", min_fraction=0,
                        seconds_per_sample=PER_SAMPLE)  # fmt: skip
    pg = browser.new_page(viewport={"width": 1100, "height": 800})
    pg.set_content(f"<html><body>{render_report(views, title='In [3]')}</body></html>")
    pg.wait_for_function("document.querySelectorAll('.sfg canvas').length === 1")
    stage = pg.locator(".sfg-stage").bounding_box()
    assert stage["height"] == pytest.approx(4 * 18 + 4, abs=1), stage  # all + 3 levels
    scroller = pg.locator(".sfg-stage > *").first.evaluate(
        "e => { const s = e.closest('.sfg').__spyFlame.scroller;"
        " return [s.scrollHeight, s.clientHeight]; }")
    assert scroller[0] >= 41 * 18, scroller  # the 40-deep column is in the scrolled content
    assert pg.locator(".sfg").evaluate("e => e.__spyFlame.findFrames('<module>').length") >= 1
    pg.close()


def test_tooltip_names_the_innermost_instructions_over_merged_threads(browser, tmp_path):
    """A profile sampled with opcodes: the box where samples end says which instructions
    they were executing, their shares summed over the threads the graph merges."""
    from spy_magic.engine import Sample, Trace
    from spy_magic.profile import Profile
    from spy_magic.profile.exports import to_html
    from spy_magic.reader import Frame

    outer, leaf = Frame("main", "/app/run.py", 3, 1), Frame("hot", "/app/run.py", 9, 8)
    profile = Profile({"opcodes": True, "rate": 100})
    plan = [(1, "LOAD_ATTR_INSTANCE_VALUE")] * 3 + [(1, "CALL")] + [(2, "CALL")] * 4
    for i, (thread, opcode) in enumerate(plan):
        trace = Trace(pid=7, thread_id=thread, native_id=thread, thread_name=f"t{thread}",
                      gil=True, idle=False, frames=(leaf, outer), opcode=opcode)  # fmt: skip
        profile.add(Sample(i * 0.01, [trace]))
    path = tmp_path / "opcodes.html"
    path.write_text(to_html(profile), encoding="utf-8")
    pg = browser.new_page(viewport={"width": 1200, "height": 700})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(path.as_uri())
    pg.wait_for_function("window.__spyFlame !== undefined")
    text = hover_tip(pg, frames(pg, "hot")[0])
    assert "opcode\nCALL 62.5%, LOAD_ATTR_INSTANCE_VALUE 37.5%" in text, text
    pg.screenshot(path=str(ARTIFACTS / "flamegraph-opcodes.png"))
    assert "opcode" not in hover_tip(pg, frames(pg, "main")[0])  # no sample ends there
    assert not errors, errors
    pg.close()


def _drawn_boxes(pg) -> list[tuple]:
    """(level, start, width, name, file) of every frame box of the graph's current tree."""
    return [tuple(box) for box in pg.evaluate(
        """() => {
        const t = window.__spyFlame.tree, out = [];
        for (let i = 1; i < t.n; i++) out.push([t.depth[i] - 1, t.x[i], t.total[i],
            t.strings[t.name[i]], t.strings[t.file[i]]]);
        return out;
    }"""
    )]  # fmt: skip


def test_the_png_draws_the_tree_the_graph_draws(browser, tmp_path):
    """The notebook's PNG (`views.flame_boxes`) and the live graph by function with every
    thread merged lay out the same boxes from the same payload. The input has six threads
    pruned separately, so folding the merged stacks anew (a second tree) gives other
    "(other)" boxes: the check below that it does keeps this test able to fail."""
    from spy_magic.notebook.views import EMBED_MIN_FRACTION, PNG_MAX_DEPTH, flame_boxes

    counts = synthetic_counts(1, min_weight=2)
    views = build_views(counts, [], min_fraction=EMBED_MIN_FRACTION)
    path = tmp_path / "png-tree.html"
    path.write_text(render_html(views, title="png tree"), encoding="utf-8")
    pg = browser.new_page(viewport={"width": 1200, "height": 700})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(path.as_uri())
    pg.wait_for_function("window.__spyFlame !== undefined")
    pg.evaluate("window.__spyFlame.setBy('function')")
    drawn = sorted(b for b in _drawn_boxes(pg) if b[0] < PNG_MAX_DEPTH)
    png = sorted(flame_boxes(views))
    assert png == drawn
    assert any(box[3] == flametree.OTHER for box in png)

    merged: Counter = Counter()
    for per in counts.values():
        merged.update(per)
    refolded = build_tree({(0, 0, "all"): merged}, min_fraction=EMBED_MIN_FRACTION,
                          by="function")  # fmt: skip
    strings = refolded.pop("strings")
    assert sorted(flame_boxes({"strings": strings, "views": {"function": refolded}})) != png
    assert not errors, errors
    pg.close()
