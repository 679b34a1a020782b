"""The diff flame graph, the line heat map and the timeline in a real browser (Debian's
chromium under playwright), checked by what is on screen: the pixels of the boxes, the rows'
colours, what the timeline draws before and after zooming. Screenshots go to
test-artifacts/. Skipped when /usr/bin/chromium or playwright is missing."""

from __future__ import annotations

import io

import pytest
from browser import ARTIFACTS, launched_chromium, require_chromium_and_playwright

from spy_magic.engine.sample import Sample, Trace
from spy_magic.notebook.views import profile_bundle
from spy_magic.profile import Profile
from spy_magic.profile.exports import to_heatmap, to_html
from spy_magic.reader import Frame

require_chromium_and_playwright()

APP = "/home/dev/proj/app.py"
SOURCE = (
    "import time\n\n\ndef shrinks():\n    spin(0.5)\n\n\ndef steady():\n    spin(0.3)\n\n\n"
    "def grows():\n    spin(0.2)\n\n\ndef main():\n    shrinks()\n    steady()\n    grows()\n"
)
LINE = {"shrinks": 5, "steady": 9, "grows": 13}


def profile_of(counts: dict[str, int], threads: int = 1, source: str | None = SOURCE) -> Profile:
    """main -> NAME stacks in the order given (a phase per name, so the timeline shows them
    one after the other), on `threads` threads."""
    p = Profile({"rate": 100.0, "target": "python app.py", "command": ["python", "app.py"]})
    if source:
        p.metadata["sources"] = {APP: source}
    main = Frame("main", APP, 18, 17)
    i = 0
    for name, n in counts.items():
        leaf = Frame(name, APP, LINE.get(name, 1), LINE.get(name, 1) - 1)
        for _ in range(n):
            traces = [Trace(1, t + 1, t + 1, f"worker-{t}", True, False, (leaf, main))
                      for t in range(threads)]  # fmt: skip
            p.add(Sample(i * 0.01, traces))
            i += 1
    return p


@pytest.fixture(scope="module")
def page():
    with launched_chromium() as browser:
        pg = browser.new_page(viewport={"width": 1200, "height": 900})
        problems: list[str] = []
        pg.on("pageerror", lambda e: problems.append(str(e)))
        pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        pg.problems = problems
        yield pg


def open_page(pg, html: str, name: str) -> None:
    path = ARTIFACTS / name
    ARTIFACTS.mkdir(exist_ok=True)
    path.write_text(html, encoding="utf-8")
    pg.problems.clear()
    pg.goto(path.as_uri())
    pg.wait_for_timeout(200)
    assert pg.problems == []


def pixel(pg, x: float, y: float) -> tuple[int, int, int]:
    from PIL import Image

    shot = Image.open(io.BytesIO(pg.screenshot())).convert("RGB")
    return shot.getpixel((int(x), int(y)))


def box_colour(pg, name: str) -> tuple[int, int, int]:
    frame = pg.evaluate("n => window.__spyFlame.findFrames(n)", name)[0]
    left = frame["clientX"] - frame["w"] / 2
    return pixel(pg, left + 3, frame["clientY"] + frame["h"] / 2 - 3)  # below the label


def test_the_diff_colours_grown_red_shrunk_blue_and_noise_grey(page):
    base = profile_of({"shrinks": 500, "steady": 300, "grows": 200})
    new = profile_of({"shrinks": 200, "steady": 305, "grows": 500})
    open_page(page, to_html(new, baseline=base), "diff.html")
    r, g, b = box_colour(page, "shrinks")
    assert b > r + 60, (r, g, b)  # blue: its own share fell from 50 % to 20 %
    r, g, b = box_colour(page, "grows")
    assert r > b + 60, (r, g, b)  # red: 20 % -> 50 %
    r, g, b = box_colour(page, "steady")
    assert max(r, g, b) - min(r, g, b) < 20, (r, g, b)  # grey: 30 % -> 30.5 %, noise
    legend = page.locator(".sfg-legend").inner_text()
    assert "own share grew" in legend and "within noise" in legend
    summary = page.locator(".sfg-diff-summary").inner_text()
    assert "of that change is within sampling noise" in summary
    rows = page.locator(".sfg-diff-table tbody tr")
    assert "shrinks" in rows.nth(0).inner_text() or "grows" in rows.nth(0).inner_text()
    grows = page.evaluate("window.__spyFlame.findFrames('grows')[0]")
    page.mouse.move(grows["clientX"], grows["clientY"])
    tip = page.locator(".sfg-tooltip").inner_text()
    assert "Change" in tip and "grew +29.8%" in tip and "20.0% \u2192 49.8%" in tip  # of 1005
    page.screenshot(path=str(ARTIFACTS / "diff-flamegraph.png"), full_page=True)


def test_the_heat_map_shows_each_lines_share_and_source(page):
    open_page(page, to_heatmap(profile_of({"shrinks": 500, "steady": 300, "grows": 200})),
              "heatmap.html")  # fmt: skip
    hot = page.locator('tr[data-line="5"]')
    assert "spin(0.5)" in hot.inner_text() and "50.0%" in hot.inner_text()

    def background(line: int) -> str:
        row = page.locator(f'tr[data-line="{line}"]')
        return row.evaluate("e => getComputedStyle(e).backgroundColor")

    hot_bg, cold_bg, plain_bg = background(5), background(13), background(2)
    alpha = [float(c.rsplit(",", 1)[1].rstrip(")")) if c.startswith("rgba") else 0.0
             for c in (hot_bg, cold_bg, plain_bg)]  # fmt: skip
    assert alpha[0] > alpha[1] > alpha[2] == 0.0, (hot_bg, cold_bg, plain_bg)
    assert page.locator('tr[data-line="5"]').is_visible()
    page.screenshot(path=str(ARTIFACTS / "heatmap.png"), full_page=True)
    # without the source: the lines' shares, and why there is no text
    open_page(page, to_heatmap(profile_of({"shrinks": 50}, source=None)), "heatmap-nosource.html")
    assert "source not available (not recorded)" in page.locator(".sfg-heat-missing").inner_text()
    assert "100.0%" in page.locator('tr[data-line="5"]').inner_text()


def test_the_timeline_draws_each_phase_in_its_time_and_zooms(page):
    p = profile_of({"shrinks": 400, "steady": 300, "grows": 300}, threads=2)
    open_page(page, to_html(p), "timeline.html")
    state = page.evaluate("document.querySelector('.sfg-timeline').__spyTimeline.state()")
    assert [lane["label"] for lane in state["lanes"]] == ["worker-0 (1)", "worker-1 (2)"]
    assert state["range"][0] == 0 and state["range"][1] == pytest.approx(10.0, rel=0.02)
    boxes = {name: page.evaluate(
        "n => document.querySelector('.sfg-timeline').__spyTimeline.boxes(n)", name)
        for name in ("shrinks", "steady", "grows")}  # fmt: skip
    # one box per thread per phase, in order, as wide as the phase is long (4 : 3 : 3)
    assert all(len(b) == 2 for b in boxes.values()), boxes
    s, st, gr = boxes["shrinks"][0], boxes["steady"][0], boxes["grows"][0]
    assert s["x"] < st["x"] < gr["x"]
    assert s["w"] / gr["w"] == pytest.approx(4 / 3, rel=0.05)
    colour = page.evaluate(f"SpyFlameGraph.color('grows', {APP!r})")
    r, g, b = pixel(page, gr["x"] + 3, gr["y"] + gr["h"] - 2)
    expected = page.evaluate(
        """c => { const d = document.createElement('div');
        d.style.color = c; document.body.appendChild(d);
        const v = getComputedStyle(d).color; d.remove(); return v; }""",
        colour,
    )
    er, eg, eb = (int(v) for v in expected[4:-1].split(","))
    assert abs(r - er) + abs(g - eg) + abs(b - eb) < 12, ((r, g, b), expected)
    page.locator(".sfg-timeline").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "timeline.png"), full_page=True)
    # zoom into the first phase with the wheel: a narrower range, the phase wider
    page.mouse.move(s["x"] + 20, s["y"] + 4)
    for _ in range(4):
        page.mouse.wheel(0, -300)
    page.wait_for_timeout(100)
    zoomed = page.evaluate("document.querySelector('.sfg-timeline').__spyTimeline.state()")
    assert zoomed["range"][1] - zoomed["range"][0] < 5.0
    wider = page.evaluate("document.querySelector('.sfg-timeline').__spyTimeline.boxes('shrinks')")
    assert wider[0]["w"] > s["w"] * 1.5
    page.screenshot(path=str(ARTIFACTS / "timeline-zoomed.png"), full_page=True)
    page.locator(".sfg-tl-btn", has_text="Reset").click()
    back = page.evaluate("document.querySelector('.sfg-timeline').__spyTimeline.state()")
    assert back["range"] == state["range"]


def test_the_notebook_report_has_the_cell_heat_map_and_the_timeline(page):
    cell = "import time\nx = 1\nbusy()\n"
    p = Profile({"rate": 100.0, "target": "In [3]", "sources": {"In [3]": cell}})
    busy = Frame("busy", "In [2]", 2, 1)
    module = Frame("<module>", "In [3]", 3, 1)
    for i in range(200):
        p.add(Sample(i * 0.01, [Trace(1, 1, 1, "MainThread", True, False, (busy, module))]))
    fragment = profile_bundle(p, "In [3]")["text/html"]
    open_page(page, f"<!DOCTYPE html><html><body>{fragment}</body></html>", "notebook.html")
    heat = page.locator(".sfg-heatmap")
    assert "Cell heat map" in heat.inner_text()
    assert "busy()" in page.locator('tr[data-line="3"]').inner_text()
    assert "100.0%" in page.locator('tr[data-line="3"]').inner_text()
    heat = page.locator('tr[data-line="3"]').evaluate("e => getComputedStyle(e).backgroundColor")
    assert heat.startswith("rgba(229, 83, 61") and float(heat.rsplit(",", 1)[1][:-1]) > 0.5
    state = page.evaluate("document.querySelector('.sfg-timeline').__spyTimeline.state()")
    assert state["names"].get("busy")
    page.screenshot(path=str(ARTIFACTS / "notebook-views.png"), full_page=True)
