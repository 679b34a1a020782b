"""docs/fault-matrix.md names a test for every promise it makes: each of them must exist.

A renamed or deleted test would leave a promise standing with nothing holding it.
"""

from __future__ import annotations

import ast
import re

from conftest import REPO

MATRIX = REPO / "docs" / "fault-matrix.md"
NAMED = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def test_every_test_the_matrix_names_exists():
    named = NAMED.findall(MATRIX.read_text())
    assert len(named) > 40, "the matrix names too few tests: was it cut?"
    missing = []
    for path, name in named:
        tree = ast.parse((REPO / path).read_text())
        functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        if name not in functions:
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/fault-matrix.md names tests that do not exist: {missing}"


def test_every_fault_test_file_is_in_the_matrix():
    text = MATRIX.read_text()
    files = sorted(p.name for p in (REPO / "tests").glob("test_faults*.py"))
    assert files, "no fault tests found"
    assert [f for f in files if f"tests/{f}::" not in text] == []
