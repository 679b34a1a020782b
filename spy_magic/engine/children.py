"""Finding the Python processes below a root process, as they come and go.

Every `interval` (100 ms) the watcher lists the root's descendants with psutil. Each new
process is classified once: Python (a ProcessSpy is made for it), not Python (ignored, and
never probed again while it runs the same executable), or not ready yet (probed again next
round, for a bounded time). A process is known by (pid, start time), so a reused pid is a new
process; a process that execs another program is classified again.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import psutil

from ..reader import NoSuchProcess, NotPython, NotReady, ProcessExited, ReaderError, StackReader
from .sample import ProcessLabel, SampleError
from .spy import ProcessSpy, ReaderFactory, command_label

DISCOVERY_INTERVAL = 0.1


@dataclass
class _Known:
    exe: str
    first_seen: float
    spy: ProcessSpy | None = None
    ignored: bool = False


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


class ChildWatcher:
    """Keeps `spies` up to date with the Python descendants of `root_pid`."""

    def __init__(
        self,
        root_pid: int,
        root_chain: tuple[ProcessLabel, ...],
        make_spy: Callable[[StackReader, tuple[ProcessLabel, ...]], ProcessSpy],
        *,
        reader_factory: ReaderFactory = StackReader,
        start_timeout: float = 5.0,
        interval: float = DISCOVERY_INTERVAL,
        on_error: Callable[[SampleError], None] = lambda error: None,
    ) -> None:
        self.root_pid = root_pid
        self.root_chain = root_chain
        self.make_spy = make_spy
        self.reader_factory = reader_factory
        self.start_timeout = start_timeout
        self.interval = interval
        self.on_error = on_error
        self._known: dict[tuple[int, float], _Known] = {}
        self._lock = threading.Lock()
        self._spies: list[ProcessSpy] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.probes = 0

    # -- what the sampling thread sees -----------------------------------------------------
    def spies(self) -> list[ProcessSpy]:
        with self._lock:
            return list(self._spies)

    def forget(self, spy: ProcessSpy) -> None:
        """The sampling thread found this child gone."""
        with self._lock:
            if spy in self._spies:
                self._spies.remove(spy)
        spy.close()

    # -- the discovery thread --------------------------------------------------------------
    def start(self) -> None:
        self.scan()
        self._thread = threading.Thread(target=self._run, name="spy_magic-children", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            spies, self._spies = self._spies, []
        for spy in spies:
            spy.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.scan()
            except psutil.NoSuchProcess:
                return  # the root is gone; the sampler notices on its own
            except Exception as exc:  # never let discovery kill sampling
                self.on_error(SampleError(self.root_pid, None, type(exc).__name__, str(exc)))

    def scan(self) -> None:
        """One discovery round."""
        self.rounds += 1
        root = psutil.Process(self.root_pid)
        try:
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        now = time.monotonic()
        alive: set[tuple[int, float]] = set()
        for child in children:
            if child.pid == os.getpid():
                continue  # the sampler itself (the notebook's helper is the kernel's child)
            try:
                key = (child.pid, child.create_time())
            except psutil.NoSuchProcess:
                continue
            alive.add(key)
            exe = _exe(child.pid)
            known = self._known.get(key)
            if known is not None and known.exe == exe:
                if known.spy is not None or known.ignored:
                    continue
            elif known is not None:
                # It exec'd another program: classify afresh.
                self._drop(known)
                known = None
            if known is None:
                known = self._known[key] = _Known(exe, now)
            self._classify(child, known, now)
        for key in [k for k in self._known if k not in alive]:
            self._drop(self._known.pop(key))

    def _classify(self, child: psutil.Process, known: _Known, now: float) -> None:
        self.probes += 1
        try:
            reader = self.reader_factory(child.pid)
        except NotPython:
            if now - known.first_seen > self.start_timeout or not _looks_like_python(known.exe):
                known.ignored = True
            return
        except NotReady:
            if now - known.first_seen > self.start_timeout:
                known.ignored = True
                self.on_error(
                    SampleError(
                        child.pid, None, "NotReady", f"child {child.pid} never became ready"
                    )
                )
            return
        except (ProcessExited, NoSuchProcess):
            known.ignored = True  # it ended before it could be read: nothing to report
            return
        except ReaderError as exc:
            known.ignored = True
            self.on_error(SampleError(child.pid, None, type(exc).__name__, str(exc)))
            return
        spy = self.make_spy(reader, self._chain(child))
        known.spy = spy
        with self._lock:
            self._spies.append(spy)

    def _chain(self, child: psutil.Process) -> tuple[ProcessLabel, ...]:
        """Labels of the processes from the root down to `child`'s parent."""
        lineage: list[ProcessLabel] = []
        try:
            for parent in child.parents():
                if parent.pid == self.root_pid:
                    break
                lineage.append(ProcessLabel(parent.pid, command_label(parent.pid)))
        except psutil.Error:
            pass
        return (*self.root_chain, *reversed(lineage))

    def _drop(self, known: _Known) -> None:
        if known.spy is not None:
            with self._lock:
                if known.spy in self._spies:
                    self._spies.remove(known.spy)
            known.spy.close()
            known.spy = None


def _looks_like_python(exe: str) -> bool:
    """A fresh fork of a Python parent, or a python executable still loading."""
    return "python" in os.path.basename(exe)
