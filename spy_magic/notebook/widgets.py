"""The live view while sampling runs: a sortable top table (anywidget).

It runs `js/topview.js` (shipped in `spy_magic/profile/static/`), inlined into the widget's
ES module: nothing is fetched from a CDN. Its rows come ready-made from the sampling helper
(`protocol.summary`), already trimmed to the cell: the kernel only passes them on. The
finished profile is no widget (see views.py).
"""

from __future__ import annotations

import anywidget
import traitlets

from ..profile.html import asset


class TopWidget(anywidget.AnyWidget):
    """Own % / total % / own seconds per function, sortable, updated while sampling runs."""

    _esm = asset("topview.js")
    rows = traitlets.List().tag(sync=True)  # [own %, total %, own s, function, location]
    status = traitlets.Unicode("").tag(sync=True)

    def show(self, rows: list[list], status: str = "") -> None:
        with self.hold_sync():  # one message for both
            self.rows = rows
            self.status = status


def close_widgets(*widgets) -> None:
    """Close live views (and their layout and style models) once the output that showed
    them was replaced: no widget state is left for a saved notebook to keep or to miss."""
    for widget in widgets:
        for part in ("layout", "style"):
            sub = getattr(widget, part, None)
            if hasattr(sub, "close"):
                sub.close()
        widget.close()
