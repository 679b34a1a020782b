"""What the kernel and its sampling helper say to each other: one JSON object per line.

The helper does the work (sampling, trimming the kernel's machinery, aggregating), so the
kernel's side costs almost nothing while the cell runs: a thread blocked on a pipe read
that wakes about once a second for a small summary.

helper → kernel (its stdout):

    {"type": "hello", "protocol": 1}                 first, before anything else
    {"type": "started", "metadata": {...}}           sampling began
    {"type": "summary", ...}                         about once a second: see `summary`
    {"type": "profile", "profile": {...}}            the finished profile: `encode_profile`
    {"type": "end", "error": null | "Kind: why"}     last

kernel → helper (its stdin):

    {"type": "go", "protocol": 1, "context": ...}    start sampling (after ptrace is granted)
    {"type": "context", "context": ...}              the cell's context changed (a new thread)
    {"type": "stop", "context": ...}                 stop, trim with this context, send all

`context` is a `cells.CellContext` as JSON, or null (sample another process: no trimming).
Both sides check `PROTOCOL_VERSION`: a helper from another spy_magic than the kernel's (an
upgrade under a running kernel) is refused with a message saying so, not misread.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..engine.sample import ProcessLabel, RateChange, Sample, SampleError, Trace
from ..profile import Profile
from ..profile.top import top_rows
from ..reader import Frame

PROTOCOL_VERSION = 1
HELPER_MESSAGES = frozenset({"hello", "started", "summary", "profile", "end"})
KERNEL_MESSAGES = frozenset({"go", "context", "stop"})
SUMMARY_ROWS = 30  # functions in a live summary


class ProtocolError(ValueError):
    """A message that is not this protocol's (another version, a broken line)."""


def encode(kind: str, **fields: Any) -> str:
    """One message as a line (no newline inside: JSON escapes them)."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"), default=str)


def decode(line: str, expected: frozenset[str]) -> dict[str, Any]:
    """A message from one line; ProtocolError when it is not one of `expected`."""
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not a message ({exc}): {line[:80]!r}") from None
    if type(message) is not dict or message.get("type") not in expected:
        raise ProtocolError(f"unexpected message: {line[:80]!r}")
    return message


def check_version(message: dict[str, Any], who: str) -> None:
    """Raise ProtocolError unless `message` (a hello or go) speaks PROTOCOL_VERSION."""
    theirs = message.get("protocol")
    if theirs != PROTOCOL_VERSION:
        raise ProtocolError(
            f"{who} speaks spy_magic notebook protocol {theirs!r}, this side "
            f"{PROTOCOL_VERSION}: spy_magic was changed under a running kernel; restart it"
        )


# -- the live summary ------------------------------------------------------------------------


def summary(
    profile: Profile, *, elapsed: float, asked_rate: float | None, rate_now: float | None = None
) -> dict[str, Any]:
    """The fields of a `summary` message: what the live view shows of a profile still
    filling (already trimmed): elapsed seconds, samples, the rate achieved and asked, the
    sampler's rate now (lower than asked once load adaptation stepped in), and the top
    functions by own time as rows [own %, total %, own seconds, function, location]."""
    samples = profile.sample_count
    per_sample = elapsed / samples if samples else 0.0
    rows = [  # the one top table (profile/top.py): `top` and the report agree with it
        [
            round(row.own_pct, 2),
            round(row.total_pct, 2),
            round(row.own * per_sample, 3),
            row.name,
            row.filename,
        ]
        for row in top_rows(profile, SUMMARY_ROWS)
    ]
    return {
        "elapsed": round(elapsed, 3),
        "samples": samples,
        "asked_rate": asked_rate,
        "achieved_rate": round(samples / elapsed, 1) if elapsed > 0 else 0.0,
        "rate_now": asked_rate if rate_now is None else round(rate_now, 1),
        "rows": rows,
    }


# -- the finished profile --------------------------------------------------------------------
#
# Columns and tables, each distinct string, frame, trace and combination of traces once:
# a steady cell's samples cost a few bytes each. Only Profile's public API is used (samples,
# metadata, rate_changes; add, add_rate_change), so the two ends do not depend on how a
# Profile stores what it holds.

PROFILE_FORMAT = 1


def encode_profile(profile: Profile) -> dict[str, Any]:
    """`profile` as a JSON-able dict, for `decode_profile` on the other side."""
    strings: dict[str, int] = {}
    frames: dict[Frame, int] = {}
    traces: dict[int, int] = {}  # id(trace) -> number (the profile keeps the traces alive)
    combos: dict[tuple[int, ...], int] = {}
    frame_rows: list[int] = []
    trace_rows: list[list] = []
    combo_rows: list[list[int]] = []
    times: list[float] = []
    lates: list[float | None] = []
    sample_combos: list[int] = []
    errors: list[list] = []

    def string(text: str) -> int:
        number = strings.get(text)
        if number is None:
            number = strings[text] = len(strings)
        return number

    def frame(f: Frame) -> int:
        number = frames.get(f)
        if number is None:
            number = frames[f] = len(frames)
            frame_rows.extend((string(f.name), string(f.filename), f.line, f.firstlineno))
        return number

    def trace(t: Trace) -> int:
        number = traces.get(id(t))
        if number is None:
            number = traces[id(t)] = len(trace_rows)
            trace_rows.append([
                t.pid, t.thread_id, t.native_id,
                -1 if t.thread_name is None else string(t.thread_name),
                t.gil, t.idle, [frame(f) for f in t.frames],
                [[p.pid, string(p.command)] for p in t.processes],
                -1 if t.opcode is None else string(t.opcode),  # --opcodes
            ])  # fmt: skip
        return number

    for index, sample in enumerate(profile.samples):
        key = tuple(trace(t) for t in sample.traces)
        combo = combos.get(key)
        if combo is None:
            combo = combos[key] = len(combo_rows)
            combo_rows.append(list(key))
        times.append(sample.timestamp)
        lates.append(sample.late)
        sample_combos.append(combo)
        for e in sample.errors:
            errors.append([index, e.pid, e.thread_id, e.kind, e.message])
    return {
        "format": PROFILE_FORMAT,
        "metadata": json.loads(json.dumps(profile.metadata, default=str)),
        "rate_changes": [
            [c.timestamp, c.old_rate, c.new_rate, c.reason] for c in profile.rate_changes
        ],
        "strings": list(strings),
        "frames": frame_rows,
        "traces": trace_rows,
        "combos": combo_rows,
        "times": times,
        "lates": lates,
        "samples": sample_combos,
        "errors": errors,
    }


def decode_profile(data: Any) -> Profile:
    """The Profile `encode_profile` wrote; ProtocolError when `data` is not one."""
    try:
        if data.get("format") != PROFILE_FORMAT:
            raise ProtocolError(f"profile format {data.get('format')!r}, expected {PROFILE_FORMAT}")
        strings = data["strings"]
        flat = data["frames"]
        frames = [
            Frame(strings[flat[i]], strings[flat[i + 1]], flat[i + 2], flat[i + 3])
            for i in range(0, len(flat), 4)
        ]
        traces = [
            Trace(
                pid,
                tid,
                native,
                None if name < 0 else strings[name],
                gil,
                idle,
                tuple(frames[f] for f in frame_ids),
                tuple(ProcessLabel(p, strings[c]) for p, c in processes),
                opcode=None if opcode < 0 else strings[opcode],
            )
            for pid, tid, native, name, gil, idle, frame_ids, processes, opcode in data["traces"]
        ]
        combos = [[traces[t] for t in combo] for combo in data["combos"]]
        errors: dict[int, list[SampleError]] = {}
        for index, pid, tid, kind, message in data["errors"]:
            errors.setdefault(index, []).append(SampleError(pid, tid, kind, message))
        profile = Profile(data["metadata"])
        for index, (timestamp, late, combo) in enumerate(
            zip(data["times"], data["lates"], data["samples"])
        ):
            if late is not None and not math.isfinite(late):
                late = None
            profile.add(Sample(timestamp, list(combos[combo]), late, errors.get(index)))
        for timestamp, old, new, reason in data["rate_changes"]:
            profile.add_rate_change(RateChange(timestamp, old, new, reason))
    except ProtocolError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise ProtocolError(f"not an encoded profile: {type(exc).__name__}: {exc}") from None
    return profile
