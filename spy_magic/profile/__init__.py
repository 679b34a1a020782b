"""Profiles: the samples of a session kept raw, aggregate views, and exports."""

from .exports import (
    FORMATS,
    JsonlError,
    JsonlTruncatedWarning,
    escape_collapsed,
    read_jsonl,
    to_chrometrace,
    to_collapsed,
    to_jsonl,
    to_speedscope,
    write,
)
from .gecko import to_gecko
from .model import FunctionStats, Profile, ThreadInfo, TimedError
from .pstats_export import to_pstats
from .recording import RecordingError, RecordingTruncatedWarning, RecordingWriter, read_recording

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
