"""The IPython magics: %%spy, %spy_attach, %spy_stop, %spy_dump."""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import dataclasses
import inspect
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from types import TracebackType

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display

from ..cli.dump import format_dump
from ..cli.options import add_sampling_options, sampler_options
from ..cli.output import output_problem, save
from ..cli.record import EXTENSIONS, resolve_format
from ..engine import InProcessSampler, Sampler
from ..profile import Profile
from ..profile.exports import LOSSLESS_FORMATS, NEEDS_SAMPLES
from ..reader import ReaderError, StackReader
from ..reader.errors import NoSuchProcess, NotPython
from ..reader.process import find_interpreter
from . import protocol
from .cells import CellContext, LiveTrim, Trimmer
from .session import RemoteSession, SessionError
from .views import profile_bundle
from .widgets import TopWidget, close_widgets

LIVE_REFRESH_S = 1.0  # the in-process fallback's live view (the helper's: SUMMARY_EVERY_S)
SETTLED_S = 1.0  # a process older than this that is not Python will not become Python


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad line as a one-line UsageError instead of exiting."""

    def error(self, message: str) -> None:
        raise UsageError(f"{self.prog}: {message} (see {self.prog}? for the options)")

    def exit(self, status: int = 0, message: str | None = None) -> None:
        if message:
            raise UsageError(message.strip())
        raise UsageError(self.format_help())


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", action="store_true", help="a root frame per thread (-o)")
    parser.add_argument("--function", action="store_true", help="aggregate by function")
    parser.add_argument("-o", "--output", help="also write the profile to this file")
    parser.add_argument(
        "--format", "-f", choices=sorted(EXTENSIONS), default=None,
        help="format for -o (default: from its extension, else html)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="display nothing")
    parser.add_argument("--lag", action="store_true", help="also show the sampling-lag plot")


def _spy_parser() -> _Parser:
    parser = _Parser(prog="%%spy", add_help=False, description="Profile the cell as it runs.")
    add_sampling_options(parser, short_rate=False)
    _output_options(parser)
    parser.add_argument(
        "-r", "--return", dest="return_profile", action="store_true",
        help="return the Profile instead of the cell's value (like %%prun -r); it holds "
        "aggregates, and every sample only with an -o format that needs them (jsonl, binary)",
    )  # fmt: skip
    parser.add_argument(
        "--subprocess", action="store_true",
        help="run the cell in a fresh Python process (isolated: no shared variables)",
    )  # fmt: skip
    parser.add_argument("--python", help="the interpreter for --subprocess (default: this one)")
    parser.add_argument("--save", metavar="NAME", help="keep this run as NAME for --baseline")
    parser.add_argument(
        "--baseline", metavar="NAME",
        help="colour the flame graph by the change against the run saved as NAME (or a "
        "recording file)",
    )  # fmt: skip
    return parser


def _attach_parser() -> _Parser:
    parser = _Parser(prog="%spy_attach", add_help=False, description="Sample another process.")
    parser.add_argument("pid", type=int, help="the process to sample")
    add_sampling_options(parser, short_rate=False)
    _output_options(parser)
    return parser


SPY_PARSER = _spy_parser()
ATTACH_PARSER = _attach_parser()


def _parse(parser: _Parser, line: str) -> argparse.Namespace:
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{parser.prog}: {exc}") from None
    return parser.parse_args(words)


def live_status(label: str, summary: dict | None, state: str = "sampling") -> str:
    """The live view's status line: elapsed, samples, achieved vs asked rate (and the
    rate now, once the sampler lowered it)."""
    if not summary:
        return f"{label}: {state}…"
    asked, achieved, now = summary["asked_rate"], summary["achieved_rate"], summary["rate_now"]
    text = (
        f"{label}: {state}, {summary['elapsed']:.1f} s, {summary['samples']:,} samples, "
        f"{achieved:,.0f} Hz of {asked:,.0f} asked"
    )
    if now is not None and asked and now < asked * 0.99:
        text += f" (lowered to {now:,.0f} Hz: the sampler could not keep up)"
    return text


class _LiveView:
    """Shows a session's live summaries in a TopWidget (from the session's reader thread,
    about once a second: the kernel computes nothing for it)."""

    def __init__(self, widget: TopWidget, label: str) -> None:
        self.widget = widget
        self.label = label
        self.handle = None
        self.last: dict | None = None
        widget.show([], live_status(label, None))

    def __call__(self, summary: dict) -> None:
        self.last = summary
        with contextlib.suppress(Exception):  # a view must never break the profiled code
            self.widget.show(summary["rows"], live_status(self.label, summary))

    def final(self) -> None:
        with contextlib.suppress(Exception):
            rows = self.last["rows"] if self.last else []
            self.widget.show(rows, live_status(self.label, self.last, "done"))


def _check_output(args: argparse.Namespace, prog: str) -> None:
    """Refuse an `-o` that cannot be written before anything runs, not after the cell."""
    problem = resolve_format(args)
    if problem:
        raise UsageError(f"{prog}: {problem}; nothing was run")
    problem = output_problem(args.output) if args.output else None
    if problem:
        raise UsageError(f"{prog}: cannot write -o {args.output}: {problem}; nothing was run")


def _save(profile: Profile, args: argparse.Namespace, **options) -> None:
    """Write `-o`; a write that fails anyway (its folder removed meanwhile) goes to a file
    the warning names, and never costs the cell its value or its flame graph."""
    try:
        saved = save(profile, args.output, args.format, **options)
    except OSError as exc:
        print(f"spy_magic: warning: {exc}; the profile is only shown", file=sys.stderr)
        return
    if saved.problem:
        print(f"spy_magic: warning: {saved.problem}; wrote it to {saved.path} instead",
              file=sys.stderr)  # fmt: skip


def _cell_number(shell) -> int:
    """n of the running cell's In [n] (IPython 9 counts the cell before running it)."""
    running = getattr(shell.displayhook, "exec_result", None)
    return getattr(running, "execution_count", None) or shell.execution_count


class _InProcessSession:
    """The fallback when the kernel cannot be read from outside: sample from a thread (and
    trim and summarise in this process, as the helper would)."""

    def __init__(
        self, options: dict, context: CellContext | None = None, on_summary=None,
        keep_samples: bool = False,
    ) -> None:  # fmt: skip
        outside_only = ("subprocesses", "start_timeout", "nonblocking", "async_tasks")
        self.async_warning = (
            "task stacks are read from outside the kernel, which cannot be done here"
            if options.get("async_tasks") else None
        )  # fmt: skip
        options = {k: v for k, v in options.items() if k not in outside_only}
        self.sampler = InProcessSampler(**options)
        self.raw = Profile(keep_samples=keep_samples)  # samples only for an -o that needs them
        self.live = LiveTrim(self.raw, context)
        self.on_summary = on_summary
        self.sampler.add_collector(self.live.add)
        self._stopped = False
        self._done = threading.Event()
        self._started_at = time.monotonic()
        self.profile = self.raw

    def _summaries(self) -> None:
        while not self._done.wait(LIVE_REFRESH_S):
            with contextlib.suppress(Exception):
                self.on_summary(protocol.summary(
                    self.live.profile, elapsed=time.monotonic() - self._started_at,
                    asked_rate=self.sampler.asked_rate, rate_now=self.sampler.rate,
                ))  # fmt: skip

    def start(self) -> _InProcessSession:
        self.sampler.start()
        if self.on_summary is not None:
            threading.Thread(target=self._summaries, name="spy_magic-live", daemon=True).start()
        return self

    def update_context(self, context: CellContext) -> None:
        self.live.set_context(context)  # applied by the sampler's thread, between samples

    def stop(self, context: CellContext | None = None) -> Profile:
        if not self._stopped:
            self._stopped = True
            self._done.set()
            self.sampler.stop()
            self.sampler.join(10)
            if context is not None:
                self.live.set_context(context)
            self.live.settle()
            self.profile = self.live.profile
            self.profile.metadata.update(self.sampler.metadata())
            for change in self.sampler.rate_changes:
                self.profile.add_rate_change(change)
            if self.async_warning:
                self.profile.metadata["async_warning"] = self.async_warning
        return self.profile


@magics_class
class SpyMagics(Magics):
    """Sampling profiler magics (see `%%spy?`)."""

    def __init__(self, shell) -> None:
        super().__init__(shell)
        self.attachments: dict[int, dict] = {}
        self.finished_attachments: dict[int, Profile] = {}
        self._next_attachment = 1
        self._await_threads: set[int] = set()
        self.saved_runs: dict[str, Profile] = {}  # %%spy --save NAME, for --baseline NAME
        self._on_await_thread = None

    # -- %%spy ---------------------------------------------------------------------------------
    @cell_magic
    def spy(self, line: str, cell: str):
        __tracebackhide__ = True  # IPython leaves this frame out of tracebacks
        args = _parse(SPY_PARSER, line)
        _check_output(args, "%%spy")
        args.baseline_profile = self._baseline_of(args.baseline)
        if args.subprocess:
            return self._spy_subprocess(args, cell)
        if args.python:
            raise UsageError("%%spy: --python goes with --subprocess")
        self._await_threads = set()
        number = _cell_number(self.shell)
        source = self.shell.transform_cell(cell)
        filename = self.shell.compile.cache(source, number, raw_code=cell)
        body, last = self._compile(source, filename)

        options = sampler_options(args)
        pid = os.getpid()
        main_thread = frozenset({(pid, threading.get_ident())})
        context = CellContext(self._cell_files(), filename, main_thread)
        # Whatever happens from here on (an interrupt while the helper starts, an error in
        # the live view, a second interrupt while stopping), every session started for this
        # cell is stopped before the cell ends: no helper outlives its cell.
        opened: list = []
        live = None if args.quiet else _LiveView(TopWidget(), f"In [{number}]")
        started = time.perf_counter()
        try:
            try:
                session, fallback_note = self._start_session(
                    options, opened, context, live, samples=_needs_samples(args)
                )
            except BaseException:
                if live is not None:
                    close_widgets(live.widget)  # never shown: nothing to replace
                raise
            if live is not None:
                live.handle = display(live.widget, display_id=True)
            self._on_await_thread = lambda ident: session.update_context(
                dataclasses.replace(context, cell_threads=context.cell_threads | {(pid, ident)})
            )
            value = None
            failure: BaseException | None = None
            try:
                value = self._execute(body, last)
            except BaseException as exc:
                failure = exc
            ran = time.perf_counter() - started
            cell_threads = {(pid, t) for t in (threading.get_ident(), *self._await_threads)}
            final = CellContext(self._cell_files(), filename, frozenset(cell_threads))
            profile = session.stop(final)
        finally:
            self._on_await_thread = None
            for opened_session in opened:
                opened_session.stop()  # a no-op for one stopped already
        profile.metadata.update(cell=number, target=f"In [{number}]",
                                sources={f"In [{number}]": source})  # the cell heat map's
        notes = [fallback_note] if fallback_note else []
        failed = _session_failure(session)
        if failed:
            print(f"spy_magic: warning: {failed}", file=sys.stderr)
            notes.append(failed)
        elif profile.trace_count == 0:
            notes.append(_no_samples_hint(ran, options["rate"]))
        if notes:
            profile.metadata["note"] = "; ".join(notes)
            if args.quiet and profile.trace_count == 0:
                print(f"spy_magic: {notes[-1]}", file=sys.stderr)
        if profile.metadata.get("async_warning"):  # said, and the profile shown all the same
            print(f"spy_magic: warning: --async: {profile.metadata['async_warning']}",
                  file=sys.stderr)  # fmt: skip
        self._finish(profile, args, f"In [{number}]", live)
        if failure is not None:
            raise failure.with_traceback(_from_cell(failure.__traceback__, filename))
        if args.return_profile:
            return profile
        return value

    def _baseline_of(self, name: str | None) -> Profile | None:
        """The run saved as `name`, or the recording file it names; a clear error before
        the cell runs when it is neither."""
        if name is None:
            return None
        if name in self.saved_runs:
            return self.saved_runs[name]
        if os.path.isfile(name):
            from ..cli.loading import load_baseline

            baseline = load_baseline(name)  # says what was wrong with it
            if baseline is not None:
                return baseline
            raise UsageError(f"%%spy: --baseline {name}: no samples could be read from it")
        saved = ", ".join(sorted(self.saved_runs)) or "none yet"
        raise UsageError(f"%%spy: --baseline {name}: no run saved as {name!r} (saved: {saved}; "
                         "%%spy --save NAME keeps one) and no such file")  # fmt: skip

    def _diff_hook(self, profile: Profile, args: argparse.Namespace):
        """The diff against --baseline for the report, or None (said why) when the two
        cannot be compared."""
        baseline = getattr(args, "baseline_profile", None)
        if baseline is None:
            return None
        from ..profile.diff import DiffError

        try:
            diff = profile.diff(baseline)
        except DiffError as exc:
            print(f"spy_magic: --baseline {args.baseline}: {exc}; showing the profile without "
                  "a diff", file=sys.stderr)  # fmt: skip
            return None
        for note in diff.warnings:
            print(f"spy_magic: warning: --baseline {args.baseline}: {note}", file=sys.stderr)
        return diff

    def _compile(self, source: str, filename: str):
        """The cell as code: its body, and its last expression apart (to return its value)."""
        try:
            tree = ast.parse(source, filename)
        except SyntaxError:
            self.shell.showsyntaxerror()
            raise UsageError("%%spy: the cell has a syntax error; nothing was run") from None
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        flags = self.shell.compile.flags | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        body = compile(tree, filename, "exec", flags=flags, dont_inherit=True)
        expr = compile(last, filename, "eval", flags=flags, dont_inherit=True) if last else None
        return body, expr

    def _execute(self, body, last):
        namespace = self.shell.user_ns
        result = eval(body, namespace)
        if inspect.iscoroutine(result):
            self._run_coroutine(result)
        if last is None:
            return None
        value = eval(last, namespace)
        if inspect.iscoroutine(value) and last.co_flags & inspect.CO_COROUTINE:
            value = self._run_coroutine(value)
        return value

    def _run_coroutine(self, coro):
        """Top-level await: the kernel's own loop is busy running this cell, so the cell's
        coroutine runs to completion on a fresh loop in a worker thread."""
        outcome: dict = {}
        loop = asyncio.new_event_loop()
        task_box: list = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            task = loop.create_task(coro)
            task_box.append(task)
            try:
                outcome["value"] = loop.run_until_complete(task)
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                loop.close()

        worker = threading.Thread(target=run, name="spy_magic-await", daemon=True)
        worker.start()
        self._await_threads.add(worker.ident)
        if self._on_await_thread is not None:
            self._on_await_thread(worker.ident)  # the live view trims at it too
        try:
            while worker.is_alive():
                worker.join(0.05)
        except KeyboardInterrupt:
            if task_box:
                loop.call_soon_threadsafe(task_box[0].cancel)
            worker.join(10)
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    def _start_session(
        self, options: dict, opened: list, context: CellContext, live: _LiveView | None,
        samples: bool = False,
    ):  # fmt: skip
        """A started session sampling this kernel, and a note when it samples from inside.
        Each session is put in `opened` before it starts, for the caller to stop it whatever
        happens (RemoteSession.start cleans up after itself when it fails). `samples`: the
        helper sends the samples too (an `-o` format needs them), else only aggregates."""
        remote = RemoteSession(
            os.getpid(), options, context=context, on_summary=live, samples=samples
        )
        opened.append(remote)
        try:
            return remote.start(), None
        except (SessionError, ReaderError, OSError) as exc:
            note = (
                f"could not read the kernel from outside ({exc}); sampled from inside with "
                "sys._current_frames(), which is biased by the GIL"
            )
            print(f"spy_magic: {note}", file=sys.stderr)
            fallback = _InProcessSession(options, context, live, keep_samples=samples)
            opened.append(fallback)
            return fallback.start(), note

    def _cell_files(self) -> dict[str, int]:
        return dict(getattr(self.shell.compile, "_filename_map", {}))

    def _finish(
        self, profile: Profile, args: argparse.Namespace, title: str, live: _LiveView | None = None
    ) -> None:
        if args.output:
            options = {} if args.format in LOSSLESS_FORMATS else {
                "by": "function" if args.function or args.format == "pstats" else "line"
            }  # fmt: skip
            if args.format == "collapsed":
                options["threads"] = args.threads
            _save(profile, args, **options)
        if getattr(args, "save", None):
            self.saved_runs[args.save] = profile
        if args.quiet:
            return
        bundle = profile_bundle(profile, title, by="function" if args.function else "line",
                                baseline=self._diff_hook(profile, args))  # fmt: skip
        handle = getattr(live, "handle", None)
        if handle is not None:
            handle.update(bundle, raw=True)  # one output per cell: the live view becomes it
            close_widgets(live.widget)  # nothing left for a reopened notebook to miss
        else:
            display(bundle, raw=True)
        if args.lag:
            from .lagplot import lag_png

            display({"image/png": lag_png(profile)}, raw=True)

    def _spy_subprocess(self, args: argparse.Namespace, cell: str):
        """Run the cell's code in a fresh interpreter, sampled from the kernel."""
        python = args.python or sys.executable
        with tempfile.NamedTemporaryFile(
            "w", suffix=".py", prefix="spy_cell_", delete=False, encoding="utf-8"
        ) as fh:
            fh.write(cell)
            script = fh.name
        try:
            number = _cell_number(self.shell)
            # Each sample is trimmed as it comes into a profile of aggregates (and the
            # timeline): the kernel holds every sample only for an -o format that needs them.
            trimmer = Trimmer(CellContext({script: number}))
            profile = Profile(keep_samples=_needs_samples(args))
            options = sampler_options(args)
            try:
                process = subprocess.Popen(
                    [python, script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            except OSError as exc:
                raise UsageError(f"%%spy: cannot run {python}: {exc.strerror}") from None
            sampler = Sampler(process.pid, process=process, **options)
            sampler.add_collector(lambda sample: profile.add(trimmer.sample(sample)))
            sampler.start()
            interrupted = None
            try:
                for out_line in process.stdout:
                    print(out_line, end="")
                # The sampler may hold the process paused for a read until it exits, and a
                # wait from this process would then see that stop as an exit: let it end first.
                sampler.join()
                process.wait()
            except KeyboardInterrupt as exc:
                interrupted = exc
                process.kill()
                process.wait()
                sampler.stop()
            finally:
                sampler.join(10)
            profile.metadata.update(sampler.metadata())
            for change in sampler.rate_changes:
                profile.add_rate_change(change)
            profile.metadata["target"] = f"In [{number}] in {python}"
            if sampler.error is not None and profile.sample_count == 0:
                raise UsageError(f"%%spy --subprocess: {sampler.error}")
            self._finish(profile, args, f"In [{number}] (subprocess)")
            if interrupted is not None:
                raise interrupted
            if process.returncode:
                print(f"spy_magic: the subprocess exited with code {process.returncode}",
                      file=sys.stderr)  # fmt: skip
            return profile if args.return_profile else None
        finally:
            os.unlink(script)

    # -- %spy_attach / %spy_stop -----------------------------------------------------------
    @line_magic
    def spy_attach(self, line: str):
        args = _parse(ATTACH_PARSER, line)
        _check_output(args, "%spy_attach")
        _refuse_unreadable(args.pid)
        options = sampler_options(args)
        session = RemoteSession(args.pid, options, samples=_needs_samples(args))
        try:
            session.start()  # on any failure it ends its helper itself
        except (SessionError, ReaderError) as exc:
            raise UsageError(f"%spy_attach: {exc}") from None
        ident = self._next_attachment
        self._next_attachment += 1
        label = f"attachment {ident} (pid {args.pid})"
        entry = {"session": session, "args": args, "label": label}
        try:  # until the attachment is set up, a failure (or an interrupt) ends it
            self.attachments[ident] = entry
            # The "how to stop it" line is an output of its own, replaced once it stopped:
            # a saved notebook never tells to stop what no longer runs.
            entry["note"] = display(
                {"text/plain": f"spy_magic: sampling pid {args.pid} as {label}; "
                               f"%spy_stop {ident} to stop"},
                raw=True, display_id=True,
            )  # fmt: skip
            if not args.quiet:
                import ipywidgets

                live = _LiveView(TopWidget(), label)
                button = ipywidgets.Button(description="Stop", icon="stop", button_style="warning")
                button.on_click(lambda _: self._stop_attachment(ident))
                box = ipywidgets.VBox([button, live.widget])
                handle = display(box, display_id=True)
                entry.update(live=live, button=button, box=box, handle=handle)
                session.on_summary = live
            threading.Thread(
                target=self._await_end, args=(ident,), name="spy_magic-attach", daemon=True
            ).start()
        except BaseException:
            self.attachments.pop(ident, None)
            session.stop()
            raise

    def _await_end(self, ident: int) -> None:
        entry = self.attachments.get(ident)
        if entry is not None:
            entry["session"].finished.wait()
            self._stop_attachment(ident)

    def _stop_attachment(self, ident: int) -> Profile | None:
        entry = self.attachments.pop(ident, None)
        if entry is None:
            return None
        profile = entry["session"].stop()
        args = entry["args"]
        profile.metadata["target"] = f"pid {args.pid}"
        # Said in the profile (its report's header) and in the "stopped" line, not printed:
        # this may run on the attachment's own thread, while another cell is the current one.
        failed = _session_failure(entry["session"])
        if failed:
            profile.metadata["note"] = failed
        if "live" in entry:
            entry["live"].final()
        if "button" in entry:
            entry["button"].disabled = True
            entry["button"].description = "Stopped"
        if args.output:
            _save(profile, args)
        self.finished_attachments[ident] = profile
        if "note" in entry:
            entry["note"].update(
                {"text/plain": "" if "handle" in entry else (
                    f"spy_magic: {entry['label']} stopped: {profile.sample_count:,} samples "
                    f"over {profile.duration:.1f} s; %spy_stop {ident} returns its profile"
                    + (f"; warning: {failed}" if failed else ""))},
                raw=True,
            )  # fmt: skip
        if "handle" in entry:
            by = "function" if args.function else "line"
            entry["handle"].update(profile_bundle(profile, entry["label"], by=by), raw=True)
            close_widgets(entry["box"], entry["button"], entry["live"].widget)
        entry["profile"] = profile
        return profile

    @line_magic
    def spy_stop(self, line: str):
        """%spy_stop [ID ...|all]: stop attachments (all running ones by default); returns
        the profile(s). An attachment that already ended (its Stop button, its --duration,
        its process exiting) returns its profile again."""
        words = line.split()
        if not words or words == ["all"]:
            idents = list(self.attachments)
        else:
            try:
                idents = [int(w) for w in words]
            except ValueError:
                raise UsageError(f"%spy_stop: expected attachment numbers, got {line!r}") from None
        known = self.attachments.keys() | self.finished_attachments.keys()
        unknown = [i for i in idents if i not in known]
        if unknown:
            raise UsageError(f"%spy_stop: no attachment {unknown[0]}")
        if not idents:
            ended = sorted(self.finished_attachments)
            print("spy_magic: no attachment is running" + (
                f" (%spy_stop {ended[-1]} returns the profile of the last one)" if ended else ""))
            return None
        profiles = [
            self._stop_attachment(i) if i in self.attachments else None for i in idents
        ]
        # One that ended meanwhile (by itself, or a click) is in finished_attachments.
        profiles = [p if p is not None else self.finished_attachments[i]
                    for i, p in zip(idents, profiles)]  # fmt: skip
        return profiles[0] if len(profiles) == 1 else profiles

    # -- %spy_dump ---------------------------------------------------------------------------
    @line_magic
    def spy_dump(self, line: str):
        """%spy_dump [--json] PID: print every thread's Python stack in that process (as
        `spy_magic dump`; --json as JSON)."""
        words = line.split()
        as_json = "--json" in words
        words = [w for w in words if w != "--json"]
        if len(words) != 1 or not words[0].isdigit():
            raise UsageError("usage: %spy_dump [--json] PID")
        pid = int(words[0])
        try:
            with StackReader(pid) as reader:
                threads = reader.read()
                if as_json:
                    print(json.dumps([t.to_dict() for t in threads], indent=2, ensure_ascii=True))
                else:
                    print(format_dump(pid, reader.version, reader.interpreter.binary, threads,
                                      reader.free_threaded))  # fmt: skip
        except ReaderError as exc:
            raise UsageError(f"%spy_dump: {exc}") from None


def _process_age(pid: int) -> float | None:
    """Seconds since `pid` started, from /proc (None when it cannot be told)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def _refuse_unreadable(pid: int) -> None:
    """Fail at once, as the command line does, for a pid that is gone or a process that is
    not Python and has run long enough not to be a Python still starting (the helper would
    retry for its --start-timeout first). Anything else is left to the helper to report."""
    try:
        find_interpreter(pid)
    except NoSuchProcess as exc:
        raise UsageError(f"%spy_attach: {exc}") from None
    except NotPython as exc:
        age = _process_age(pid)
        if age is not None and age > SETTLED_S:
            raise UsageError(f"%spy_attach: {exc}") from None
    except (ReaderError, OSError):
        pass


def _needs_samples(args: argparse.Namespace) -> bool:
    """Whether the helper must send every sample, not only the aggregates: the `-o` formats
    that show samples in time order or keep them all (NEEDS_SAMPLES). Every view the
    notebook shows draws from the aggregates."""
    return bool(args.output) and args.format in NEEDS_SAMPLES


def _session_failure(session) -> str | None:
    """What went wrong with a helper after it started sampling (its output broke off, or
    it died before the finished profile), with what its last live summary had counted;
    None when nothing did."""
    error = getattr(session, "error", None)
    if error is None or not isinstance(session, RemoteSession):
        return None
    last = session.summary
    counted = (
        f"; its last live summary counted {last['samples']:,} samples over "
        f"{last['elapsed']:.1f} s" if last else ""
    )  # fmt: skip
    return f"the sampling helper failed: {error}{counted}"


def _no_samples_hint(ran: float, rate: float) -> str:
    """Why a profile holds no stack of the cell, and what to do about it."""
    period = 1.0 / rate
    if ran < period * 3:
        higher = min(10_000, max(1_000, 10 ** math.ceil(math.log10(10 / max(ran, 1e-4)))))
        return (
            f"no samples of the cell: it ran {ran * 1e3:.1f} ms, about the {period * 1e3:g} ms "
            f"between samples at {rate:g} Hz (they come at random times); "
            f"try --rate {higher:g}, or profile a longer run"
        )
    return (
        f"no samples of the cell in its {ran:.2f} s: the sampler could not read it "
        "(see the errors in the header)"
    )


def _from_cell(tb: TracebackType | None, filename: str) -> TracebackType | None:
    """The traceback from the cell's own first frame on, as a plain cell's would read."""
    start = tb
    while start is not None and start.tb_frame.f_code.co_filename != filename:
        start = start.tb_next
    return start if start is not None else tb


def _help(parser: _Parser) -> str:
    return parser.format_help()


SpyMagics.spy.__doc__ = "Profile the cell as it runs (a sampling profiler).\n\n" + _help(SPY_PARSER)
SpyMagics.spy_attach.__doc__ = (
    "Sample another process in the background; a live table updates while the kernel stays\n"
    "usable. Stop it with the Stop button or %spy_stop.\n\n" + _help(ATTACH_PARSER)
)
__all__ = ["SpyMagics"]
