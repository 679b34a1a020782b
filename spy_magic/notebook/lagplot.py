"""How faithfully the sampler kept its schedule: a matplotlib figure, as PNG.

Three panels: each sample's lateness over time (rate changes and errors marked), the
histogram of lateness, and the observed gaps between samples against the exponential
distribution a Poisson schedule should give.
"""

from __future__ import annotations

import io
import math

from ..profile import Profile


def lag_figure(profile: Profile):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    samples = profile.samples
    times = [s.timestamp for s in samples]
    late_ms = [(s.late or 0.0) * 1e3 for s in samples]
    fig = Figure(figsize=(11, 3.2), dpi=100, layout="constrained")
    ax_time, ax_hist, ax_gaps = fig.subplots(1, 3, width_ratios=[2.2, 1, 1.2])

    ax_time.plot(times, late_ms, lw=0.8, color="#e5533d")
    ax_time.set_xlabel("time since start (s)")
    ax_time.set_ylabel("lateness (ms)")
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
            label=f"errors ({len(error_times)})",
        )  # fmt: skip
        ax_time.legend(fontsize=7, loc="upper right")

    late_only = [x for x in late_ms if x > 0]
    ax_hist.hist(late_only or [0], bins=30, color="#f0a02b")
    ax_hist.set_xlabel("lateness of late samples (ms)")
    ax_hist.set_title(f"{len(late_only)} of {len(samples)} samples late", fontsize=10)

    gaps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    if gaps:
        rate = profile.metadata.get("effective_rate") or profile.metadata.get("rate")
        rate = rate or (len(gaps) / sum(gaps))
        n = len(gaps)
        ecdf = [(i + 1) / n for i in range(n)]
        ax_gaps.plot([g * 1e3 for g in gaps], ecdf, lw=1.2, label="observed gaps")
        top = gaps[-1]
        xs = [top * i / 200 for i in range(201)]
        ax_gaps.plot(
            [x * 1e3 for x in xs], [1 - math.exp(-rate * x) for x in xs],
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
