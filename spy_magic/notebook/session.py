"""Kernel side of a profiling session: start the helper, take what it sends.

session = RemoteSession(os.getpid(), {"rate": 100}, context=CellContext(...)).start()
...                      # the cell runs; on_summary hears from the helper about once a second
profile = session.stop(context)   # the finished profile, trimmed by the helper

The helper does the sampling, the trimming and the aggregating (see `helper.py`, and
`protocol.py` for the messages); this side only blocks on a pipe read, so the cell it
measures keeps its CPU and its GIL.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import subprocess
import sys
import threading
from typing import Callable

from ..profile import Profile
from ..reader import ReaderError
from . import protocol
from .cells import CellContext

PR_SET_PTRACER = 0x59616D61  # Yama: let this pid ptrace us
START_TIMEOUT = 30.0
REAP_TIMEOUT = 5.0  # seconds for a killed helper to be reaped

# Every session whose helper may still run: ended when this process exits (a kernel shut down
# or restarted), so no helper outlives the kernel that started it.
_live: set[RemoteSession] = set()
_live_lock = threading.Lock()


class SessionError(ReaderError):
    """The helper could not sample the target; the message says why."""


def allow_ptrace_by(pid: int) -> bool:
    """Under Yama ptrace_scope=1 a child may not read its parent unless the parent says so.

    Returns False where the call is unavailable or refused (no Yama: nothing to allow).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PTRACER, ctypes.c_ulong(pid), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


_NEGATABLE = {"idle", "gc"}  # options whose default is on: False must be said


def _option_args(options: dict) -> list[str]:
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or (value is False and key not in _NEGATABLE):
            continue
        if key in _NEGATABLE:
            args.append(flag if value else "--no-" + flag[2:])
        elif value is True:
            args.append(flag)
        else:
            args += [flag, str(value)]
    return args


class RemoteSession:
    """Samples `pid` from a helper process. While it runs, `summary` is the helper's latest
    live summary (and `on_summary` is called with each, on the session's reader thread);
    once it ended, `profile` is the finished profile, trimmed with `context` (the one given
    to `stop`, else the one the session started with; None: not trimmed).

    The profile arrives as aggregates (`keep_samples=False`: every notebook view draws from
    them), so the kernel's memory does not grow with the cell's length. `samples=True` asks
    the helper for the samples too, for the `-o` formats that need every one
    (`exports.NEEDS_SAMPLES`): the kernel then holds them, as the file needs them all. When
    the helper's output cannot be read, or it dies before sending the profile, `error` says
    so and `summary` still holds the last live summary."""

    def __init__(
        self,
        pid: int,
        options: dict | None = None,
        *,
        python: str = sys.executable,
        context: CellContext | None = None,
        on_summary: Callable[[dict], None] | None = None,
        samples: bool = False,
    ) -> None:
        self.pid = pid
        self.options = dict(options or {})
        self.python = python
        self.context = context
        self.on_summary = on_summary
        self.samples = samples
        self.profile = Profile(keep_samples=False)
        self.summary: dict | None = None
        self.error: str | None = None
        self.finished = threading.Event()  # everything the helper will send is in
        self.ended = threading.Event()  # and the helper is gone (reaped)
        self._started = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = START_TIMEOUT) -> RemoteSession:
        """Start the helper and wait until it samples. On any failure, an interrupt
        (KeyboardInterrupt) included, the helper is killed before the exception goes on."""
        try:
            self._launch()
            self._thread = threading.Thread(
                target=self._collect, name="spy_magic-collect", daemon=True
            )
            self._thread.start()
            context = None if self.context is None else self.context.to_json()
            self._send(protocol.encode("go", protocol=protocol.PROTOCOL_VERSION,
                                       context=context, samples=self.samples))  # fmt: skip
            self._started.wait(timeout)
        except BaseException:
            self._abandon()
            raise
        if self.error is not None:
            self._abandon()
            raise SessionError(self.error)
        if not self._started.is_set():
            self._abandon()
            raise SessionError(f"the sampling helper did not start within {timeout:g} s")
        return self

    def _launch(self) -> None:
        cmd = [self.python, "-m", "spy_magic.notebook.helper", "--pid", str(self.pid)]
        cmd += ["--parent", str(os.getpid())]  # the helper ends when this process is gone
        if threading.current_thread() is threading.main_thread():
            cmd.append("--die-with-parent")  # this thread ends with the process: the OS may
            # kill the helper then (PR_SET_PDEATHSIG fires when the starting *thread* exits)
        cmd += _option_args(self.options)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.dirname(os.path.dirname(os.path.dirname(__file__)))]
            + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        with _live_lock:
            _live.add(self)
        self._process = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", env=env, start_new_session=True,
        )  # fmt: skip
        if self.pid == os.getpid():
            allow_ptrace_by(self._process.pid)

    def _abandon(self) -> None:
        """End the helper now, whatever it is doing (what it sampled is dropped).

        SIGKILL first, so that a second interrupt cannot come between; a helper killed while
        it holds the target's threads paused lets them go (the OS detaches a dead tracer's
        tracees). A helper still starting up reads EOF on its closed stdin and returns.
        """
        process = self._process
        collecting = self._thread is not None and self._thread.is_alive()
        if process is not None:
            with contextlib.suppress(OSError):
                process.kill()
            # The collector, if any, reads stdout to its end and closes the rest itself.
            streams = [process.stdin] if collecting else [process.stdin, process.stdout,
                                                          process.stderr]  # fmt: skip
            for stream in streams:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    stream.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(REAP_TIMEOUT)
        if not collecting:  # no collector to say it ended
            self._started.set()
            self.finished.set()
            self.ended.set()
        with _live_lock:
            _live.discard(self)

    def _send(self, line: str) -> None:
        try:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def _collect(self) -> None:
        stream = self._process.stdout
        greeted = False
        try:
            for line in stream:  # blocks, GIL released, until the helper says something
                if not line.endswith("\n"):  # the helper died while writing it
                    raise protocol.ProtocolError(
                        f"the sampling helper's output broke off in a message after "
                        f"{len(line):,} characters: {line[:40]!r}…")  # fmt: skip
                message = protocol.decode(line, protocol.HELPER_MESSAGES)
                kind = message["type"]
                if not greeted:
                    if kind != "hello":
                        raise protocol.ProtocolError(f"expected hello first, got {kind!r}")
                    protocol.check_version(message, "the sampling helper")
                    greeted = True
                elif kind == "summary":
                    self.summary = message
                    if self.on_summary is not None:
                        with contextlib.suppress(Exception):  # a view never stops sampling
                            self.on_summary(message)
                elif kind == "profile":
                    metadata = self.profile.metadata  # what "started" said, if it is broken
                    try:
                        self.profile = protocol.decode_profile(message.get("profile"))
                    except protocol.ProtocolError as exc:
                        self.profile.metadata = metadata
                        raise protocol.ProtocolError(
                            f"the finished profile could not be read ({exc})") from None
                elif kind == "started":
                    self.profile.metadata.update(message.get("metadata") or {})
                    self._started.set()
                elif kind == "end":
                    self.error = message.get("error")
                    if self._started.is_set():
                        self.finished.set()  # stop() can return; the exit is reaped below
        except protocol.ProtocolError as exc:
            self.error = self.error or str(exc)
            with contextlib.suppress(OSError):
                self._process.kill()
        except (ValueError, OSError) as exc:
            self.error = self.error or f"the sampling helper's output broke off: {exc}"
        else:
            if self._started.is_set() and not self.finished.is_set() and self.error is None:
                self.error = "the sampling helper ended before it sent the finished profile"
        finally:
            code = self._process.wait()
            if self.error is None and not self._started.is_set():
                try:
                    stderr = self._process.stderr.read().strip().splitlines()
                except (OSError, ValueError):
                    stderr = []
                self.error = stderr[-1] if stderr else f"the sampling helper exited ({code})"
            with contextlib.suppress(OSError, ValueError):
                self._process.stdin.close()
            with _live_lock:
                _live.discard(self)
            self._started.set()
            self.finished.set()
            self.ended.set()

    def update_context(self, context: CellContext) -> None:
        """The cell's context changed (a thread of its own started): trim with this one."""
        self.context = context
        if self.running:
            self._send(protocol.encode("context", context=context.to_json()))

    @property
    def running(self) -> bool:
        return not self.ended.is_set()

    def stop(self, context: CellContext | None = None, timeout: float = 60.0) -> Profile:
        """Stop sampling; everything collected so far is in the returned profile, trimmed
        with `context` (else the last one given).

        Safe to call again, and on a session that never (or only half) started; interrupted
        (a second KeyboardInterrupt), it kills the helper before the exception goes on.
        """
        if self._process is None or self.finished.is_set():
            return self.profile
        try:
            if self._thread is None:  # started the helper but never collected: nothing to keep
                self._abandon()
                return self.profile
            if context is not None:
                self.context = context
            final = None if self.context is None else self.context.to_json()
            self._send(protocol.encode("stop", context=final))
            self.finished.wait(timeout)
            if not self.finished.is_set():
                self._process.kill()
                self.ended.wait(timeout)
        except BaseException:
            self._abandon()
            raise
        return self.profile


@atexit.register
def _end_helpers() -> None:
    """This process is exiting (a kernel shutting down or restarting): end its helpers."""
    with _live_lock:
        sessions = list(_live)
    for session in sessions:
        with contextlib.suppress(Exception):
            session._abandon()
