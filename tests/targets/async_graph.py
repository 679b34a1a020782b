"""An asyncio program with named tasks in a known await graph, for the --async tests.

    root (main) --gather--> alpha, beta          (each: branch -> middle -> await its child)
    alpha --await--> alpha-spin, beta --await--> beta-spin   (spin: burn CPU, then sleep(0))

Once every task has started it prints one JSON line, its own view of the graph: for each task
of asyncio.all_tasks(), its name, its coroutine chain (get_coro() and each cr_await that is a
coroutine, outermost first) and the names of the tasks awaiting it. argv[1], if given, is a
file whose existence ends the program; argv[2], if given, the seconds after which it ends
anyway.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

STOP = sys.argv[1] if len(sys.argv) > 1 else None
LIFETIME = float(sys.argv[2]) if len(sys.argv) > 2 else None
STARTED = time.monotonic()
AWAITED_BY: dict[str, str] = {}  # task name -> the task awaiting it, as the program built it


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def spin(name: str) -> None:
    while True:
        burn(0.003)
        await asyncio.sleep(0)


async def middle(name: str) -> None:
    child = asyncio.create_task(spin(name), name=f"{name}-spin")
    AWAITED_BY[child.get_name()] = name
    await child


async def branch(name: str) -> None:
    await middle(name)


def chain(task: asyncio.Task) -> list[str]:
    out, coro = [], task.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        out.append(coro.cr_code.co_name)
        coro = coro.cr_await
    return out


def awaiters(task: asyncio.Task) -> list[str]:
    capture = getattr(asyncio, "capture_call_graph", None)  # 3.14+: the runtime's own view
    if capture is not None:
        graph = capture(task)
        return sorted(f.future.get_name() for f in graph.awaited_by)
    return [AWAITED_BY[task.get_name()]] if task.get_name() in AWAITED_BY else []


async def report() -> None:
    await asyncio.sleep(0.2)
    while len(asyncio.all_tasks()) < 6:  # root, alpha, beta, their spins, this one
        await asyncio.sleep(0.01)
    me = asyncio.current_task()
    view = [
        {"name": t.get_name(), "chain": chain(t), "awaited_by": awaiters(t)}
        for t in asyncio.all_tasks()
        if t is not me
    ]
    print(json.dumps({"pid": os.getpid(), "tasks": view}), flush=True)
    while STOP is None or not os.path.exists(STOP):
        if LIFETIME is not None and time.monotonic() - STARTED > LIFETIME:
            break
        await asyncio.sleep(0.05)
    os._exit(0)


async def main() -> None:
    asyncio.current_task().set_name("root")
    reporter = asyncio.create_task(report(), name="reporter")
    tasks = [asyncio.create_task(branch(n), name=n) for n in ("alpha", "beta")]
    for t in tasks:
        AWAITED_BY[t.get_name()] = "root"
    await asyncio.gather(*tasks, reporter)


asyncio.run(main())
