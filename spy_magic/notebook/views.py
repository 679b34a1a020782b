"""What a finished profile looks like in a notebook: one output, several representations.

The output holds no widget view: a saved notebook reopened without its kernel (or without
the widget state) would show "Error displaying widget: model not found" instead, since the
widget renderer wins over every other representation and does not fall back. Instead:

- `text/html`: the report (`profile.html.render_report`): the summary header, the flame
  graph (by line and by function) and the sortable function table, its script and data
  inline. Trusted notebooks run it (the session that ran the cell, and a notebook the user
  saved and reopens); nbconvert pages run it too. Where scripts are stripped (an untrusted
  notebook, GitHub) the header, the table and the PNG inside it still show.
- `image/png`: the static flame graph, for viewers that show images only (PDF/LaTeX).
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
from collections import Counter

from ..profile import Profile
from ..profile.diff import ProfileDiff
from ..profile.exports import flame_views, thread_stack_counts
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
PNG_ROW_INCHES = 0.24
PNG_DPI = 100
PNG_COLOURS = 128


def _frame_colour(name: str, filename: str) -> tuple[float, float, float]:
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


def _png_boxes(merged: Counter) -> list[tuple[int, int, int, str]]:
    """(depth, start, width, label) of every box, root first, largest child leftmost."""
    boxes = []

    def place(stacks: list[tuple[tuple[str, ...], int]], depth: int, x: int) -> None:
        groups: dict[str, list] = {}
        for stack, count in stacks:
            if len(stack) > depth:
                groups.setdefault(stack[depth], []).append((stack, count))
        for label, members in sorted(groups.items(), key=lambda kv: -sum(c for _, c in kv[1])):
            size = sum(c for _, c in members)
            boxes.append((depth, x, size, label))
            if depth + 1 < PNG_MAX_DEPTH:
                place(members, depth + 1, x)
            x += size

    place(list(merged.items()), 0, 0)
    return boxes


def flame_png(profile: Profile, width: float = 11.0) -> bytes:
    """A static flame graph (all threads merged) for viewers that show only images."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    merged: Counter = Counter()
    for counts in thread_stack_counts(profile, by="function").values():
        merged.update(counts)
    total = sum(merged.values())
    boxes = [b for b in _png_boxes(merged) if total and b[2] / total >= EMBED_MIN_FRACTION]
    depth = max((b[0] for b in boxes), default=0) + 1
    header = 0.32
    fig = Figure(figsize=(width, header + PNG_ROW_INCHES * depth), dpi=PNG_DPI)
    ax = fig.add_axes((0.005, 0.0, 0.99, 1 - header / (header + PNG_ROW_INCHES * depth)))
    ax.set_xlim(0, total or 1)
    ax.set_ylim(0, depth)
    ax.axis("off")
    threads = len({(s.trace.pid, s.trace.thread_id) for s in profile.trace_stats()})
    target = profile.metadata.get("target")
    fig.text(
        0.005, 1 - 0.12 / (header + PNG_ROW_INCHES * depth),
        f"spy_magic flame graph{f' of {target}' if target else ''}: {profile.sample_count} "
        f"samples over {profile.duration:.2f} s, {threads} thread{'s' * (threads != 1)} merged "
        "(the interactive view has per-thread filters, zoom and search)",
        fontsize=8, va="top", color="#444444",
    )  # fmt: skip
    pixels_per_sample = width * PNG_DPI * 0.99 / (total or 1)
    for level, x, size, label in boxes:
        name, _, rest = label.partition(" (")
        ax.add_patch(
            Rectangle((x, level), size, 0.94, facecolor=_frame_colour(name, rest.rstrip(")")),
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
    png = flame_png(profile)
    views = flame_views(profile, by=by, min_fraction=EMBED_MIN_FRACTION,
                        timeline=TIMELINE_BUCKETS)  # fmt: skip
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
