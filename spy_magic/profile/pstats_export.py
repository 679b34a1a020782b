"""A profile as a `pstats` file: what `pstats.Stats`, snakeviz, gprof2dot and friends load.

pstats was made for cProfile, which counts calls; a sampler counts samples. Each entry keeps
cProfile's layout, `(cc, nc, tt, ct, callers)` keyed by `(filename, line, function)`, with:

- `nc` ("ncalls"): the samples that had the function on the stack, counting each of its
  frames (a function 3 deep in its own recursion counts 3 in that sample);
- `cc` ("primitive calls"): the samples that had it on the stack at all, once per sample,
  so `cc <= nc` as in cProfile and pstats shows `nc/cc` only for recursive functions;
- `tt` (tottime): seconds of the samples that had it innermost, `ct` (cumtime): seconds of
  the samples that had it anywhere. A sample stands for the measured gap to the next one
  (summed per distinct stack, `Profile.trace_stats`), so times add up to wall-clock time
  even when the rate changed or samples were late; a thread is one observation per
  sample, so several busy threads add up to more than the wall-clock span.
- `callers[caller] = (nc, cc, tt, ct)`: the same four for the callee when called straight
  from that caller, so a caller graph carries real times per edge.

None of these are call counts: a function called a million times in one sample's gap counts
once. `by="function"` (the default) keys entries by the function's first line, as cProfile
does; `by="line"` keys them by the line that was running, as CPython 3.15's sampler does.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable

from ..reader import Frame
from .model import Profile, check_by

# CPython 3.15's `profiling.sampling` marks its pstats files with this key, which 3.15's
# pstats turns into a SampledStats ("nsamples" columns). pstats before 3.15 cannot load a
# file that has it, so it is only written on request.
SAMPLED_MARKER = ("__sampled__",)

FuncKey = tuple  # (filename, line, function name)


def _key(frame: Frame, by: str) -> FuncKey:
    line = frame.line if by == "line" else frame.firstlineno
    return (frame.filename, line if isinstance(line, int) else 0, frame.name)


def pstats_dict(
    profile: Profile,
    *,
    by: str = "function",
    pids: Iterable[int] | None = None,
    thread_ids: Iterable[int] | None = None,
    idle: bool = True,
    gil_only: bool = False,
) -> dict[FuncKey, tuple]:
    """The `Stats.stats` dict: {(filename, line, name): (cc, nc, tt, ct, callers)}."""
    check_by(by)
    keys: dict[Frame, FuncKey] = {}
    # per function: [cc, nc, tt, ct]; per (callee, caller) edge: the same four
    entries: dict[FuncKey, list] = {}
    edges: dict[FuncKey, dict[FuncKey, list]] = {}
    filters = {"pids": pids, "thread_ids": thread_ids, "idle": idle, "gil_only": gil_only}
    for stats in profile.trace_stats(**filters):  # per distinct stack: count, seconds
        trace, count, weight = stats.trace, stats.count, stats.weight
        if not trace.frames:
            continue
        stack = []
        for frame in trace.frames:  # innermost first
            key = keys.get(frame)
            if key is None:
                key = keys[frame] = _key(frame, by)
            stack.append(key)
        seen: set[FuncKey] = set()
        seen_edges: set[tuple[FuncKey, FuncKey]] = set()
        for depth, key in enumerate(stack):
            entry = entries.get(key)
            if entry is None:
                entry = entries[key] = [0, 0, 0.0, 0.0]
            entry[1] += count
            if depth == 0:
                entry[2] += weight
            if key not in seen:
                seen.add(key)
                entry[0] += count
                entry[3] += weight
            if depth + 1 < len(stack):
                caller = stack[depth + 1]
                callers = edges.setdefault(key, {})
                edge = callers.get(caller)
                if edge is None:
                    edge = callers[caller] = [0, 0, 0.0, 0.0]
                # cProfile's order inside a caller entry is (nc, cc, tt, ct)
                edge[0] += count
                if depth == 0:
                    edge[2] += weight
                if (key, caller) not in seen_edges:
                    seen_edges.add((key, caller))
                    edge[1] += count
                    edge[3] += weight
    return {
        key: (
            cc,
            nc,
            tt,
            ct,
            {caller: tuple(edge) for caller, edge in edges.get(key, {}).items()},
        )
        for key, (cc, nc, tt, ct) in entries.items()
    }


def to_pstats(
    profile: Profile,
    *,
    by: str = "function",
    pids: Iterable[int] | None = None,
    thread_ids: Iterable[int] | None = None,
    idle: bool = True,
    gil_only: bool = False,
    sampled_marker: bool = False,
) -> bytes:
    """The marshal bytes `pstats.Stats(path)` loads (counts are samples: see the module doc).

    `sampled_marker=True` adds CPython 3.15's `("__sampled__",)` key, so that 3.15's pstats
    labels the columns as samples; pstats before 3.15 then cannot read the file.
    """
    stats: dict = pstats_dict(
        profile, by=by, pids=pids, thread_ids=thread_ids, idle=idle, gil_only=gil_only
    )
    if sampled_marker:
        stats[SAMPLED_MARKER] = True
    return marshal.dumps(stats)
