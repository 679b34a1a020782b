"""The live view while sampling runs: a sortable top table (anywidget).

It runs `js/topview.js` (shipped in `spy_magic/profile/static/`), inlined into the widget's
ES module: nothing is fetched from a CDN. The finished profile is no widget (see views.py).
"""

from __future__ import annotations

import anywidget
import traitlets

from ..profile import Profile
from ..profile.html import asset
from ..profile.top import top_rows as shared_top_rows


class TopWidget(anywidget.AnyWidget):
    """Own % / total % per function, sortable, updated while sampling runs."""

    _esm = asset("topview.js")
    rows = traitlets.List().tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)

    def show(self, profile: Profile, status: str = "", limit: int = 30) -> None:
        self.rows = top_rows(profile, limit)
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


def top_rows(profile: Profile, limit: int = 30) -> list[list]:
    """[own %, total %, function, location] for the functions with the most own time
    (`profile.top`: the rows `top` and the report's table show too)."""
    return [
        [round(row.own_pct, 2), round(row.total_pct, 2), row.name, row.filename]
        for row in shared_top_rows(profile, limit)
    ]
