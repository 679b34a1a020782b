"""SIGTERM and SIGHUP end a command the way Ctrl-C does.

`timeout`, `kill`, systemd and `docker stop` send SIGTERM; a closed terminal sends SIGHUP.
Left to their default action either kills the process on the spot, and whatever it had
collected is lost. Inside `terminating_signals()` they raise `Terminated`, a
KeyboardInterrupt, so every place that stops cleanly on Ctrl-C stops cleanly on them too.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

TERMINATING = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """A terminating signal arrived; `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


@contextlib.contextmanager
def terminating_signals() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise `Terminated` in the main thread.

    A signal the process was told to ignore stays ignored (`nohup` ignores SIGHUP so that a
    closed terminal does not end the recording). Outside the main thread nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame) -> None:
        raise Terminated(signum)

    previous = {}
    for signum in TERMINATING:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
