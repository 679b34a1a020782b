"""Tests for spy_magic.reader.linetable against the interpreters themselves.

For every CPython 3.8 to 3.15 the tests know (pyenv, free-threaded 3.13t, sid's 3.14 and 3.15
in their root), a subprocess running that
interpreter compiles a mix of stdlib modules and synthetic code, and reports for each code object
its raw line table, co_firstlineno and, for every code-unit offset, the line the interpreter's own
``PyCode_Addr2Line`` gives (the function behind ``frame.f_lineno``), called through ctypes, plus
``co_lines()`` / ``co_positions()`` where they exist. The decoder, running in the test process,
must agree at every offset.
"""

from __future__ import annotations

import glob
import json
import os
import random
import subprocess
import sys
import time

import pytest
from conftest import require_interpreter

from spy_magic.reader.linetable import KINDS, LineTable, kind_for_version

# Every interpreter whose line tables differ in kind or compiler (skipped by name if absent).
INTERPRETERS = [f"pyenv-3.{minor}" for minor in range(8, 14)] + ["ft-3.13t", "sid-3.14", "sid-3.15"]


# Runs inside the interpreter under test, so it must stay valid Python 3.8.
DUMP_SCRIPT = r'''
import ctypes, json, os, sys, sysconfig

V = sys.version_info[:2]
addr2line = ctypes.pythonapi.PyCode_Addr2Line
addr2line.restype = ctypes.c_int
addr2line.argtypes = [ctypes.py_object, ctypes.c_int]

STDLIB = ["textwrap.py", "json/decoder.py", "argparse.py", "dataclasses.py", "contextlib.py",
          "asyncio/base_events.py", "difflib.py", "tokenize.py", "typing.py", "inspect.py",
          "enum.py", "collections/__init__.py", "subprocess.py", "ast.py", "functools.py",
          "email/_header_value_parser.py", "pydoc.py"]

GAP = "\n" * 100000

SYN = """

def deco(f):
    @functools.wraps(f)
    def wrapper(*a, **k):
        return f(*a, **k)
    return wrapper

@deco
@deco(
    1,
)
def decorated(x,
              y=2):
    return (x +
            y)

def loops(n):
    total = 0
    for i in range(n):
        j = 0
        while j < i:
            if j % 3 == 0:
                continue
            elif j % 7 == 0:
                break
            j += 1
            total += j
        else:
            total -= 1
    return total

def trying(x):
    try:
        y = 1 / x
    except ZeroDivisionError as e:
        y = None
    except (TypeError, ValueError):
        raise
    else:
        y += 1
    finally:
        x = 0
    with open(__file__) as f, open(__file__) as g:
        pass
    try:
        return y
    finally:
        del y

def gen(n):
    yield 1
    yield from range(n)
    x = yield
    return x

async def agen(xs):
    async for x in xs:
        yield x
    async with xs as y:
        await y

async def acomp(xs):
    return [z async for z in xs]

lam = lambda a, b=(lambda: 3)(): a + b

def comps(xs):
    a = [x * 2 for x in xs if x]
    b = {x: y for x, y in zip(xs, xs)}
    c = {x for x in xs}
    d = (x for x in xs for y in xs)
    e = [[y for y in range(x)] for x in xs]
    return a, b, c, d, e

class K:
    attr = 1
    def method(self):
        return super().method()
    @property
    def prop(self):
        return self.attr
    @staticmethod
    def st():
        return [K for _ in ()]

def wide():
    return (aaaa + """ + "b" * 200 + """ + cccc(dddd, eeee) + ffff.gggg[hhhh] + iiii)

def one_long_line():
    x = [""" + ", ".join("a%d" % i for i in range(400)) + """]
    return x

def long_body(x):
""" + "    x = (x + 1) * 2 - 3 // 4 % 5 + abc.defg(x, y[x])\n" * 300 + """
    return x

def gap(a):
    b = 1
""" + GAP + """
    c = 2
    for i in range(3):
        d = 3
""" + GAP + """
        e = 4
    return a

def call_gap():
    return foo(
        1,
""" + GAP + """
        2)
"""

if V >= (3, 10):
    SYN += """
def matching(p):
    match p:
        case [x, y, *rest]:
            return x
        case {"k": v}:
            return v
        case K(attr=1) | None:
            return 0
        case _:
            return -1
"""
if V >= (3, 11):
    SYN += """
def star(x):
    try:
        x()
    except* ValueError:
        pass
    except* TypeError as eg:
        raise
"""
if V >= (3, 12):
    SYN += """
type Alias[T] = list[T]

def generic[T](x: T) -> T:
    return x

class Box[T]:
    def get(self) -> T:
        return self.x
"""

FAR = "\n" * 1000000 + """
def far(x):
    y = x + 1
    return [z for z in range(y)]

far_lambda = lambda q: q * 2
"""

sources = []
stdlib = sysconfig.get_paths()["stdlib"]
for name in STDLIB:
    path = os.path.join(stdlib, name)
    with open(path, encoding="utf-8") as f:
        sources.append((path, f.read()))
sources.append(("<synthetic>", SYN))
sources.append(("<far>", FAR))

debug = bool(sysconfig.get_config_var("Py_DEBUG"))
out = {"version": list(V), "debug": debug, "codes": []}
for filename, src in sources:
    todo = [compile(src, filename, "exec", dont_inherit=True)]
    while todo:
        co = todo.pop()
        todo.extend(c for c in co.co_consts if hasattr(c, "co_code"))
        nbytes = len(co.co_code)
        table = co.co_lnotab if V < (3, 10) else co.co_linetable
        offsets = list(range(0, nbytes, 2))
        extra = [-2, -1]
        if not debug:  # a debug build asserts the offset is inside the code
            extra += [nbytes, nbytes + 1, nbytes + 2, nbytes + 1000]
        lines = [addr2line(co, off) for off in offsets + extra]
        rec = {
            "name": co.co_name,
            "file": filename,
            "firstlineno": co.co_firstlineno,
            "table": table.hex(),
            "nbytes": nbytes,
            "offsets": offsets + extra,
            "addr2line": [None if x < 0 else x for x in lines],
        }
        if V >= (3, 10):
            rec["co_lines"] = [list(r) for r in co.co_lines()]
        if V >= (3, 11):
            rec["positions"] = [p[0] for p in co.co_positions()]
        out["codes"].append(rec)

with open(sys.argv[1], "w") as f:
    json.dump(out, f)
'''


def _dump(interp, tmpdir: str) -> dict:
    out = os.path.join(tmpdir, f"linetable-{interp.id}.json")
    script = os.path.join(tmpdir, "dump_linetables.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write(DUMP_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        interp.argv("-I", script, out), capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, f"dump under {interp.id} failed:\n{proc.stderr}"
    with open(out, encoding="utf-8") as f:
        data = json.load(f)
    assert tuple(data["version"]) == interp.version
    return data


@pytest.fixture(scope="module", params=INTERPRETERS)
def dump(request, tmp_path_factory):
    return _dump(require_interpreter(request.param), str(tmp_path_factory.getbasetemp()))


def _tables(data: dict):
    kind = kind_for_version(*data["version"])
    for rec in data["codes"]:
        yield rec, LineTable(kind, bytes.fromhex(rec["table"]), rec["firstlineno"])


def test_matches_pycode_addr2line(dump):
    mismatches = []
    n_offsets = 0
    for rec, table in _tables(dump):
        for off, want in zip(rec["offsets"], rec["addr2line"]):
            n_offsets += 1
            got = table.line_at(off)
            if got != want:
                mismatches.append((rec["file"], rec["name"], off, want, got))
    version = ".".join(map(str, dump["version"]))
    print(f"\n{version}: {len(dump['codes'])} code objects, {n_offsets} offsets checked")
    assert not mismatches, f"{len(mismatches)} mismatches, first ones: {mismatches[:10]}"
    assert len(dump["codes"]) > 500


def test_synthetic_code_is_covered(dump):
    """The dump really contains the awkward cases it is meant to (far lines, big gaps, no-line)."""
    by_name = {}
    for rec in dump["codes"]:
        by_name.setdefault(rec["name"], rec)
    far = by_name["far"]
    assert far["firstlineno"] > 1_000_000
    assert min(x for x in far["addr2line"] if x is not None) > 1_000_000
    gap = by_name["gap"]
    lines = [x for x in gap["addr2line"][: gap["nbytes"] // 2] if x is not None]
    assert max(lines) - gap["firstlineno"] > 200_000
    # The call after its argument 100,000 lines below is attributed to the line of the call:
    # in offset order the line goes back by more than 100,000.
    call = by_name["call_gap"]
    lines = [x for x in call["addr2line"][: call["nbytes"] // 2] if x is not None]
    assert any(a - b > 100_000 for a, b in zip(lines, lines[1:]))
    for name in ("wrapper", "decorated", "loops", "trying", "gen", "agen", "<lambda>"):
        assert name in by_name
    if tuple(dump["version"]) >= (3, 11):
        # Some instructions (exception-handling cleanup) have no line in 3.11+.
        assert any(None in rec["addr2line"][: rec["nbytes"] // 2] for rec in dump["codes"])


def test_table_features_exercised(dump):
    """Every entry shape of the version's format occurs somewhere in the dumped tables."""
    kind = kind_for_version(*dump["version"])
    seen = set()
    for rec in dump["codes"]:
        t = bytes.fromhex(rec["table"])
        if kind == "locations":
            seen.update(("code", (b >> 3) & 15) for b in t if b & 0x80)
        else:
            for i in range(0, len(t) - 1, 2):
                d = t[i + 1] - 256 if t[i + 1] >= 128 else t[i + 1]
                if t[i] >= 254 and d == 0:
                    seen.add("long range")
                if t[i] == 0 and abs(d) == 127:
                    seen.add("big line step")
                if d < 0:
                    seen.add("backwards")
    if kind == "locations":
        assert {("code", c) for c in range(16)} <= seen, sorted(seen)
    else:
        assert {"long range", "big line step", "backwards"} <= seen


def test_interpreter_apis_agree(dump):
    """Cross-check: co_lines() and co_positions() agree with PyCode_Addr2Line (3.10+)."""
    if tuple(dump["version"]) < (3, 10):
        pytest.skip("co_lines/co_positions do not exist before 3.10")
    bad = []
    for rec in dump["codes"]:
        nbytes = rec["nbytes"]
        via_lines = [None] * (nbytes // 2)
        for start, end, line in rec["co_lines"]:
            for off in range(start, end, 2):
                via_lines[off // 2] = line
        via_a2l = rec["addr2line"][: nbytes // 2]
        if via_lines != via_a2l:
            bad.append(("co_lines", rec["name"]))
        if "positions" in rec and rec["positions"] != via_a2l:
            bad.append(("co_positions", rec["name"]))
    assert not bad, bad[:10]


# --- hand-made tables -------------------------------------------------------------------------


def test_kind_for_version():
    assert kind_for_version(3, 8) == kind_for_version(3, 9) == "lnotab"
    assert kind_for_version(3, 10) == "linetable310"
    assert {kind_for_version(3, m) for m in (11, 12, 13, 14, 15)} == {"locations"}
    for bad in [(3, 7), (3, 16), (2, 7), (4, 0)]:
        with pytest.raises(ValueError):
            kind_for_version(*bad)


def test_lnotab_by_hand():
    # (addr +6, line +1), (addr +0, line +127), (+0, -2), (+255, 0), (+10, -1)
    t = LineTable("lnotab", bytes([6, 1, 0, 127, 0, 254, 255, 0, 10, 255]), 10)
    assert [t.line_at(o) for o in (-2, 0, 4, 6, 8, 260, 261, 271, 10_000)] == [
        10,
        10,
        10,
        136,
        136,
        136,
        136,
        135,
        135,
    ]
    assert LineTable("lnotab", b"", 7).line_at(0) == 7
    assert LineTable("lnotab", b"", 7).line_at(1000) == 7


def test_linetable310_by_hand():
    # 4 bytes at +0, 0-length +127, 6 bytes at -1, 2 bytes no line, 254+2 bytes at +1
    t = LineTable("linetable310", bytes([4, 0, 0, 127, 6, 255, 2, 128, 254, 1, 2, 0]), 5)
    assert t.line_at(-2) == 5
    offsets = (0, 2, 4, 8, 10, 12, 265, 266, 268, 1000)
    assert [t.line_at(o) for o in offsets] == [5, 5, 131, 131, None, 132, 132, 132, None, None]
    empty = LineTable("linetable310", b"", 5)
    assert empty.line_at(0) is None
    assert empty.line_at(-2) == 5


def _svarint(n: int) -> bytes:
    v = (-n << 1) | 1 if n < 0 else n << 1
    out = bytearray()
    while True:
        b = v & 63
        v >>= 6
        if v:
            out.append(b | 64)
        else:
            out.append(b)
            return bytes(out)


def test_locations_by_hand():
    entry = lambda code, units: bytes([0x80 | code << 3 | (units - 1)])  # noqa: E731
    table = (
        entry(0, 1)
        + b"\x05"  # short form: same line (firstlineno)
        + entry(11, 2)
        + b"\x04\x09"  # one-line form: +1
        + entry(15, 8)  # no location
        + entry(13, 3)
        + _svarint(-300_000)  # no-columns form, big step back
        + entry(14, 1)
        + _svarint(1_000_000)
        + b"\x00\x01\x02"  # long form
        + entry(12, 1)
        + b"\x00\x00"  # one-line form: +2
    )
    t = LineTable("locations", table, 400_000)
    expect = [400_000] + [400_001] * 2 + [None] * 8 + [100_001] * 3 + [1_100_001, 1_100_003]
    assert [t.line_at(2 * i) for i in range(len(expect))] == expect
    assert t.line_at(2 * len(expect)) is None
    assert t.line_at(-2) == 400_000
    assert t.line_at(3) == 400_001  # odd offsets fall in the range that contains them
    assert LineTable("locations", b"", 3).line_at(0) is None


# --- garbage -----------------------------------------------------------------------------------


def _exercise(kind: str, data: bytes, firstlineno: int = 1) -> LineTable | None:
    try:
        t = LineTable(kind, data, firstlineno)
    except ValueError:
        return None
    # Bounded output: never more ranges than the table has bytes (plus the default one).
    assert len(t.ranges()) <= len(data) + 1
    for off in (-1, 0, 1, 2, 3, 100, 254, 2 * len(data), 10**9, 2**70):
        line = t.line_at(off)
        assert line is None or isinstance(line, int)
    return t


@pytest.mark.parametrize("kind", KINDS)
def test_random_garbage_is_bounded(kind):
    rng = random.Random(f"linetable-{kind}")
    for _ in range(3000):
        n = rng.choice([0, 1, 2, 3, 5, 8, 17, 64, 255, 1000])
        _exercise(kind, bytes(rng.getrandbits(8) for _ in range(n)), rng.randint(-5, 10**7))
    # Shapes aimed at the varint reader and the entry scanner.
    for data in [
        b"\xff" * 4096,
        b"\x80" * 4096,
        b"\xf0" + b"\x7f" * 4096,  # a varint that never ends
        b"\xf0" + b"\x40" * 6 + b"\x00",  # seven groups
        b"\xf0\x41",  # varint cut off by the end of the table
        b"\xf8\x00",  # no-location entry followed by a stray byte
        b"\x00" * 4096,
        b"\x7f" * 4095,
    ]:
        _exercise(kind, data)


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_cost_is_linear(kind):
    rng = random.Random(1234)
    big = bytes(rng.getrandbits(8) for _ in range(400_000))
    for data in (big, b"\xff" * 400_000, b"\x80\x00" * 200_000, bytes(400_000)):
        start = time.perf_counter()
        _exercise(kind, data)
        assert time.perf_counter() - start < 5.0


def test_truncated_and_corrupted_real_tables():
    """Every prefix and many single-byte corruptions of this interpreter's own tables."""
    kind = kind_for_version(*sys.version_info[:2]) if sys.version_info < (3, 14) else None
    if kind is None:
        pytest.skip("the test process runs a Python without a known table format")
    rng = random.Random(99)
    codes = [test_truncated_and_corrupted_real_tables.__code__, _exercise.__code__]
    codes += [json.JSONDecoder.raw_decode.__code__, glob.glob.__code__]
    for co in codes:
        table = co.co_lnotab if kind == "lnotab" else co.co_linetable
        full = LineTable(kind, table, co.co_firstlineno)
        for cut in range(len(table) + 1):
            t = _exercise(kind, table[:cut], co.co_firstlineno)
            if t is not None and kind != "lnotab" and t.ranges():
                # A clean cut agrees with the full table wherever it still has ranges.
                end = t.ranges()[-1][1] or 0
                assert all(t.line_at(o) == full.line_at(o) for o in range(0, end, 2))
        for _ in range(200):
            corrupt = bytearray(table)
            if corrupt:
                corrupt[rng.randrange(len(corrupt))] = rng.getrandbits(8)
            _exercise(kind, bytes(corrupt), co.co_firstlineno)


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError):
        LineTable("nope", b"", 1)
    for bad_table in (None, 12, "abc", [1, 2]):
        with pytest.raises(ValueError):
            LineTable("locations", bad_table, 1)
    for bad_first in (None, "x", 1.5):
        with pytest.raises(ValueError):
            LineTable("lnotab", b"", bad_first)
    assert LineTable("linetable310", bytearray(b"\x02\x00"), 1).line_at(0) == 1
    assert LineTable("linetable310", memoryview(b"\x02\x00"), 1).line_at(0) == 1
