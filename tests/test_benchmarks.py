"""The benchmark suite still runs (a smoke test: one short round, not a measurement).

Speed figures live in benchmarks/ and are never asserted here; this only keeps the suite
from rotting: the workloads start, report their ground truth, and every table is printed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_head_to_head_runs_one_short_round():
    result = subprocess.run(
        [sys.executable, REPO / "benchmarks" / "head_to_head.py", "--rounds", "1",
         "--seconds", "0.5", "--memory-minutes", "0", "--only", "cpu shallow",
         "--only", "churn"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for heading in ("## 1. Attribution", "## 2. Target slowdown", "## 3. Torn samples"):
        assert heading in out, out
    rows = [line for line in out.splitlines() if line.startswith("| cpu shallow")]
    assert any("| spy_magic " in row for row in rows), out
    spy_rows = [row for row in rows if "| spy_magic " in row and "failed" not in row]
    assert spy_rows, f"spy_magic produced no attribution: {rows}"
    torn_table = out.split("## 3. Torn samples", 1)[1].splitlines()
    torn = next(line for line in torn_table if line.startswith("| spy_magic "))
    assert torn.split("|")[3].strip() == "0", f"impossible stacks shown: {torn}"
