"""The flame graph report as HTML: a self-contained offline page, or a notebook fragment.

`render_html(data, title=..., metadata=..., verdict=...)` returns the page: a header
(title, samples, duration, rate achieved and asked, the other metadata, the verdict on how
sampling went) above the interactive flame graph and the sortable function table.
`render_report(...)` is the same report as an HTML fragment for a notebook output, with a
static picture where no script may run. Both inline everything they need (the JS, the CSS,
the data as JSON) and load nothing from anywhere; the header and the table are plain HTML,
readable without the script.

How the JS and CSS ship: the sources live in `js/` at the repository root;
`spy_magic/profile/static/` holds symbolic links to them, which `pyproject.toml` ships as
package data (`[tool.setuptools.package-data]`; building a wheel copies the files the links
point at). `asset()` always reads through `static/`, so a checkout and an installed package
behave the same, and there is only ever one copy to edit.

The JS file is an ES module whose export block follows a marker line; `classic_script()`
cuts that block off so the same code runs from a plain `<script>` (it sets
`window.SpyFlameGraph`).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..reader import printable
from .flametree import VIEWS_FORMAT
from .summary import fmt_duration, fmt_pct, fmt_rate, fmt_seconds

ASSETS = ("flamegraph.js", "flamegraph.css", "topview.js", "timeline.js")
EXPORTS_MARKER = "// @@spy-flamegraph-exports@@"
STATIC_DIR = Path(__file__).parent / "static"

# Metadata keys the header shows as figures rather than as plain key: value items.
_KNOWN = ("samples", "duration", "rate", "asked_rate")


def asset(name: str) -> str:
    """The text of a shipped asset (a name in ASSETS)."""
    if name not in ASSETS:
        raise ValueError(f"unknown asset {name!r}; one of {ASSETS}")
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def classic_script(js: str | None = None) -> str:
    """The flame graph JS without its ES-module exports: runnable from a plain <script>."""
    if js is None:
        js = asset("flamegraph.js")
    head, marker, _ = js.partition(EXPORTS_MARKER)
    if not marker:
        raise ValueError("flamegraph.js lost its exports marker line")
    return head


def _json_for_script(value: Any) -> str:
    # Inside <script>, "</script>" or "<!--" in a string would end or confuse the element;
    # "<" only occurs inside JSON strings, where \u003c means the same.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("<", "\\u003c")


def _script_text(js: str) -> str:
    # The same two hazards for the inlined code (only its strings and comments could hold
    # them; both escapes mean the same there).
    return re.sub(r"<(/script|!--)", r"<\\\1", js, flags=re.I)


def compact_js(js: str) -> str:
    """The script without its comment lines, blank lines and indentation, for inlining
    (about a sixth smaller). Line by line, so automatic semicolons stay where they were: a
    line is joined to the next only when it ends in `;`, `{` or `,` (no semicolon can be
    inserted there) and holds no `//` (no comment can run on into the joined line). Sound
    for our files, which hold no template literal, string or block comment spanning lines
    past the header comment."""
    js = re.sub(r"\A\s*/\*.*?\*/", "", js, count=1, flags=re.S)  # the header comment
    kept = (line.strip() for line in js.splitlines())
    out: list[str] = []
    joinable = False
    for line in kept:
        if not line or line.startswith("//"):
            continue
        if joinable:
            out[-1] += line
        else:
            out.append(line)
        joinable = line.endswith((";", "{", ",")) and "//" not in line
        if joinable and out[-1].count("//"):
            joinable = False
    return "\n".join(out)


def compact_css(css: str) -> str:
    """The stylesheet without comments and indentation."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    return "\n".join(line.strip() for line in css.splitlines() if line.strip())


def _fmt_count(n: float) -> str:
    return f"{round(n):,}"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def _first_tree(data: dict) -> dict:
    """The tree of a flame tree, or the first view of a views payload (same totals)."""
    if data.get("format") == VIEWS_FORMAT:
        return data["views"]["line"]
    return data


def header_items(tree: dict, metadata: dict) -> list[tuple[str, str]]:
    """(label, text) figures for the header: samples, duration, rate, then the metadata.

    `metadata["samples"]` overrides the tree's total (e.g. sampling moments rather than
    thread stacks); `duration` is seconds and `rate` Hz; either is derived from the other
    when one is missing; `asked_rate` (Hz) is shown with the rate achieved. Other keys are
    shown as given, in order; None values are skipped. `tree` may be a views payload.
    """
    tree = _first_tree(tree)
    samples = _number(metadata.get("samples"))
    if samples is None:
        samples = float(tree.get("total", 0))
    duration = _number(metadata.get("duration"))
    rate = _number(metadata.get("rate"))
    if duration is None and rate:
        duration = samples / rate
    if rate is None and duration:
        rate = samples / duration
    items = [("Samples", _fmt_count(samples))]
    items.append(("Duration", fmt_duration(duration) if duration is not None else "—"))
    asked = _number(metadata.get("asked_rate"))
    rate_text = fmt_rate(rate) if rate is not None else "—"
    if asked:
        rate_text += f" of {fmt_rate(asked)} asked"
    items.append(("Rate", rate_text))
    threads = tree.get("threads", [])
    pids = {t["pid"] for t in threads}
    items.append(("Threads", str(len(threads))))
    if len(pids) > 1:
        items.append(("Processes", str(len(pids))))
    for key, value in metadata.items():
        if key in _KNOWN or value is None:
            continue
        items.append((str(key).replace("_", " ").capitalize(), _fmt_value(value)))
    return items


_PAGE_CSS = """
html, body { margin: 0; }
body {
  background: #f6f8fa; color: #1f2328;
  font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    sans-serif;
}
.sfg-report.spy-page { border: 0; border-radius: 0; background: none; padding: 0 12px 12px; }
.spy-page .spy-header { padding: 12px 6px 10px; }
@media (prefers-color-scheme: dark) {
  body { background: #010409; color: #e6edf3; }
}
"""

# Finds its own report (the script's ancestor, so several reports share a page), renders the
# graph there, and only then drops the static picture: a script that fails leaves it shown.
_BOOT_JS = """
(function (options) {
  var script = document.currentScript;
  var report = script && script.closest ? script.closest('.sfg-report') : null;
  if (!report) return;
  var graph = report.querySelector('.sfg-graph');
  if (options.maxHeight === 'window') {  // a page: at most the window, less its header
    options.maxHeight = Math.max(420, window.innerHeight - graph.getBoundingClientRect().top - 90);
  }
  var data = null;
  try {
    data = JSON.parse(report.querySelector('script.sfg-data').textContent);
    options.table = report.querySelector('table.sfg-table');
    SpyFlameGraph.render(graph, data, options);
    var fallback = report.querySelector('.sfg-fallback');
    if (fallback) fallback.parentNode.removeChild(fallback);
  } catch (err) {
    var box = document.createElement('div');
    box.className = 'sfg-error';
    box.textContent = 'Could not show the flame graph: ' + (err && err.stack || err);
    graph.insertBefore(box, graph.firstChild);
  }
  var lane = report.querySelector('.sfg-timeline');
  if (!lane || !data || !data.timeline) return;
  try {
    SpyTimeline.render(lane, data.timeline, data.strings);
  } catch (err) {
    lane.textContent = 'Could not show the timeline: ' + (err && err.stack || err);
    lane.className += ' sfg-error';
  }
})(%s);
"""


def _esc(text: str) -> str:
    """HTML-escaped, with a lone surrogate (a name that was not UTF-8) shown as U+FFFD."""
    return html.escape(printable(text))


def _header_html(title: str, items: list[tuple[str, str]], verdict: str | None,
                 kept_up: bool) -> str:  # fmt: skip
    esc = _esc
    # Spans, not <dl>: a notebook's styles for rendered HTML float and indent <dt>/<dd>. The
    # separators show only where our stylesheet was stripped (an untrusted notebook).
    stats = '<span class="spy-sep"> · </span>'.join(
        f'<span class="spy-stat"><span class="spy-key">{esc(label)}</span> '
        f'<span class="spy-val" title="{esc(text)}">{esc(text)}</span></span>'
        for label, text in items
    )
    verdict_html = ""
    if verdict:
        kind = "sfg-verdict" if kept_up else "sfg-verdict sfg-verdict-warn"
        verdict_html = f'<div class="{kind}">{esc(verdict)}</div>'
    return (
        '<header class="spy-header">'
        '<span class="spy-brand">spy_magic</span>'
        f'<div class="spy-title" title="{esc(title)}">{esc(title)}</div>'
        f'<span class="spy-stats">{stats}</span>'
        f"{verdict_html}</header>"
    )


def _basename(path: str) -> str:
    return re.split(r"[\\/]", path)[-1] if path else ""


def functions_table(data: dict) -> str:
    """The static own/total table of a views payload, one row per function in its order
    (the page's script sorts these rows; without a script they read as they are)."""
    if data.get("format") != VIEWS_FORMAT:
        return ""
    esc = _esc
    strings = data["strings"]
    fns = data["functions"]
    total = data["views"]["line"]["total"] or 1
    per_sample = data.get("seconds_per_sample")
    threads = len(data["views"]["line"]["threads"])

    def cell(count: int) -> str:
        text = f'<span class="sfg-pct">{fmt_pct(count / total)}</span>'
        if per_sample:
            text += f' <span class="sfg-sec">{fmt_seconds(count * per_sample)}</span>'
        return f'<td class="num">{text}</td>'

    rows = []
    for name_id, file_id, own, tot in zip(fns["name"], fns["file"], fns["self"], fns["total"]):
        name, where = strings[name_id], strings[file_id]
        rows.append(
            f'<tr><td class="sfg-fn" title="{esc(name)}">{esc(name)}</td>'
            f'<td class="sfg-loc" title="{esc(where)}">{esc(_basename(where))}</td>'
            f"{cell(own)}{cell(tot)}</tr>"
        )
    scope = f", all {threads} threads" if threads > 1 else ""
    return (
        '<div class="sfg-table-box"><table class="sfg-table">'
        f"<caption>{len(rows)} functions, by own time{scope}</caption>"
        '<thead><tr><th class="sfg-col-fn">Function</th><th class="sfg-col-loc">File</th>'
        '<th class="num" title="samples with it innermost">Own</th>'
        '<th class="num" title="samples with it anywhere on the stack">Total</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


_TIMELINE_HTML = (
    '<section class="sfg-section sfg-timeline-box"><h3>Timeline</h3>'
    '<div class="sfg-timeline"><p class="sfg-muted">Per-thread samples over time: shown '
    "where the report's script runs.</p></div></section>"
)


def _report_body(data: dict, title: str, metadata: dict | None, verdict: str | None,
                 kept_up: bool, options: dict, graph_inner: str = "",
                 sections: Sequence[str] = ()) -> str:  # fmt: skip
    """The header, the graph's place, the table, the timeline's place (when `data` holds
    one), `sections` (plain HTML: the heat map, a diff's table), the data and the scripts:
    what the page and the notebook output share."""
    timeline = "timeline" in data
    scripts = compact_js(classic_script())
    if timeline:
        scripts += "\n" + compact_js(asset("timeline.js"))
    return (
        _header_html(title, header_items(data, dict(metadata or {})), verdict, kept_up)
        + f'<div class="sfg-graph">{graph_inner}</div>'
        + functions_table(data)
        + (_TIMELINE_HTML if timeline else "")
        + "".join(sections)
        + '<script type="application/json" class="sfg-data">'
        + f"{_json_for_script(data)}</script>"
        + f"<script>\n{_script_text(scripts)}</script>"
        + f"<script>{_BOOT_JS % json.dumps(options)}</script>"
    )


def render_html(
    data: dict,
    *,
    title: str,
    metadata: dict | None = None,
    verdict: str | None = None,
    kept_up: bool = True,
    sections: Sequence[str] = (),
) -> str:
    """The whole page, as a string; it references no file and no URL. `data` is a flame
    tree or a views payload (`flametree.build_views`, maybe with a "timeline" and a
    "diff"); `verdict` a line under the figures; `sections` more plain-HTML sections."""
    body = _report_body(data, title, metadata, verdict, kept_up,
                        {"height": "auto", "maxHeight": "window", "globalKeys": True},
                        sections=sections)  # fmt: skip
    return _page(title, body)


def _page(title: str, body: str) -> str:
    esc = _esc
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="spy_magic">\n'
        f"<title>{esc(title)}</title>\n"
        f"<style>{_PAGE_CSS}\n{compact_css(asset('flamegraph.css'))}</style>\n"
        "</head>\n<body>\n"
        f'<div class="sfg-report spy-page">{body}</div>\n'
        "</body>\n</html>\n"
    )


def render_report(
    data: dict,
    *,
    title: str,
    metadata: dict | None = None,
    verdict: str | None = None,
    kept_up: bool = True,
    fallback_png: bytes | None = None,
    max_height: int = 560,
    sections: Sequence[str] = (),
) -> str:
    """The same report as an HTML fragment, for a notebook output: its styles scoped to
    it, the graph sized to its content (at most `max_height` px), and `fallback_png` shown
    where no script runs (an untrusted notebook, GitHub), replaced by the live graph."""
    inner = ""
    if fallback_png:
        encoded = base64.b64encode(fallback_png).decode("ascii")
        inner = (
            f'<img class="sfg-fallback" alt="flame graph of {_esc(title)}" '
            f'src="data:image/png;base64,{encoded}" style="max-width: 100%;">'
        )
    body = _report_body(data, title, metadata, verdict, kept_up,
                        {"height": "auto", "maxHeight": max_height}, inner, sections)  # fmt: skip

    css = compact_css(asset("flamegraph.css"))
    return f'<div class="sfg-report"><style>{css}</style>{body}</div>'


def render_sections_page(sections: Sequence[str], *, title: str, metadata: dict | None = None,
                         verdict: str | None = None, kept_up: bool = True) -> str:  # fmt: skip
    """A page of plain-HTML sections (the line heat map) under the report's header; no
    script."""
    items = header_items({"total": (metadata or {}).get("samples", 0), "threads": []},
                         dict(metadata or {}))  # fmt: skip
    items = [item for item in items if item[0] != "Threads"]
    return _page(title, _header_html(title, items, verdict, kept_up) + "".join(sections))
