"""The values the reader hands out: plain, immutable, cheap to hash and compare."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ReaderError


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
        if self.error is not None:
            out["error"] = str(self.error)
        return out
