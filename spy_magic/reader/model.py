"""The values the reader hands out: plain, immutable, cheap to hash and compare."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import ReaderError

_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_name(raw: bytes) -> str:
    """Bytes read from a target (a path, a command line, a C string) as text.

    Undecodable bytes become lone surrogates, as Python itself decodes file names
    (`surrogateescape`): nothing is lost, and `os.fsencode` gives the bytes back. Such a name
    then needs `printable` (text output) or an ASCII JSON escape (`\\udcff`) on its way out.
    """
    return raw.decode("utf-8", "surrogateescape")


def printable(text: str) -> str:
    """`text` with each lone surrogate (an undecodable byte of a name) as U+FFFD, for text
    meant to be shown: a terminal, an HTML page, a collapsed-stack file. UTF-8 cannot
    carry a lone surrogate, so leaving one in makes a strict writer fail."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


@dataclass(frozen=True)
class Frame:
    """One Python frame: what a traceback line shows."""

    name: str
    filename: str
    line: int
    firstlineno: int

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "filename": self.filename,
            "line": self.line,
            "firstlineno": self.firstlineno,
        }


# The pseudo-frame on top of a thread's stack while the target's garbage collector runs
# there (StackReader's `gc`): a name no Python function can have, like <truncated ...>.
ASYNC_MODES = ("running", "all")  # --async: the running task's chain, or every task too
GC_FRAME_NAME = "<GC>"
GC_FILENAME = "<gc>"


@dataclass
class ThreadStack:
    """One Python thread at the moment of a snapshot; frames are innermost first."""

    pid: int
    thread_id: int
    native_id: int | None
    name: str | None
    gil: bool
    idle: bool | None
    frames: tuple[Frame, ...] = ()
    error: ReaderError | None = field(default=None, compare=False)
    # Read only when asked for (StackReader's `exceptions`, `opcodes`): whether the thread is
    # handling an exception (what sys.exception() would return there is not None), and the
    # name of the instruction its innermost frame executes. None: not asked, or not known.
    exception: bool | None = None
    opcode: str | None = None

    def to_dict(self) -> dict:
        out = {
            "pid": self.pid,
            "thread_id": self.thread_id,
            "native_id": self.native_id,
            "name": self.name,
            "gil": self.gil,
            "idle": self.idle,
            "frames": [f.to_dict() for f in self.frames],
        }
        if self.exception is not None:
            out["exception"] = self.exception
        if self.opcode is not None:
            out["opcode"] = self.opcode
        if self.error is not None:
            out["error"] = str(self.error)
        return out
