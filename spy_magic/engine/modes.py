"""The profile modes: which threads a sample keeps. One table for the CLI, the API and
the magics (README "Modes" says the same per version).

- `wall`: every thread, running or waiting (wall-clock time). All versions.
- `cpu`: threads the OS reports running (`/proc/PID/task/TID/stat` state R); a thread whose
  state is unknown is kept. All versions.
- `gil`: the thread holding the GIL. On a free-threaded build there is no GIL: the threads
  *attached* to the interpreter (running Python, `tstate->state`), which can be several.
  All versions.
- `exception`: threads handling an exception (inside an `except`/`finally` running on it, or
  code called from there: what `sys.exception()` says). Read from the thread state's
  `exc_info` chain; every build whose layout table has it (all of 3.8–3.15 and 3.13t–3.15t
  today; a build whose table lacks it is refused before sampling, naming why).
"""

from __future__ import annotations

MODES = ("wall", "cpu", "gil", "exception")


def mode_filters(mode: str) -> tuple[bool, bool]:
    """(keep idle threads, keep only the GIL holder) for a mode; exception mode keeps idle
    threads (a handler waiting on I/O is still handling) and adds its own filter."""
    if mode not in MODES:
        raise ValueError(f"unknown profile mode {mode!r}: one of {', '.join(MODES)}")
    return mode != "cpu", mode == "gil"


def mode_of(idle: bool, gil: bool) -> str:
    """The mode the older idle/gil switches amount to (gil wins: it implies running)."""
    if gil:
        return "gil"
    return "wall" if idle else "cpu"
