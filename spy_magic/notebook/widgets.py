"""The live views: an interactive flame graph and a sortable top table (anywidget).

Both run the front-end code in `js/` (shipped in `spy_magic/profile/static/`), inlined into
the widget's ES module: nothing is fetched from a CDN.
"""

from __future__ import annotations

import anywidget
import traitlets

from ..profile import Profile
from ..profile.html import asset, classic_script

_FLAME_ESM = (
    classic_script()
    + """
function render({ model, el }) {
  var graph = null;
  function draw() {
    if (graph) graph.destroy();
    el.textContent = '';
    graph = SpyFlameGraph.render(el, model.get('data'), {
      css: model.get('css'), height: 'auto', maxHeight: model.get('max_height'),
    });
  }
  model.on('change:data', draw);
  draw();
  return function () { model.off('change:data', draw); if (graph) graph.destroy(); };
}
export default { render };
"""
)


class FlameGraphWidget(anywidget.AnyWidget):
    """The flame graph of a profile: zoom, search, tooltips, flame/icicle, filters."""

    _esm = _FLAME_ESM
    data = traitlets.Dict().tag(sync=True)
    css = traitlets.Unicode(asset("flamegraph.css")).tag(sync=True)
    max_height = traitlets.Int(520).tag(sync=True)


class TopWidget(anywidget.AnyWidget):
    """Own % / total % per function, sortable, updated while sampling runs."""

    _esm = asset("topview.js")
    rows = traitlets.List().tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)

    def show(self, profile: Profile, status: str = "", limit: int = 30) -> None:
        self.rows = top_rows(profile, limit)
        self.status = status


def top_rows(profile: Profile, limit: int = 30) -> list[list]:
    """[own %, total %, function, location] for the functions with the most own time."""
    stats = profile.functions(by="function")
    traces = sum(1 for _ in profile.iter_traces()) or 1
    rows = []
    for stat in stats[:limit]:
        rows.append(
            [
                round(100 * stat.self_count / traces, 2),
                round(100 * stat.total_count / traces, 2),
                stat.name,
                stat.filename,
            ]
        )
    return rows
