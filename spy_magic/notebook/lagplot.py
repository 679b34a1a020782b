"""How faithfully the sampler kept its schedule: a matplotlib figure, as PNG.

Three panels: lateness over time (each timeline bucket's most late sample; rate changes and
errors marked), the histogram of lateness, and the observed gaps between samples against
the exponential distribution a Poisson schedule should give. All three come from bounded
summaries a profile keeps (`timeline.lateness_series`, `Profile.late_values`,
`Profile.gap_summary`), not from its samples: the notebook's profiles arrive without them.
"""

from __future__ import annotations

import io
import math

from ..profile import Profile
from ..profile.model import SamplesNotKept


def lag_figure(profile: Profile):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    series = [] if profile.timeline is None else profile.timeline.lateness_series()
    fig = Figure(figsize=(11, 3.2), dpi=100, layout="constrained")
    ax_time, ax_hist, ax_gaps = fig.subplots(1, 3, width_ratios=[2.2, 1, 1.2])

    ax_time.step([t for t, _ in series], [late * 1e3 for _, late in series], where="post",
                 lw=0.8, color="#e5533d")  # fmt: skip
    ax_time.set_xlabel("time since start (s)")
    ax_time.set_ylabel("lateness (ms), most late per bucket")
    ax_time.set_title("lateness over time", fontsize=10)
    for change in profile.rate_changes:
        ax_time.axvline(change.timestamp, color="#6e40c9", ls="--", lw=1)
        ax_time.annotate(
            f"{change.old_rate:g}→{change.new_rate:g} Hz",
            (change.timestamp, 1), xycoords=("data", "axes fraction"),
            fontsize=7, color="#6e40c9", va="top", rotation=90,
        )  # fmt: skip
    error_times = [e.timestamp for e in profile.errors]
    if error_times:
        ax_time.plot(
            error_times, [0] * len(error_times), "|", color="#cf222e", ms=10,
            label=f"errors ({sum(profile.error_counts().values())})",
        )  # fmt: skip
        ax_time.legend(fontsize=7, loc="upper right")

    late = profile.late_values()
    late_count = sum(n for _, n in late)
    ax_hist.hist([v * 1e3 for v, _ in late] or [0], weights=[n for _, n in late] or [0],
                 bins=30, color="#f0a02b")  # fmt: skip
    ax_hist.set_xlabel("lateness of late samples (ms)")
    ax_hist.set_title(f"{late_count} of {profile.sample_count} samples late", fontsize=10)

    try:
        gaps = [(g, n) for g, n in profile.gap_summary().positive() if g > 0]
    except SamplesNotKept:
        gaps = []
        ax_gaps.text(0.5, 0.5, "gaps not kept", ha="center", transform=ax_gaps.transAxes)
    if gaps:
        total = sum(n for _, n in gaps)
        span = sum(g * n for g, n in gaps)
        rate = profile.metadata.get("effective_rate") or profile.metadata.get("rate")
        rate = rate or (total / span)
        xs, ecdf, seen = [], [], 0
        for gap, n in gaps:
            seen += n
            xs.append(gap * 1e3)
            ecdf.append(seen / total)
        ax_gaps.plot(xs, ecdf, lw=1.2, label="observed gaps")
        top = gaps[-1][0]
        grid = [top * i / 200 for i in range(201)]
        ax_gaps.plot(
            [x * 1e3 for x in grid], [1 - math.exp(-rate * x) for x in grid],
            ls="--", color="#57606a", label=f"exponential, {rate:g} Hz",
        )  # fmt: skip
        ax_gaps.legend(fontsize=7, loc="lower right")
    ax_gaps.set_xlabel("gap between samples (ms)")
    ax_gaps.set_title("gaps vs the Poisson schedule", fontsize=10)
    return fig


def lag_png(profile: Profile) -> bytes:
    fig = lag_figure(profile)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
