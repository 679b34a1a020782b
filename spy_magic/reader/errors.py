"""Errors raised by the stack reader.

Each carries a message meant for the end user: it says what went wrong and, where there is
something to do about it, what to do.
"""

from __future__ import annotations

from .versions import RANGE_TEXT


class ReaderError(Exception):
    """Base class for everything the reader raises on purpose."""


class NoSuchProcess(ReaderError):
    """The pid names no process."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"no process with pid {pid}")
        self.pid = pid


class ProcessExited(ReaderError):
    """The process went away while (or before) it was being read."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"process {pid} exited while it was being read")
        self.pid = pid


class NotPython(ReaderError):
    """The process runs no CPython interpreter we can find."""


class AccessDenied(ReaderError):
    """The kernel refused to let us read the process."""

    def __init__(self, pid: int, detail: str = "") -> None:
        msg = (
            f"permission denied reading process {pid}{': ' + detail if detail else ''}. "
            "Reading another process needs ptrace access: run as the same user as the target "
            "(or as root); if /proc/sys/kernel/yama/ptrace_scope is 1 or more, only parents may "
            "read their children (set it to 0, or grant CAP_SYS_PTRACE); in Docker start the "
            "container with --cap-add SYS_PTRACE."
        )
        super().__init__(msg)
        self.pid = pid


class UnsupportedVersion(ReaderError):
    """The interpreter is CPython, but one whose memory layout we cannot read."""

    def __init__(self, pid: int, version: str, why: str = "") -> None:
        tail = f" ({why})" if why else ""
        super().__init__(
            f"process {pid} runs Python {version}, which spy_magic cannot read{tail}; "
            f"supported: CPython {RANGE_TEXT}, standard and free-threaded builds"
        )
        self.pid = pid
        self.version = version


class NotReady(ReaderError):
    """The interpreter has not finished starting up: retrying shortly may succeed."""

    def __init__(self, pid: int, detail: str) -> None:
        super().__init__(f"Python in process {pid} is not ready yet: {detail}")
        self.pid = pid


class TornStack(ReaderError):
    """A thread's stack changed while it was being read, so the copy is inconsistent."""


class MemoryReadError(ReaderError):
    """An address in the target could not be read (unmapped, or freed meanwhile)."""

    def __init__(self, address: int, size: int, detail: str = "") -> None:
        super().__init__(
            f"cannot read {size} bytes at {address:#x}{': ' + detail if detail else ''}"
        )
        self.address = address
        self.size = size


class NotAvailable(ReaderError):
    """Something asked of the reader (which exception a thread handles, say) that this
    build does not let it tell: refused before sampling, never guessed."""

    def __init__(self, pid: int, version: str, what: str, why: str) -> None:
        super().__init__(f"process {pid} runs Python {version}: cannot tell {what} ({why})")
        self.pid = pid
