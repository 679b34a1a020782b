"""One self-contained, offline HTML page showing a flame tree (see `flametree.py`).

`render_html(tree, title=..., metadata=...)` returns the page: a header (title, samples,
duration, rate, the other metadata) above the interactive flame graph. The page inlines
everything it needs (the JS, the CSS, the tree as JSON) and loads nothing from anywhere.

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

import html
import json
import math
import re
from pathlib import Path
from typing import Any

from ..reader import printable

ASSETS = ("flamegraph.js", "flamegraph.css", "topview.js")
EXPORTS_MARKER = "// @@spy-flamegraph-exports@@"
STATIC_DIR = Path(__file__).parent / "static"

# Metadata keys the header shows as figures rather than as plain key: value items.
_KNOWN = ("samples", "duration", "rate")


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


def _fmt_count(n: float) -> str:
    return f"{round(n):,}"


def _fmt_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)} min {secs:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)} h {int(minutes)} min"


def _fmt_rate(hz: float) -> str:
    return f"{hz:,.0f} Hz" if hz >= 10 else f"{hz:.2f} Hz"


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


def header_items(tree: dict, metadata: dict) -> list[tuple[str, str]]:
    """(label, text) figures for the header: samples, duration, rate, then the metadata.

    `metadata["samples"]` overrides the tree's total (e.g. sampling moments rather than
    thread stacks); `duration` is seconds and `rate` Hz; either is derived from the other
    when one is missing. Other keys are shown as given, in order; None values are skipped.
    """
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
    items.append(("Duration", _fmt_duration(duration) if duration is not None else "—"))
    items.append(("Rate", _fmt_rate(rate) if rate is not None else "—"))
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
html, body { height: 100%; margin: 0; }
body {
  display: flex; flex-direction: column; background: #f6f8fa; color: #1f2328;
  font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    sans-serif;
}
.spy-header {
  display: flex; align-items: baseline; flex-wrap: wrap; gap: 6px 22px;
  padding: 12px 18px 10px;
}
.spy-brand {
  font-size: 11px; font-weight: 700; letter-spacing: .08em; text-transform: uppercase;
  color: #fff; background: linear-gradient(90deg, #e5533d, #f0a02b); border-radius: 4px;
  padding: 2px 7px; align-self: center;
}
.spy-header h1 {
  font-size: 17px; font-weight: 600; margin: 0; max-width: 60ch;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
}
.spy-stats { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 0; }
.spy-stat { display: flex; gap: 6px; align-items: baseline; }
.spy-stat dt { color: #656d76; font-size: 12px; }
.spy-stat dd {
  margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; max-width: 48ch;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
}
.spy-main { flex: 1 1 auto; min-height: 0; padding: 0 12px 12px; display: flex; }
.spy-main > .sfg { flex: 1 1 auto; }
.spy-error { color: #cf222e; padding: 20px; font-family: monospace; white-space: pre-wrap; }
@media (prefers-color-scheme: dark) {
  body { background: #010409; color: #e6edf3; }
  .spy-stat dt { color: #8d96a0; }
}
"""

_BOOT_JS = """
(function () {
  var main = document.getElementById('spy-flamegraph');
  try {
    var data = JSON.parse(document.getElementById('spy-flame-data').textContent);
    SpyFlameGraph.render(main, data, {height: 'fill', globalKeys: true});
  } catch (err) {
    main.textContent = '';
    var pre = document.createElement('div');
    pre.className = 'spy-error';
    pre.textContent = 'Could not show the flame graph: ' + (err && err.stack || err);
    main.appendChild(pre);
  }
})();
"""


def render_html(tree: dict, *, title: str, metadata: dict | None = None) -> str:
    """The whole page, as a string; it references no file and no URL."""
    metadata = dict(metadata or {})

    def esc(text: str) -> str:
        return html.escape(printable(text))  # a lone surrogate has no HTML spelling

    stats = "".join(
        f'<div class="spy-stat"><dt>{esc(label)}</dt><dd title="{esc(text)}">{esc(text)}</dd></div>'
        for label, text in header_items(tree, metadata)
    )
    css = asset("flamegraph.css")
    js = classic_script()
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="spy_magic">\n'
        f"<title>{esc(title)}</title>\n"
        f"<style>{_PAGE_CSS}\n{css}</style>\n"
        "</head>\n<body>\n"
        '<header class="spy-header">'
        '<span class="spy-brand">spy_magic</span>'
        f'<h1 title="{esc(title)}">{esc(title)}</h1>'
        f'<dl class="spy-stats">{stats}</dl>'
        "</header>\n"
        '<main class="spy-main" id="spy-flamegraph"></main>\n'
        '<script type="application/json" id="spy-flame-data">'
        f"{_json_for_script(tree)}</script>\n"
        f"<script>\n{_script_text(js)}</script>\n"
        f"<script>{_BOOT_JS}</script>\n"
        "</body>\n</html>\n"
    )
