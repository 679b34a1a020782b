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
from .model import FunctionStats, Profile, ThreadInfo, TimedError

__all__ = [
    "FORMATS",
    "FunctionStats",
    "JsonlError",
    "JsonlTruncatedWarning",
    "Profile",
    "ThreadInfo",
    "TimedError",
    "escape_collapsed",
    "read_jsonl",
    "to_chrometrace",
    "to_collapsed",
    "to_jsonl",
    "to_speedscope",
    "write",
]
