# -*- coding: utf-8 -*-
"""A target process whose every thread is parked forever at a known place.

Runs unchanged on CPython 3.8 to 3.13 (no 3.9+ syntax or APIs).

Each thread blocks on PARK, a threading.Event that is never set, at the bottom of a nest of
calls chosen to exercise one way of reaching a frame (deep recursion, methods and nested
functions, lambdas, generators, coroutines, calls through C, non-ASCII names of each unicode
kind, exec'd code, huge line numbers). The main thread parks too.

Once every thread is blocked, a "reporter" thread builds the process's own view of every
thread except itself (sys._current_frames() walked through f_back, names from co_qualname on
3.11+ or co_name before, threading names and native ids), prints it as ONE JSON line on
stdout and exits. Everything else stays parked until the process is killed.

The JSON line is an object:
    {"pid", "version": [major, minor, micro], "executable",
     "reporter": {"thread_id", "native_id"},
     "threads": [{"thread_id", "native_id", "name", "frames": [
         {"name", "filename", "line", "firstlineno"}, ...]}]}     (frames innermost first)
or, when the target could not park everything in time, {"error": "..."} (and it exits 1).
"""

import _thread
import asyncio
import inspect
import json
import os
import sys
import threading
import time
import traceback

PARK = threading.Event()  # never set: whoever waits on it stays put
REPORT_TIMEOUT = 60.0
RECURSION_DEPTH = 500
HUGE_LINENO_NEWLINES = 1000000
GAP_LINES = 100000
UNICODE_THREAD_NAME = u"ünïcode-线程-\U00020000"

_registry_lock = threading.Lock()
REGISTRY = {}  # thread ident -> native id, filled in by each parking thread itself


def register():
    with _registry_lock:
        REGISTRY[threading.get_ident()] = threading.get_native_id()


def park():
    """Block forever. Innermost frames become threading's Event.wait -> Condition.wait."""
    register()
    PARK.wait()


# --- recursion ---------------------------------------------------------------------------


def recurse(n):
    if n <= 1:
        park()
    else:
        recurse(n - 1)


def run_recursion():
    recurse(RECURSION_DEPTH)


# --- methods, nested functions, lambdas ----------------------------------------------------


class Outer:
    def method(self):
        def inner():
            lam = lambda: park()  # noqa: E731 - the point is a lambda frame
            lam()

        inner()

    class Nested:
        @staticmethod
        def static_entry():
            Outer().method()

    @classmethod
    def class_entry(cls):
        cls.Nested.static_entry()


def run_methods():
    Outer.class_entry()


MODULE_LAMBDA = lambda: park()  # noqa: E731


def run_lambdas():
    (lambda: MODULE_LAMBDA())()


# --- generators, comprehensions ------------------------------------------------------------


def gen_inner():
    yield 1
    park()
    yield 2


def gen_outer():
    yield 0
    yield from gen_inner()


def run_generators():
    for _ in gen_outer():
        pass


def park_value(x):
    park()
    return x


def run_comprehensions():
    # a list comprehension (its own frame before 3.12, inlined from 3.12 on, PEP 709)
    # iterating a generator expression (always a frame) driven through C
    return [y for y in (park_value(x) for x in [1, 2])]


# --- coroutines ----------------------------------------------------------------------------


async def coro_inner():
    park()  # a synchronous, blocking call inside a coroutine


async def coro_outer():
    await coro_inner()


def run_asyncio():
    asyncio.run(coro_outer())


# --- calls through C -----------------------------------------------------------------------


def sort_key(x):
    park()
    return x


def run_sorted():
    return sorted([3, 1, 2], key=sort_key)


def map_function(x):
    park()
    return x


def run_map():
    return list(map(map_function, [1, 2, 3]))


# --- non-ASCII names: 1-byte (latin-1), 2-byte (CJK), 4-byte (astral) unicode kinds --------


def função():
    park()


def 函数():
    função()


def 𠀀():
    函数()


class Ünïcödé:
    def método_函数(self):
        𠀀()


def run_unicode():
    Ünïcödé().método_函数()


# --- exec'd code and huge line numbers -----------------------------------------------------

EXEC_SOURCE = "def exec_function():\n    park()\n\nexec_function()\n"

HUGE_LINENO_FILENAME = "<huge-lineno>"
HUGE_LINENO_SOURCE = (
    "\n" * HUGE_LINENO_NEWLINES + "def huge_lineno_function():\n    marker = 1\n    park()\n"
)

GAP_FILENAME = u"<gap-lines-函数>"
GAP_SOURCE = (
    "def gap_function():\n    marker = 1\n" + "\n" * GAP_LINES + "    marker += 1\n    park()\n"
)


def run_exec():
    exec(EXEC_SOURCE, {"park": park})


def compiled_function(source, filename, name):
    namespace = {"park": park}
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def run_huge_lineno():
    compiled_function(HUGE_LINENO_SOURCE, HUGE_LINENO_FILENAME, "huge_lineno_function")()


def run_gap():
    compiled_function(GAP_SOURCE, GAP_FILENAME, "gap_function")()


# --- a thread threading does not know about -------------------------------------------------


def raw_thread_parks():
    park()


# --- the threads -----------------------------------------------------------------------------

THREADS = [
    ("recursion-500", run_recursion),
    ("methods", run_methods),
    ("lambdas", run_lambdas),
    ("generators", run_generators),
    ("comprehensions", run_comprehensions),
    ("asyncio", run_asyncio),
    ("through-C-sorted", run_sorted),
    ("through-C-map", run_map),
    (UNICODE_THREAD_NAME, run_unicode),
    ("exec-string", run_exec),
    ("huge-lineno", run_huge_lineno),
    ("gap-lines", run_gap),
]
# + the main thread + one thread started with _thread.start_new_thread
EXPECTED_PARKED = len(THREADS) + 2


# --- the reporter --------------------------------------------------------------------------


def _acquire_line():
    """The line of Condition.wait where a wait without a timeout blocks: `waiter.acquire()`."""
    lines, first = inspect.getsourcelines(threading.Condition.wait)
    in_no_timeout_branch = False
    for i, text in enumerate(lines):
        if text.strip() == "if timeout is None:":
            in_no_timeout_branch = True
        elif in_no_timeout_branch and text.strip() == "waiter.acquire()":
            return first + i
    raise RuntimeError("cannot find `waiter.acquire()` in threading.Condition.wait")


def frame_name(code):
    return getattr(code, "co_qualname", code.co_name)


def is_parked(frame, acquire_line):
    """True when `frame` (a thread's innermost) is blocked in PARK.wait() for good."""
    if frame is None or frame.f_back is None:
        return False
    code, caller = frame.f_code, frame.f_back.f_code
    return (
        code is threading.Condition.wait.__code__
        and frame.f_lineno == acquire_line
        and caller is threading.Event.wait.__code__
        and frame.f_back.f_back is not None
        and frame.f_back.f_back.f_code is park.__code__
    )


def describe_stack(frame):
    """The thread's frames, innermost first, cross-checked against traceback."""
    frames = []
    f = frame
    while f is not None:
        code = f.f_code
        frames.append(
            {
                "name": frame_name(code),
                "filename": code.co_filename,
                "line": f.f_lineno,
                "firstlineno": code.co_firstlineno,
            }
        )
        f = f.f_back
    summary = list(reversed(traceback.extract_stack(frame)))
    if len(summary) != len(frames):
        raise AssertionError("traceback sees %d frames, f_back %d" % (len(summary), len(frames)))
    f = frame
    for mine, theirs in zip(frames, summary):
        if (mine["line"], f.f_code.co_name, mine["filename"]) != (
            theirs.lineno,
            theirs.name,
            theirs.filename,
        ):
            raise AssertionError("frame %r disagrees with traceback's %r" % (mine, theirs))
        f = f.f_back
    return frames


def build_view(acquire_line):
    me = threading.get_ident()
    names = dict((t.ident, t.name) for t in threading.enumerate())
    native_ids = dict((t.ident, t.native_id) for t in threading.enumerate())
    current = sys._current_frames()
    with _registry_lock:
        registry = dict(REGISTRY)
    others = dict((ident, f) for ident, f in current.items() if ident != me)
    if len(registry) != EXPECTED_PARKED or set(others) != set(registry):
        return None
    if not all(is_parked(f, acquire_line) for f in others.values()):
        return None
    threads = []
    for ident, f in others.items():
        if ident in native_ids and native_ids[ident] != registry[ident]:
            raise AssertionError(
                "thread %r: Thread.native_id %r != get_native_id() %r"
                % (names.get(ident), native_ids[ident], registry[ident])
            )
        threads.append(
            {
                "thread_id": ident,
                "native_id": registry[ident],
                "name": names.get(ident),
                "frames": describe_stack(f),
            }
        )
    return {
        "pid": os.getpid(),
        "version": list(sys.version_info[:3]),
        "executable": sys.executable,
        "reporter": {"thread_id": me, "native_id": threading.get_native_id()},
        "threads": threads,
    }


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def report():
    try:
        acquire_line = _acquire_line()
        deadline = time.monotonic() + REPORT_TIMEOUT
        view = None
        while view is None:
            view = build_view(acquire_line)
            if view is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "threads not all parked after %ss: registered %d of %d"
                        % (REPORT_TIMEOUT, len(REGISTRY), EXPECTED_PARKED)
                    )
                time.sleep(0.005)
        # a second look: nothing may have moved
        time.sleep(0.02)
        again = build_view(acquire_line)
        if again != view:
            raise RuntimeError("the parked threads moved between two snapshots")
        emit(view)
    except BaseException as e:  # report, then give up: the test shows this message
        emit({"error": "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())})
        os._exit(1)


# --- main ----------------------------------------------------------------------------------


def main_thread_parks():
    park()


def main():
    for name, target in THREADS:
        threading.Thread(target=target, name=name, daemon=True).start()
    _thread.start_new_thread(raw_thread_parks, ())
    threading.Thread(target=report, name="reporter", daemon=True).start()
    main_thread_parks()


if __name__ == "__main__":
    main()
