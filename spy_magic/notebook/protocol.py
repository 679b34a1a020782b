"""What the kernel and its sampling helper say to each other: one JSON object per line.

The helper does the work (sampling, trimming the kernel's machinery, aggregating), so the
kernel's side costs almost nothing while the cell runs: a thread blocked on a pipe read
that wakes about once a second for a small summary.

helper → kernel (its stdout):

    {"type": "hello", "protocol": 2}                 first, before anything else
    {"type": "started", "metadata": {...}}           sampling began
    {"type": "summary", ...}                         about once a second: see `summary`
    {"type": "profile", "profile": {...}}            the finished profile: `encode_profile`
    {"type": "end", "error": null | "Kind: why"}     last

kernel → helper (its stdin):

    {"type": "go", "protocol": 2, "context": ...,    start sampling (after ptrace is granted);
     "samples": false}                               true: send the samples with the profile
    {"type": "context", "context": ...}              the cell's context changed (a new thread)
    {"type": "stop", "context": ...}                 stop, trim with this context, send all

`context` is a `cells.CellContext` as JSON, or null (sample another process: no trimming).
Both sides check `PROTOCOL_VERSION`: a helper from another spy_magic than the kernel's (an
upgrade under a running kernel) is refused with a message saying so, not misread.
"""

from __future__ import annotations

import json
from typing import Any

from ..profile import Profile
from ..profile.model import ProfileJsonError
from ..profile.top import top_rows

PROTOCOL_VERSION = 2  # 2: the finished profile as aggregates, samples only when asked
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
# The profile's aggregates (`Profile.to_json`): each distinct string, frame and trace once,
# per trace its count and weight, and the bounded summaries (lateness, gaps, errors, rate
# changes, the timeline, with its per-bucket lateness for the lag plot). Its size grows with
# the distinct stacks, not the samples, so a ten-minute cell costs the kernel what a
# ten-second one does. The samples themselves cross only when the kernel asked for them in
# "go" (`samples: true`: an `-o` format that needs every sample, NEEDS_SAMPLES).


def encode_profile(profile: Profile, *, samples: bool = False) -> dict[str, Any]:
    """`profile` as a JSON-able dict, for `decode_profile` on the other side; with its
    samples only when `samples`."""
    return profile.to_json(samples=samples)


def decode_profile(data: Any) -> Profile:
    """The Profile `encode_profile` wrote (keep_samples only when its samples were sent);
    ProtocolError saying what is wrong when `data` is not one."""
    try:
        return Profile.from_json(data)
    except ProfileJsonError as exc:
        raise ProtocolError(f"not an encoded profile: {exc}") from None
