"""What a finished profile looks like in a notebook: one output, several representations.

Each output carries the live widget view plus fallbacks, so a saved notebook still shows the
profile without a kernel: a self-contained `text/html` flame graph (nbconvert, reopened
notebooks), an `image/png` flame graph (GitHub and other static viewers), and a `text/plain`
top list. Tiny frames are pruned before embedding to keep notebooks small.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter

from ..profile import Profile
from ..profile.exports import thread_stack_counts, to_html
from ..profile.flametree import build_tree

EMBED_MIN_FRACTION = 0.002  # frames under 0.2 % of the samples are merged when embedded
PNG_MAX_DEPTH = 48


def top_text(profile: Profile, limit: int = 15) -> str:
    stats = profile.functions(by="function")
    traces = sum(1 for _ in profile.iter_traces()) or 1
    lines = [
        f"spy_magic: {profile.sample_count} samples, {profile.duration:.2f} s",
        f"{'%Own':>7} {'%Total':>7}  Function (file)",
    ]
    for stat in stats[:limit]:
        lines.append(
            f"{100 * stat.self_count / traces:7.2f} {100 * stat.total_count / traces:7.2f}  "
            f"{stat.name} ({stat.filename})"
        )
    errors = profile.error_counts()
    if errors:
        lines.append("errors: " + ", ".join(f"{k} {n}" for k, n in errors.most_common()))
    return "\n".join(lines)


def flame_tree(profile: Profile, min_fraction: float = EMBED_MIN_FRACTION) -> dict:
    names = {}
    for _, _sample, trace in profile.iter_traces():
        if trace.pid not in names and trace.processes:
            names[trace.pid] = str(trace.processes[-1])
    return build_tree(thread_stack_counts(profile), min_fraction=min_fraction,
                      process_names=names)  # fmt: skip


def flame_html(profile: Profile, title: str, height: int = 560) -> str:
    """The offline flame graph page, in an iframe so its script and styles stay its own."""
    page = to_html(profile, title=title)
    return (
        f'<iframe srcdoc="{html.escape(page, quote=True)}" '
        f'style="width: 100%; height: {height}px; border: 1px solid #d0d7de; '
        f'border-radius: 6px;" sandbox="allow-scripts" title="{html.escape(title)}"></iframe>'
    )


def flame_png(profile: Profile, width: float = 11.0) -> bytes:
    """A static flame graph (all threads merged) for viewers that show only images."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    merged: Counter = Counter()
    for counts in thread_stack_counts(profile, by="function").values():
        merged.update(counts)
    boxes = []  # (depth, x, width, label)

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
    total = sum(merged.values()) or 1
    depth = max((b[0] for b in boxes), default=0) + 1
    fig = Figure(figsize=(width, 0.6 + 0.22 * depth), dpi=100)
    ax = fig.add_axes((0.005, 0.02, 0.99, 0.9))
    ax.set_xlim(0, total)
    ax.set_ylim(0, depth)
    ax.axis("off")
    ax.set_title(f"spy_magic — {profile.sample_count} samples", fontsize=9, loc="left")
    for level, x, size, label in boxes:
        if size / total < 0.002:
            continue
        name = label.split(" (", 1)[0]
        hue = (hash(name) % 40) / 255
        ax.add_patch(
            matplotlib.patches.Rectangle(
                (x, level), size, 0.92, facecolor=(0.93, 0.55 + hue, 0.25), edgecolor="white",
                linewidth=0.4,
            )
        )  # fmt: skip
        chars = int(size / total * width * 100 / 6.5)
        if chars >= 4:
            text = name if len(name) <= chars else name[: chars - 1] + "…"
            ax.text(x + total * 0.002, level + 0.45, text, fontsize=7, va="center")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def profile_bundle(profile: Profile, title: str, widget=None) -> dict:
    """The mime bundle for one output: widget view (if any) and every static fallback."""
    bundle = {
        "text/plain": top_text(profile),
        "text/html": flame_html(profile, title),
        "image/png": base64.b64encode(flame_png(profile)).decode("ascii"),
    }
    if widget is not None:
        view = widget._repr_mimebundle_()
        if isinstance(view, tuple):
            view = view[0]
        key = "application/vnd.jupyter.widget-view+json"
        if key in view:
            bundle[key] = view[key]
    return bundle
