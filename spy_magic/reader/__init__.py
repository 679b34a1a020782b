"""Reading the Python stacks of another process from outside, in pure Python."""

from .errors import (
    AccessDenied,
    MemoryReadError,
    NoSuchProcess,
    NotAvailable,
    NotPython,
    NotReady,
    ProcessExited,
    ReaderError,
    TornStack,
    UnsupportedVersion,
)
from .model import Frame, ThreadStack, decode_name, printable
from .reader import StackReader

__all__ = [
    "AccessDenied",
    "Frame",
    "MemoryReadError",
    "NoSuchProcess",
    "NotAvailable",
    "NotPython",
    "NotReady",
    "ProcessExited",
    "ReaderError",
    "StackReader",
    "ThreadStack",
    "TornStack",
    "UnsupportedVersion",
    "decode_name",
    "printable",
]
