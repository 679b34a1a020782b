"""Where a profile is written: `-o` tried before anything runs, a fallback if it fails after.

A recording can take hours, and a notebook cell's run cannot be repeated for free: losing
either to a typo in `-o`, or to its folder removed meanwhile, is the worst way to end. So
the path is tried first, the way the write will open it and leaving it as it was; and a
write that still fails at the end goes to a fresh file in the temp dir (else the current
folder), which the caller names. `record` and the notebook magics both write through here.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from typing import Any

from ..profile import Profile
from ..profile.exports import write


def output_problem(path: str) -> str | None:
    """Why `path` cannot be written (a few words), or None when it can.

    An existing regular file is opened for appending (not truncated); a new one is created
    and removed again; a device or pipe (`/dev/null`) is only checked for write access, as
    opening a pipe could block.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if not os.path.isdir(folder):
            return f"no folder {folder}"
        info = None
    except OSError as exc:
        return exc.strerror or str(exc)
    if info is not None and stat.S_ISDIR(info.st_mode):
        return "it is a directory"
    if info is not None and not stat.S_ISREG(info.st_mode):
        return None if os.access(path, os.W_OK) else "not writable"
    flags = os.O_WRONLY | (os.O_APPEND if info is not None else os.O_CREAT | os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    if info is None:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return None


@dataclass(frozen=True)
class Saved:
    """Where a profile went: `path`; `problem` says why it is not where it was asked."""

    path: str
    problem: str | None = None


def save(profile: Profile, path: str, format: str, **options: Any) -> Saved:
    """Write `profile` to `path`, or, when that fails, to a new file in the temp dir (or
    the current folder) named after it. Raises OSError only when every place failed."""
    try:
        write(profile, path, format, **options)
        return Saved(os.path.abspath(path))
    except OSError as exc:
        problem = f"could not write {path}: {exc.strerror or exc}"
    name = os.path.basename(os.path.normpath(path)) or "profile"
    last: OSError | None = None
    import tempfile  # only when a write failed: spares every start its import

    for folder in (tempfile.gettempdir(), os.getcwd()):
        try:
            fd, fallback = tempfile.mkstemp(prefix="spy_magic-", suffix=f"-{name}", dir=folder)
        except OSError as exc:
            last = exc
            continue
        os.close(fd)
        try:
            write(profile, fallback, format, **options)
        except OSError as exc:
            last = exc
            with contextlib.suppress(OSError):
                os.unlink(fallback)
            continue
        return Saved(os.path.abspath(fallback), problem)
    raise OSError(f"{problem}; nor in the temp dir or the current folder: {last}")
