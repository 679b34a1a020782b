"""Writes notebooks/tour.ipynb (without outputs) from the cells below.

    python notebooks/make_tour.py          # rewrite the notebook
    python notebooks/make_tour.py --check  # fail if the stored notebook differs

Edit the tour here, not in the .ipynb, so the notebook stays small and reviewable; the test
that executes it is tests/test_notebook.py::test_tour_notebook_runs_top_to_bottom.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

TOUR = Path(__file__).resolve().parent / "tour.ipynb"

CELLS: list[tuple[str, str]] = [
    (
        "markdown",
        """\
# A tour of spy_magic

`spy_magic` is a sampling profiler that lives in Jupyter. It never traces or pauses your
code: a small helper process reads the kernel's Python stacks **from outside** (like
`py-spy`, in pure Python) about 100 times a second, adds them up, and sends back a summary
a second and the finished profile. What you get for each profiled cell:

- a **live table** of the hottest functions while the cell runs;
- when it ends, a **report**: how the sampling went (duration, samples, rate achieved
  against asked, and a verdict in plain words), an **interactive flame graph** (zoom,
  search, tooltips with seconds beside every share, boxes by line or by function, per-thread
  and per-process filters) and a sortable table of each function's own and total time.
  It is plain HTML with its own script, so the saved notebook shows it again when reopened
  without the kernel, as do nbconvert pages; where scripts never run (GitHub, an untrusted
  copy) its header, table and a picture of the graph still show.

The profile is trimmed to your cell: the kernel's own machinery (ipykernel, tornado,
asyncio) is cut away and frames of notebook code read `In [n]`.

The whole tour runs in about half a minute. Reading another process needs Linux and ptrace
rights over it (the same user, or `--cap-add SYS_PTRACE` in Docker).""",
    ),
    ("code", "%load_ext spy_magic"),
    (
        "markdown",
        """\
## 1. Profile a cell: `%%spy`

The classic example: `function_a` sleeps 0.1 s and calls `function_b`, which sleeps 0.05 s
and calls `function_c`, which sleeps 0.01 s. Their own time is 62.5 %, 31.25 % and
6.25 % of the total. Profiles are wall-clock by default, so time spent sleeping or waiting
counts — which is what you want when you ask *why is this cell slow?*""",
    ),
    (
        "code",
        """\
%%spy
import time

def function_c():
    time.sleep(0.01)

def function_b():
    time.sleep(0.05)
    function_c()

def function_a():
    time.sleep(0.1)
    function_b()

for i in range(10):
    function_a()""",
    ),
    (
        "markdown",
        """\
The cell ran in the kernel's namespace as if it had not been profiled: `function_a` is
defined from now on, and a cell's last expression is still its value. Exceptions and
interrupts propagate too, after the profile of what ran is shown.

`-r` returns the `Profile` instead (like `%%prun -r`) and `-q` shows nothing, so the
measurement can be checked against the truth:""",
    ),
    (
        "code",
        """\
%%spy -r -q --rate 200
for i in range(8):
    function_a()""",
    ),
    (
        "code",
        """\
profile = _  # noqa: F821 - `_` is the previous cell's value: the Profile
traces = profile.trace_count  # thread stacks sampled (the kernel gets aggregates, not samples)
truth = {"function_a": 62.5, "function_b": 31.25, "function_c": 6.25}
print(f"{profile.sample_count} samples over {profile.duration:.2f} s\\n")
print(f"{'function':<12} {'measured':>9} {'true':>8}")
for stat in profile.functions(by="function"):
    if stat.name in truth:
        share = 100 * stat.self_count / traces
        print(f"{stat.name:<12} {share:8.1f}% {truth[stat.name]:7.2f}%")""",
    ),
    (
        "markdown",
        """\
## 2. CPU-bound code

Two pure-Python workloads in one cell. The flame graph shows how the time splits between
them, and the text list gives each function's own and total share.""",
    ),
    (
        "code",
        """\
%%spy
def is_prime(n):
    if n < 2:
        return False
    factor = 2
    while factor * factor <= n:
        if n % factor == 0:
            return False
        factor += 1
    return True

def count_primes(limit):
    return sum(1 for n in range(limit) if is_prime(n))

def longest_collatz(limit):
    best = (0, 0)
    for start in range(1, limit):
        n, steps = start, 0
        while n != 1:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            steps += 1
        best = max(best, (steps, start))
    return best

count_primes(40_000), longest_collatz(30_000)""",
    ),
    (
        "markdown",
        """\
## 3. Threads

Every Python thread is sampled. Here the main thread starts two workers — one computing,
one waiting on (simulated) I/O — and joins them. In the flame graph, pick a thread in the
thread filter to see it alone. `--no-idle` would drop threads the OS reports as sleeping
(leaving only the cruncher); `--gil` keeps only the thread holding the GIL.""",
    ),
    (
        "code",
        """\
%%spy
import threading

def crunch(seconds):
    end = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < end:
        total += sum(range(1000))
    return total

def wait_for_io(seconds):
    for i in range(int(seconds / 0.05)):
        time.sleep(0.05)  # stands for a socket read

workers = [
    threading.Thread(target=crunch, args=(1.0,), name="cruncher"),
    threading.Thread(target=wait_for_io, args=(1.0,), name="io-waiter"),
]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()""",
    ),
    (
        "markdown",
        """\
## 4. Worker processes: `--subprocesses`

With `--subprocesses` the helper also samples the kernel's Python child processes (it looks
for new ones every 100 ms); each process gets its own root in the flame graph.

A note on start methods: *fork* children inherit the kernel's memory, so they can run a
function defined in a cell, as below. *spawn* (the default on macOS and Windows) and
*forkserver* (Linux, Python 3.14+) children import the function by name, which fails for
cell code — there, put the worker function in a module (for example
`spy_magic.demos.pool_work.worker_task`).""",
    ),
    (
        "code",
        """\
%%spy --subprocesses
import multiprocessing

def sum_of_squares(n):
    return sum(i * i for i in range(n))

with multiprocessing.get_context("fork").Pool(3) as pool:
    results = pool.map(sum_of_squares, [1_500_000] * 6)
len(results)""",
    ),
    (
        "markdown",
        """\
## 5. Another process: `%spy_attach`

`%spy_attach PID` samples any Python process you may read, in the background: it returns
at once with a live table and a Stop button, and the kernel stays free. `%spy_stop` (or the
button) ends it and returns the `Profile`; the output then turns into the flame graph.
`--duration S` stops by itself. `%spy_dump PID` prints every thread's stack once.

Here the background process is the same example run as a script.""",
    ),
    (
        "code",
        """\
import subprocess
import sys

from spy_magic.demos import demo_path

background = subprocess.Popen([sys.executable, str(demo_path("slow_script")), "--repeat", "100"])
background.pid""",
    ),
    ("code", "%spy_attach {background.pid}"),
    (
        "code",
        """\
import time

time.sleep(0.5)
%spy_dump {background.pid}""",
    ),
    (
        "code",
        """\
time.sleep(1.5)  # the kernel is free while the attachment samples
attached = %spy_stop
background.kill()
background.wait()
attached""",
    ),
    (
        "markdown",
        """\
## 6. Did the sampler keep time?

Samples are taken at exponentially distributed intervals (so the schedule never locks onto
the program's own rhythm); a busy machine can make them late. The lag plot shows how late
samples were over time (the worst of each stretch), the distribution of lateness, and the
observed gaps against the exponential distribution they should follow. `%%spy --lag` adds
it under the profile; for a profile at hand:""",
    ),
    (
        "code",
        """\
from IPython.display import Image

from spy_magic.notebook.lagplot import lag_png

Image(lag_png(profile))""",
    ),
    (
        "markdown",
        """\
## 7. Export

`-o FILE --format F` also writes the profile: `html` (the offline flame graph page),
`collapsed` (for flamegraph.pl), `speedscope`, `chrometrace` (Perfetto, `chrome://tracing`)
or `jsonl` (every sample, lossless). `{name}` in the line expands a Python variable.""",
    ),
    (
        "code",
        """\
import os
import tempfile

export_dir = tempfile.mkdtemp(prefix="spy_magic-tour-")""",
    ),
    (
        "code",
        """\
%%spy -q -o {export_dir}/profile.speedscope.json --format speedscope
for i in range(3):
    function_a()""",
    ),
    (
        "code",
        """\
import json
import shutil

path = os.path.join(export_dir, "profile.speedscope.json")
with open(path, encoding="utf-8") as fh:
    document = json.load(fh)
names = ", ".join(p["name"] for p in document["profiles"])
print(f"{os.path.getsize(path)} bytes; {len(document['profiles'])} profile(s): {names}")
shutil.rmtree(export_dir)""",
    ),
    (
        "markdown",
        """\
## More

`%%spy?` lists every option: `--rate HZ`, `--idle/--no-idle`, `--gil`, `--subprocesses`,
`--function` (aggregate by function rather than line, for `-o`), `--threads` (a root per
thread, for `-o`), `--subprocess [--python PATH]` (run the cell in a fresh interpreter,
for example another Python version), `--lag`, `-o/--format`, `-r`, `-q`. The same
profiler runs from a shell: `python -m spy_magic record -- python script.py`.""",
    ),
]


def build() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    notebook.metadata["language_info"] = {"name": "python"}
    for index, (kind, source) in enumerate(CELLS):
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        cell = make(source)
        cell["id"] = f"tour-{index:02d}"  # stable ids: regenerating changes nothing
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    return notebook


def main(argv: list[str]) -> int:
    text = nbformat.writes(build()) + "\n"
    if "--check" in argv:
        if not TOUR.exists() or TOUR.read_text(encoding="utf-8") != text:
            print(f"{TOUR} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TOUR.write_text(text, encoding="utf-8")
    print(f"wrote {TOUR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
