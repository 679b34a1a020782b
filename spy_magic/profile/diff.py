"""Comparing two profiles of one program: what changed in each function's self share, and
how much of that change is within sampling noise.

Shares, not counts: each profile's self counts are divided by its own number of stacks, so a
run twice as long (or sampled at twice the rate) compares equal. A function's change is
`new share - baseline share`; its noise bound is the binomial bound on that difference under
"nothing changed" (the pooled share p of both runs: `Z * sqrt(p (1 - p) (1/N_new + 1/N_base))`,
Z = 3, since a profile compares hundreds of functions at once and 95 % bounds would flag one
in twenty unchanged ones). A change within its bound is drawn neutral and counted as noise.

Computed from the public aggregates of `Profile` (`stack_counts`, `functions`), so it works
the same whether a profile keeps its samples or only their aggregates.
"""

from __future__ import annotations

import html
import math
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .summary import fmt_pct

if TYPE_CHECKING:
    from .model import Profile

NOISE_Z = 3.0
DIFF_FORMAT = "spy_magic.diff"
DIFF_VERSION = 1
TABLE_ROWS = 40  # the report's table of the largest changes


class DiffError(ValueError):
    """Two profiles that cannot be compared (no samples, or nothing in common)."""


@dataclass(frozen=True)
class FunctionChange:
    """One function's self share in each profile and the change between them."""

    name: str
    filename: str
    base_self: int
    new_self: int
    base_share: float
    new_share: float
    noise: float  # the change a profile of this size shows with nothing changed (Z sigma)

    @property
    def change(self) -> float:
        return self.new_share - self.base_share

    @property
    def significant(self) -> bool:
        """The change exceeds its noise bound."""
        return abs(self.change) > self.noise


@dataclass
class ProfileDiff:
    """`new` against `base`: every function of either with its change, largest first."""

    new: Profile
    base: Profile
    new_total: int
    base_total: int
    changes: list[FunctionChange]
    warnings: list[str] = field(default_factory=list)

    @property
    def moved(self) -> float:
        """The share of time that moved between functions (half the summed |change|)."""
        return sum(abs(c.change) for c in self.changes) / 2

    @property
    def noise_fraction(self) -> float:
        """Of the summed |change|, the fraction in changes within their noise bound."""
        total = sum(abs(c.change) for c in self.changes)
        if not total:
            return 1.0
        return sum(abs(c.change) for c in self.changes if not c.significant) / total

    def significant(self) -> list[FunctionChange]:
        return [c for c in self.changes if c.significant]

    def summary(self) -> str:
        """One sentence: how much moved, and how much of that is noise."""
        n_sig = len(self.significant())
        return (
            f"{_pct(self.moved)} of the time moved between functions "
            f"({self.new_total:,} samples against {self.base_total:,} in the baseline); "
            f"{_pct(self.noise_fraction)} of that change is within sampling noise "
            f"({NOISE_Z:g}\u03c3 binomial bound per function); "
            f"{n_sig} function{'s' * (n_sig != 1)} changed beyond it"
        )

    def payload(self, strings: list[str]) -> dict[str, Any]:
        """The JSON the flame graph colours by, its names indexed in `strings` (the views'
        string table, extended in place)."""
        index = {s: i for i, s in enumerate(strings)}

        def sid(text: str) -> int:
            i = index.get(text)
            if i is None:
                i = index[text] = len(strings)
                strings.append(text)
            return i

        shown = [c for c in self.changes if c.new_self or c.base_self]
        return {
            "format": DIFF_FORMAT,
            "version": DIFF_VERSION,
            "z": NOISE_Z,
            "new_total": self.new_total,
            "base_total": self.base_total,
            "summary": self.summary(),
            "name": [sid(c.name) for c in shown],
            "file": [sid(c.filename) for c in shown],
            "base_share": [round(c.base_share, 7) for c in shown],
            "new_share": [round(c.new_share, 7) for c in shown],
            "noise": [round(c.noise, 7) for c in shown],
        }

    def table_html(self, rows: int = TABLE_ROWS) -> str:
        """The largest changes as a plain table (readable without the script)."""
        esc = html.escape
        body = []
        owned = [c for c in self.changes if c.base_self or c.new_self]
        for c in owned[:rows]:
            if c.significant:
                kind, verdict = ("sfg-diff-up", "grew") if c.change > 0 else ("sfg-diff-down",
                                                                             "shrank")  # fmt: skip
            else:
                kind, verdict = "sfg-diff-noise", "within noise"
            gone = " (gone)" if not c.new_self and c.base_self else ""
            body.append(
                f'<tr class="{kind}"><td class="sfg-fn" title="{esc(c.name)}">{esc(c.name)}'
                f'{gone}</td><td class="sfg-loc" title="{esc(c.filename)}">'
                f"{esc(os.path.basename(c.filename))}</td>"
                f'<td class="num">{_pct(c.base_share)}</td><td class="num">{_pct(c.new_share)}'
                f'</td><td class="num">{_points(c.change)}</td>'
                f'<td class="num">\u00b1{_pct(c.noise)}</td><td>{verdict}</td></tr>'
            )
        warn = "".join(f'<div class="sfg-verdict sfg-verdict-warn">{esc(w)}</div>'
                       for w in self.warnings)  # fmt: skip
        return (
            '<section class="sfg-section sfg-diff"><h3>Change against the baseline</h3>'
            f"{warn}<p class=\"sfg-diff-summary\">{esc(self.summary())}</p>"
            '<div class="sfg-table-box"><table class="sfg-table sfg-diff-table">'
            f"<caption>{min(rows, len(owned))} of the {len(owned)} functions with own time, "
            "largest change in own share first</caption>"
            '<thead><tr><th>Function</th><th>File</th><th class="num">Baseline own</th>'
            '<th class="num">Own</th><th class="num">Change</th><th class="num">Noise</th>'
            f"<th>Verdict</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>"
            "</section>"
        )


def _pct(fraction: float) -> str:
    return fmt_pct(fraction)  # as the flame graph prints shares


def _points(change: float) -> str:
    sign = "+" if change > 0 else "\u2212" if change < 0 else "\u00b1"
    return sign + _pct(abs(change))


def noise_bound(base_self: int, base_total: int, new_self: int, new_total: int) -> float:
    """Z sigma of the difference of two binomial shares with equal true share (pooled)."""
    pooled = (base_self + new_self) / (base_total + new_total)
    return NOISE_Z * math.sqrt(pooled * (1 - pooled) * (1 / base_total + 1 / new_total))


def _program(profile: Profile) -> str | None:
    """The script (or command) a profile ran, to tell two different programs apart."""
    command = profile.metadata.get("command")
    if isinstance(command, (list, tuple)) and command:
        words = [str(w) for w in command]
        scripts = [w for w in words if w.endswith(".py")]
        if scripts:
            return os.path.basename(scripts[0])
        if "-m" in words[:-1]:
            return words[words.index("-m") + 1]
        return os.path.basename(words[0])
    target = str(profile.metadata.get("target") or "")
    if not target or target.startswith("pid ") or _CELL.match(target):
        return None  # a pid names no program; one cell run again is the same program
    return target


_CELL = re.compile(r"\AIn \[\d+\]\Z")


def _same_file(filename: str) -> str:
    """What makes two files one for a comparison: a notebook cell run again is "In [n]"
    with another n, but the same code."""
    return "In [ ]" if _CELL.match(filename) else filename


def _counts(profile: Profile) -> tuple[int, dict[tuple[str, str], int], dict[tuple, str]]:
    """(stacks, own count per function, the file each function's key stands for)."""
    total = sum(profile.stack_counts(by="function").values())
    own: dict[tuple[str, str], int] = {}
    files: dict[tuple[str, str], str] = {}
    for f in profile.functions(by="function"):
        key = (f.name, _same_file(f.filename))
        own[key] = own.get(key, 0) + f.self_count
        files[key] = f.filename
    return total, own, files


def diff_profiles(new: Profile, base: Profile) -> ProfileDiff:
    """`new` against the baseline `base`, by function (see the module docstring).

    Raises DiffError when either has no stacks, or when they share no function at all
    (a different program: nothing could be compared). A different script, or little time
    in shared functions, is a warning on the result.
    """
    new_total, new_own, new_files = _counts(new)
    base_total, base_own, base_files = _counts(base)
    if not base_total:
        raise DiffError("the baseline holds no stacks: nothing to compare against")
    if not new_total:
        raise DiffError("this profile holds no stacks: nothing to compare")
    common = new_own.keys() & base_own.keys()
    new_program, base_program = _program(new), _program(base)
    if not common:
        what = (f" (baseline: {base_program}, this: {new_program})"
                if base_program and new_program else "")  # fmt: skip
        raise DiffError(
            f"the baseline shares no function with this profile: it profiled a different "
            f"program{what}"
        )
    warnings = []
    if new_program and base_program and new_program != base_program:
        warnings.append(f"the baseline ran {base_program}, this profile {new_program}: "
                        "comparing different programs")  # fmt: skip
    shared = sum(new_own[k] for k in common) / new_total
    if shared < 0.5:
        warnings.append(f"only {_pct(shared)} of this profile's own time is in functions the "
                        "baseline also has: is it the same program?")  # fmt: skip
    changes = []
    for key in new_own.keys() | base_own.keys():
        a, b = base_own.get(key, 0), new_own.get(key, 0)
        filename = new_files.get(key) or base_files[key]  # as this profile's graph names it
        changes.append(FunctionChange(
            key[0], filename, a, b, a / base_total, b / new_total,
            noise_bound(a, base_total, b, new_total),
        ))  # fmt: skip
    changes.sort(key=lambda c: (-abs(c.change), c.name, c.filename))
    return ProfileDiff(new, base, new_total, base_total, changes, warnings)
