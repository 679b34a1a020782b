"""The one "top" table: own and total share per function, from `Profile.functions`.

`top` on the command line, the notebook's live widget (`js/topview.js`), its text/plain
view and the report's function table all show these rows, so they agree on every number.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from .model import Profile

SORTS = ("own", "total")


class TopRow(NamedTuple):
    """One function: its share of the thread stacks (with Python frames) that had it
    innermost (`own_pct`) and anywhere (`total_pct`), and those counts."""

    own_pct: float
    total_pct: float
    name: str
    filename: str
    first_line: int | None
    own: int
    total: int


def top_rows(
    profile: Profile,
    limit: int | None = 30,
    *,
    sort: str = "own",
    pids: Iterable[int] | None = None,
    thread_ids: Iterable[int] | None = None,
    idle: bool = True,
    gil_only: bool = False,
) -> list[TopRow]:
    """The `limit` functions with the most own (or total) samples, by function."""
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {SORTS}, got {sort!r}")
    filters = {"pids": pids, "thread_ids": thread_ids, "idle": idle, "gil_only": gil_only}
    stats = profile.functions(by="function", **filters)
    stacks = sum(s.count for s in profile.trace_stats(**filters) if s.trace.frames) or 1
    if sort == "total":
        stats.sort(key=lambda s: (-s.total_count, -s.self_count, s.name, s.filename))
    return [
        TopRow(
            100 * s.self_count / stacks,
            100 * s.total_count / stacks,
            s.name,
            s.filename,
            s.first_line,
            s.self_count,
            s.total_count,
        )
        for s in (stats if limit is None else stats[:limit])
    ]
