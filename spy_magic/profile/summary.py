"""How a recording went, in numbers and in plain words: the one source of every header.

`summarize(profile)` returns a `Summary`: duration, samples, the rate asked and the rate
achieved, lateness, rate changes, errors, the time one sample stands for, and a one-line
`verdict` ("rate lowered 1000 → 250 Hz: the sampler could not keep up"). The offline page,
the notebook view and the notebook's text fallback all show these, so they always agree.

The formatters here (`fmt_pct`, `fmt_seconds`, ...) are mirrored by `js/flamegraph.js`
(`fmtPct`, `fmtSec`) so that a share printed by Python and one drawn by the page read the same.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..engine.sample import RateChange
from .model import Profile


def fmt_pct(fraction: float) -> str:
    """12.3% from 1% up, 0.42% below, "<0.01%" for crumbs (as the flame graph prints)."""
    if not fraction > 0:
        return "0.0%"
    p = fraction * 100
    if p >= 1:
        return f"{p:.1f}%"
    if p < 0.01:
        return "<0.01%"
    return f"{p:.2f}%"


def fmt_seconds(seconds: float) -> str:
    """Three significant figures: 12.3 s, 1.23 s, 123 ms, 1.2 ms (as the flame graph prints)."""
    if not seconds > 0:
        return "0 s"
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1000
    if ms >= 10:
        return f"{ms:.0f} ms"
    if ms >= 1:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def fmt_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)} min {secs:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)} h {int(minutes)} min"


def fmt_rate(hz: float) -> str:
    return f"{hz:,.0f} Hz" if hz >= 10 else f"{hz:.2f} Hz"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 0.01 else f"{seconds * 1e3:.0f} ms"


@dataclass(frozen=True)
class Summary:
    """The facts of one recording (see the module docstring)."""

    samples: int
    stacks: int  # thread stacks with Python frames: what 100 % of a flame graph is
    threads: int
    processes: int
    duration: float  # seconds, first sample to last
    # The time one sample of a thread stands for: the duration shared evenly between the
    # samples, so a thread seen in every sample adds up to `duration` (the rate adapts to
    # load, so after a rate change this is an average; the verdict says when that happened).
    seconds_per_sample: float
    asked_rate: float | None
    achieved_rate: float
    late_count: int
    late_p50: float
    late_p99: float
    dropped_stale: int
    rate_changes: tuple[RateChange, ...]
    errors: Counter = field(default_factory=Counter)
    verdict: str = ""
    kept_up: bool = True  # False when the verdict is a warning

    def header_metadata(self, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """The figures a header shows, in order (see `profile.html.header_items`); the
        profile's `metadata` adds the target, the Python version, the mode and any note."""
        meta = metadata or {}
        return {
            "samples": self.samples,
            "duration": self.duration,
            "rate": self.achieved_rate or self.asked_rate,
            "asked_rate": self.asked_rate,
            "target": meta.get("target"),
            "python": meta.get("python_version"),
            "mode": meta.get("mode"),
            # which threads were kept (engine/modes.py), when not every one
            "keeps": _KEEPS.get(meta.get("profile_mode")),
            "late p99": _ms(self.late_p99) if self.late_count else None,
            "errors": ", ".join(f"{k} {n}" for k, n in self.errors.most_common()) or None,
            "note": meta.get("note"),
        }

    def seconds(self, count: float) -> float:
        """The time `count` samples (of one thread) stand for."""
        return count * self.seconds_per_sample


_KEEPS = {
    "cpu": "threads on a CPU",
    "gil": "the GIL holder (free-threaded: attached threads)",
    "exception": "threads handling an exception",
}


def _verdict(
    samples: int,
    asked: float | None,
    achieved: float,
    p99: float,
    dropped: int,
    changes: tuple[RateChange, ...],
) -> tuple[str, bool]:
    """One line a person can act on: did the sampler keep its schedule, and if not, how
    (and False when it did not)."""
    if samples == 0:
        return "no samples: the code ended before the first one was due", False
    lowered = [c for c in changes if c.new_rate < c.old_rate]
    if lowered:
        start = asked or lowered[0].old_rate
        lowest = min(c.new_rate for c in lowered)
        text = f"rate lowered {start:g} → {lowest:g} Hz: the sampler could not keep up"
        final = changes[-1].new_rate
        if final > lowest:
            text += f" (back up to {final:g} Hz later)"
        return text, False
    period = 1.0 / asked if asked else None
    if period and (p99 > period or dropped):
        skipped = f", {dropped} sample{'s' * (dropped != 1)} skipped" if dropped else ""
        return (
            f"late: p99 {_ms(p99)} behind a {_ms(period)} schedule{skipped}: the machine "
            "was too busy for the rate asked"
        ), False
    if asked and samples >= 30 and achieved < asked * (1 - 4 / math.sqrt(samples)):
        # Poisson gaps: over n samples the achieved rate strays about asked/sqrt(n).
        return f"fewer samples than asked: {fmt_rate(achieved)} of {fmt_rate(asked)}", False
    if asked:
        return f"kept up: p99 lateness {_ms(p99)} at {fmt_rate(asked)}", True
    return f"{samples} samples", True


def _seconds_per_sample(profile: Profile) -> float:
    if profile.sample_count >= 2 and profile.duration > 0:
        return profile.duration / profile.sample_count
    return profile.last_weight() if profile.sample_count else 0.0  # one sample: 1/rate


def summarize(profile: Profile) -> Summary:
    """The `Summary` of a profile (a finished one, or one still filling)."""
    samples = profile.sample_count
    lateness = profile.lateness()
    meta = profile.metadata
    asked = meta.get("rate")
    asked = float(asked) if isinstance(asked, (int, float)) and asked > 0 else None
    stacks = profile.stack_count()
    changes = tuple(profile.rate_changes)
    dropped = int(meta.get("dropped_stale") or 0)
    achieved = profile.effective_rate
    verdict, kept_up = _verdict(samples, asked, achieved, lateness["p99"], dropped, changes)
    return Summary(
        samples=samples,
        stacks=stacks,
        threads=len(profile.threads()),
        processes=len(profile.pids()),
        duration=profile.duration,
        seconds_per_sample=_seconds_per_sample(profile),
        asked_rate=asked,
        achieved_rate=achieved,
        late_count=lateness["count"],
        late_p50=lateness["p50"],
        late_p99=lateness["p99"],
        dropped_stale=dropped,
        rate_changes=changes,
        errors=profile.error_counts(),
        verdict=verdict,
        kept_up=kept_up,
    )
