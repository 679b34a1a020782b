"""What a finished profile looks like in a notebook: one output, several representations.

The output holds no widget view: a saved notebook reopened without its kernel (or without
the widget state) would show "Error displaying widget: model not found" instead, since the
widget renderer wins over every other representation and does not fall back. Instead:

- `text/html`: the report (`profile.html.render_report`): the summary header, the flame
  graph (by line and by function) and the sortable function table, its script and data
  inline. Trusted notebooks run it (the session that ran the cell, and a notebook the user
  saved and reopens); nbconvert pages run it too. Where scripts are stripped (an untrusted
  notebook, GitHub) the header, the table and the PNG inside it still show.
- `image/png`: the static flame graph, for viewers that show images only (PDF/LaTeX),
  drawn from the report's own payload (all threads summed as the live graph sums them).
- `text/plain`: a top list.

The live view while a cell runs is a widget (widgets.TopWidget); the magics replace it
with this bundle when the cell ends. Tiny frames are pruned before embedding.
"""

from __future__ import annotations

import base64
import colorsys
import io
import re
import zlib

from ..profile import Profile
from ..profile.diff import ProfileDiff
from ..profile.exports import flame_views
from ..profile.flametree import OTHER, merge_threads
from ..profile.heatmap import heatmap_sections
from ..profile.html import render_report
from ..profile.summary import fmt_duration, summarize
from ..profile.top import top_rows
from ..reader import printable

EMBED_MIN_FRACTION = 0.002  # frames under 0.2 % of the samples are merged when embedded
PNG_MAX_DEPTH = 48
TIMELINE_BUCKETS = 120  # fewer than a page's 400: the notebook stores every output


def top_text(profile: Profile, limit: int = 15) -> str:
    summary = summarize(profile)
    lines = [
        f"spy_magic: {summary.samples} samples, {fmt_duration(summary.duration)}; "
        f"{summary.verdict}",
        f"{'%Own':>7} {'%Total':>7}  Function (file)",
    ]
    for row in top_rows(profile, limit):
        lines.append(f"{row.own_pct:7.2f} {row.total_pct:7.2f}  {row.name} ({row.filename})")
    errors = profile.error_counts()
    if errors:
        lines.append("errors: " + ", ".join(f"{k} {n}" for k, n in errors.most_common()))
    return printable("\n".join(lines))


_LIBRARY = re.compile(r"[\\/](?:site|dist)-packages[\\/]")
_STDLIB = re.compile(
    r"(?:^<frozen |[\\/]lib[\\/](?:pypy|python)\d*(?:\.\d+)?t?[\\/]|[\\/]Lib[\\/])"
)
# (hue start, hue span, saturation, lightness): the widget's bands, so the picture a static
# viewer shows reads like the live one (warm: your code, blue: stdlib, teal: packages).
_BANDS = {
    "user": (4, 44, 0.82, 0.63),
    "stdlib": (200, 28, 0.58, 0.70),
    "library": (155, 30, 0.40, 0.62),
    "native": (262, 22, 0.28, 0.74),
}
_OTHER_COLOUR = colorsys.hls_to_rgb(220 / 360, 0.80, 0.06)  # the graph's grey "(other)"
PNG_ROW_INCHES = 0.24
PNG_DPI = 100
PNG_COLOURS = 128


def _frame_colour(name: str, filename: str) -> tuple[float, float, float]:
    if name == OTHER and not filename:
        return _OTHER_COLOUR
    if not filename:
        kind = "native"
    elif _LIBRARY.search(filename):
        kind = "library"
    elif _STDLIB.search(filename):
        kind = "stdlib"
    else:
        kind = "user"
    start, span, saturation, lightness = _BANDS[kind]
    digest = zlib.crc32(name.encode())  # stable across runs, unlike hash()
    hue = (start + span * (digest & 0xFFFF) / 0xFFFF) / 360
    lightness += 0.06 * ((digest >> 16) & 0xFF) / 255
    return colorsys.hls_to_rgb(hue, min(lightness, 0.9), saturation)


def flame_boxes(
    views: dict, max_depth: int = PNG_MAX_DEPTH
) -> list[tuple[int, int, int, str, str]]:
    """(depth, start, width, name, filename) of every box the PNG draws, in samples: the
    by-function tree of the report's own `views` payload, all threads summed
    (`flametree.merge_threads`, what the live graph shows by function before anything is
    picked); the root left out, heaviest child leftmost, at most `max_depth` levels."""
    strings = views["strings"]
    nodes = merge_threads(views["views"]["function"], strings)
    parent, total = nodes["parent"], nodes["total"]
    depth = [0] * len(parent)
    start = [0] * len(parent)
    cursor = [0] * len(parent)  # where a node's next child starts
    boxes = []
    for i in range(1, len(parent)):
        p = parent[i]
        depth[i] = depth[p] + 1
        start[i] = cursor[i] = cursor[p]
        cursor[p] += total[i]
        if depth[i] <= max_depth:
            boxes.append((depth[i] - 1, start[i], total[i], strings[nodes["name"][i]],
                          strings[nodes["file"][i]]))  # fmt: skip
    return boxes


def flame_png(profile: Profile, width: float = 11.0, *, views: dict | None = None) -> bytes:
    """A static flame graph (all threads merged) for viewers that show only images, drawn
    from `views` (the report's `flame_views` payload; made when not given)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if views is None:
        views = flame_views(profile, min_fraction=EMBED_MIN_FRACTION)
    tree = views["views"]["function"]
    total = tree["total"]
    boxes = flame_boxes(views)
    depth = max((b[0] for b in boxes), default=0) + 1
    header = 0.32
    fig = Figure(figsize=(width, header + PNG_ROW_INCHES * depth), dpi=PNG_DPI)
    ax = fig.add_axes((0.005, 0.0, 0.99, 1 - header / (header + PNG_ROW_INCHES * depth)))
    ax.set_xlim(0, total or 1)
    ax.set_ylim(0, depth)
    ax.axis("off")
    threads = len(tree["threads"])
    target = profile.metadata.get("target")
    fig.text(
        0.005, 1 - 0.12 / (header + PNG_ROW_INCHES * depth),
        f"spy_magic flame graph{f' of {target}' if target else ''}: {profile.sample_count} "
        f"samples over {profile.duration:.2f} s, {threads} thread{'s' * (threads != 1)} merged "
        "(the interactive view has per-thread filters, zoom and search)",
        fontsize=8, va="top", color="#444444",
    )  # fmt: skip
    pixels_per_sample = width * PNG_DPI * 0.99 / (total or 1)
    for level, x, size, name, filename in boxes:
        ax.add_patch(
            Rectangle((x, level), size, 0.94, facecolor=_frame_colour(name, filename),
                      edgecolor="white", linewidth=0.5)
        )  # fmt: skip
        room = int(size * pixels_per_sample / 6.2) - 1  # characters that fit at fontsize 7
        share = f" {100 * size / total:.1f}%"
        text = name + share if len(name) + len(share) <= room else name
        if room >= 4:
            text = text if len(text) <= room else text[: room - 1] + "…"
            ax.text(x + 3 / pixels_per_sample, level + 0.47, text, fontsize=7, va="center",
                    clip_on=True)  # fmt: skip
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return _palette_png(buffer.getvalue())


def _palette_png(png: bytes) -> bytes:
    """The same picture with at most PNG_COLOURS colours: flat boxes and text need no more,
    and the file is about a third (it is embedded twice: as image/png and in the HTML)."""
    try:
        from PIL import Image  # matplotlib's own dependency
    except ImportError:
        return png
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=PNG_COLOURS).save(
        out, format="png", optimize=True
    )
    return out.getvalue() if out.tell() < len(png) else png


def profile_bundle(profile: Profile, title: str, by: str = "line",
                   baseline: ProfileDiff | None = None) -> dict:  # fmt: skip
    """The mime bundle for one output (see the module docstring); `by` is the view the
    flame graph shows first ("line", or "function" for `--function`). The report also
    holds the timeline, the cell heat map (the cell's own lines, from the source the magic
    put in the metadata) and, given a `baseline` diff, the diff colours and table."""
    summary = summarize(profile)
    views = flame_views(profile, by=by, min_fraction=EMBED_MIN_FRACTION,
                        timeline=TIMELINE_BUCKETS)  # fmt: skip
    png = flame_png(profile, views=views)
    sections = []
    if baseline is not None:
        views["diff"] = baseline.payload(views["strings"])
        sections.append(baseline.table_html())
    cells = [name for name in profile.metadata.get("sources") or {} if name.startswith("In [")]
    if cells:
        sections.append(heatmap_sections(profile, files=cells, heading="Cell heat map",
                                         heat="total"))  # fmt: skip
    report = render_report(
        views,
        title=title,
        metadata=summary.header_metadata(profile.metadata),
        verdict=summary.verdict,
        kept_up=summary.kept_up,
        fallback_png=png,
        sections=sections,
    )
    return {
        "text/plain": top_text(profile),
        "text/html": report,
        "image/png": base64.b64encode(png).decode("ascii"),
    }
