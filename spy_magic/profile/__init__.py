"""Profiles: the samples of a session kept raw, aggregate views, and exports."""

from .exports import (
    FORMATS,
    JsonlError,
    JsonlTruncatedWarning,
    escape_collapsed,
    read_jsonl,
    to_chrometrace,
    to_collapsed,
    to_gecko,
    to_jsonl,
    to_pstats,
    to_speedscope,
    write,
)
from .model import FunctionStats, Profile, ThreadInfo, TimedError

# Imported on first use: `record --pid` should reach its first sample without them.
_LAZY = {
    "RecordingError": ".recording",
    "RecordingTruncatedWarning": ".recording",
    "RecordingWriter": ".recording",
    "read_recording": ".recording",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "FORMATS",
    "FunctionStats",
    "JsonlError",
    "JsonlTruncatedWarning",
    "Profile",
    "RecordingError",
    "RecordingTruncatedWarning",
    "RecordingWriter",
    "ThreadInfo",
    "TimedError",
    "escape_collapsed",
    "read_jsonl",
    "read_recording",
    "to_chrometrace",
    "to_collapsed",
    "to_gecko",
    "to_jsonl",
    "to_pstats",
    "to_speedscope",
    "write",
]
