"""The line heat map: every sampled line's share beside its source text, a section per file.

`--format heatmap` writes one page of these (`to_heatmap`); the notebook's report shows the
same section for the cell's own source (`heatmap_sections(profile, files=["In [3]"])`).
Shares are of all stacks (the flame graph's 100 %): "own" counts the stacks whose innermost
frame is on the line, "total" those with the line anywhere (once per stack, so a recursive
line is not counted twice). The source comes from the profile's metadata (`"sources"`,
recorded from the target's own files by `sources.SourceCollector`, or the cell's text in a
notebook); a file without it still lists its lines' shares, under "source not available".

Plain HTML and CSS, no script: it reads the same where scripts are stripped.
"""

from __future__ import annotations

import html
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..reader import printable
from .summary import fmt_pct, fmt_seconds, summarize

if TYPE_CHECKING:
    from .model import Profile

MAX_FILES = 30  # sections on one page, hottest first; the rest are named in a footnote
FULL_FILE_LINES = 400  # a file up to this long is shown whole; longer: hot lines in context
CONTEXT = 3  # lines shown around each sampled line of a long file
MIN_OWN_FRACTION = 0.001  # a file is shown when its lines ran at least this share,
MIN_TOTAL_FRACTION = 0.01  # or one of them was on at least this share of the stacks


class LineCounts:
    """Per file, per line: [own, total] stacks; and how many stacks there are in all."""

    def __init__(self, profile: Profile) -> None:
        self.stacks = sum(profile.stack_counts(by="function").values())
        self.files: dict[str, dict[int, list[int]]] = defaultdict(dict)
        for stat in profile.functions(by="line"):
            if stat.line is None or stat.line <= 0:
                continue
            entry = self.files[stat.filename].setdefault(stat.line, [0, 0])
            entry[0] += stat.self_count
            # Two functions on one line (a lambda) rarely share a stack: their sum is the
            # line's total, capped at what exists.
            entry[1] = min(self.stacks, entry[1] + stat.total_count)

    def shown(self, name: str) -> bool:
        """Whether a file has enough samples on its lines to get a section."""
        lines = self.files[name].values()
        return (sum(own for own, _ in lines) >= MIN_OWN_FRACTION * self.stacks
                or max(t for _, t in lines) >= MIN_TOTAL_FRACTION * self.stacks)  # fmt: skip

    def file_order(self) -> list[str]:
        """Files by own stacks on their lines, then by their hottest line's total."""
        def key(name: str) -> tuple:
            lines = self.files[name].values()
            return (-sum(own for own, _ in lines), -max(t for _, t in lines), name)

        return sorted(self.files, key=key)


def _heat(fraction: float) -> str:
    # Alpha of a warm background: the square root spreads the small shares apart.
    return f"rgba(229, 83, 61, {0.06 + 0.6 * fraction ** 0.5:.3f})"


def _shown_lines(count: int, hot: Iterable[int], whole: bool = True) -> list[int | None]:
    """Line numbers to show (1-based), None where a run of lines is skipped: all of a short
    file (`whole`), else the sampled lines in context."""
    if whole and count <= FULL_FILE_LINES:
        return list(range(1, count + 1))
    keep = sorted({n for line in hot for n in range(line - CONTEXT, line + CONTEXT + 1)
                   if 1 <= n <= count})  # fmt: skip
    out: list[int | None] = []
    for n in keep:
        if (out and out[-1] is not None and n != out[-1] + 1) or (not out and n != 1):
            out.append(None)
        out.append(n)
    if keep and keep[-1] != count:
        out.append(None)
    return out


def kept_source(profile: Profile, sources: Mapping[str, str]) -> dict[str, Any]:
    """What of `sources` a recording keeps: the files the heat map gives a section (at most
    MAX_FILES), whole when short and hot (own >= 1 %), else only their sampled lines in
    context (`{"count": lines, "lines": {"n": text}}`), which the heat map shows as such."""
    counts = LineCounts(profile)
    kept: dict[str, Any] = {}
    for name in [f for f in counts.file_order() if counts.shown(f)][:MAX_FILES]:
        text = sources.get(name)
        if text is None:
            continue
        lines = text.splitlines()
        own = sum(o for o, _ in counts.files[name].values())
        if len(lines) <= FULL_FILE_LINES and own >= 0.01 * counts.stacks:
            kept[name] = text
            continue
        shown = [n for n in _shown_lines(len(lines), counts.files[name], whole=False) if n]
        window = {str(n): lines[n - 1] for n in shown if n <= len(lines)}
        kept[name] = {"count": len(lines), "lines": window}
    return kept


def file_section(filename: str, lines: Mapping[int, list[int]], stacks: int,
                 source: str | Mapping[str, Any] | None, why: str | None, per_sample: float | None,
                 label: str | None = None, peak: int | None = None,
                 heat: str = "own") -> str:  # fmt: skip
    """One file's table: line number, own, total, source text; the heat is the line's
    `heat` count ("own" or "total") against `peak` (the hottest line's on the page), a faint
    tint where the line was only on the stack."""
    esc = _esc
    column = 0 if heat == "own" else 1
    peak = peak or max(counts[column] for counts in lines.values()) or 1
    own_sum = sum(own for own, _ in lines.values())

    def cell(count: int) -> str:
        if not count:
            return '<td class="num"></td>'
        text = fmt_pct(count / stacks)
        if per_sample:
            text += f' <span class="sfg-sec">{fmt_seconds(count * per_sample)}</span>'
        return f'<td class="num">{text}</td>'

    rows = []
    partial = isinstance(source, Mapping)  # only some lines kept (a recording's)
    if partial:
        kept = {int(n): text for n, text in source["lines"].items()}
        count = int(source.get("count") or max(kept, default=0))
        text_lines: list[str] | None = [kept.get(n, "") for n in range(1, count + 1)]
    else:
        text_lines = source.splitlines() if source is not None else None
    if text_lines is not None:
        numbers = _shown_lines(max(len(text_lines), max(lines)), lines, whole=not partial)
    else:
        numbers = sorted(lines)
    for n in numbers:
        if n is None:
            rows.append('<tr class="sfg-heat-gap"><td colspan="5">\u22ef</td></tr>')
            continue
        own, total = lines.get(n, (0, 0))
        code = ""
        if text_lines is not None and n <= len(text_lines):
            code = esc(text_lines[n - 1].expandtabs(4))
        style = ""
        if (own, total)[column]:
            style = f' style="background:{_heat((own, total)[column] / peak)}"'
        elif total:
            style = ' style="background:rgba(229, 83, 61, 0.04)"'

        samples = f"{total:,}" if total else ""
        rows.append(
            f'<tr data-line="{n}"{style}><td class="sfg-heat-no">{n}</td>{cell(own)}{cell(total)}'
            f'<td class="num sfg-heat-n">{samples}</td><td class="sfg-heat-src">{code}</td></tr>'
        )
    missing = ""
    if source is None:
        missing = ('<p class="sfg-heat-missing">source not available'
                   f"{f' ({esc(why)})' if why else ''}: the sampled lines only</p>")  # fmt: skip
    title = label or filename
    return (
        f'<section class="sfg-heat-file" data-file="{esc(filename)}">'
        f'<h4 title="{esc(filename)}">{esc(title)} <span class="sfg-heat-sum">'
        f"own {fmt_pct(own_sum / stacks)} of all samples</span></h4>{missing}"
        '<div class="sfg-heat-box"><table class="sfg-heat">'
        '<thead><tr><th>Line</th><th class="num">Own</th><th class="num">Total</th>'
        f'<th class="num">Samples</th><th>Source</th></tr></thead><tbody>{"".join(rows)}'
        "</tbody></table></div></section>"
    )


def heatmap_sections(profile: Profile, *, files: Iterable[str] | None = None,
                     sources: Mapping[str, Any] | None = None,
                     heading: str = "Line heat map", heat: str = "own") -> str:  # fmt: skip
    """The heat map of `files` (default: every sampled file, hottest first, at most
    MAX_FILES) as one HTML section; "" when none of them has a sampled line. `heat`: what
    colours a line, its "own" samples (where the time went) or its "total" (a cell's lines,
    which mostly call the code that runs)."""
    if heat not in ("own", "total"):
        raise ValueError(f"heat must be 'own' or 'total', got {heat!r}")
    column = 0 if heat == "own" else 1
    counts = LineCounts(profile)
    if not counts.stacks:
        return ""
    if sources is None:
        sources = profile.metadata.get("sources") or {}
    missing = profile.metadata.get("sources_missing") or {}
    per_sample = summarize(profile).seconds_per_sample or None
    order = counts.file_order()
    if files is not None:
        wanted = list(files)
        order = [f for f in wanted if f in counts.files]
    if files is None:
        order = [f for f in order if counts.shown(f)]
    shown, rest = order[:MAX_FILES], order[MAX_FILES:]
    if not shown:
        return ""
    peak = max(c[column] for f in shown for c in counts.files[f].values()) or 1
    parts = []
    for name in shown:
        source = sources.get(name)
        why = missing.get(name) or (None if source is not None else "not recorded")
        label = name if name.startswith("In [") else os.path.basename(name) or name
        parts.append(file_section(name, counts.files[name], counts.stacks, source, why,
                                  per_sample, label=f"{label}  \u2014  {name}"
                                  if label != name else name, peak=peak,
                                  heat=heat))  # fmt: skip
    note = ""
    if rest:
        more = " \u2026" if len(rest) > 20 else ""
        note = (f'<p class="sfg-heat-more">{len(rest)} more files with fewer samples: '
                f"{_esc(', '.join(os.path.basename(f) for f in rest[:20]))}"
                f"{more}</p>")  # fmt: skip
    return (
        f'<section class="sfg-section sfg-heatmap"><h3>{_esc(heading)}</h3>'
        '<p class="sfg-heat-help">Each sampled line with its share of all samples: own '
        "(the line was running) and total (the line was on the stack); the redder, the "
        f"more {'own time' if heat == 'own' else 'time on the stack'}.</p>"
        f"{''.join(parts)}{note}</section>"
    )


def to_heatmap(profile: Profile, *, title: str | None = None) -> str:
    """One offline page: the header of the recording and a heat map section per file."""
    from .exports import _profile_name
    from .html import render_sections_page

    summary = summarize(profile)
    body = heatmap_sections(profile) or (
        '<section class="sfg-section sfg-heatmap"><h3>Line heat map</h3>'
        "<p>No sampled line: the profile holds no stack with a line number.</p></section>"
    )
    return render_sections_page(
        [body],
        title=title or f"line heat map of {_profile_name(profile)}",
        metadata=summary.header_metadata(profile.metadata),
        verdict=summary.verdict,
        kept_up=summary.kept_up,
    )


def _esc(text: str) -> str:
    """HTML-escaped, a lone surrogate (a name or source that was not UTF-8) as U+FFFD."""
    return html.escape(printable(text))
