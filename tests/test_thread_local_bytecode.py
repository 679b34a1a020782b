"""Free-threaded 3.14+: a frame's instr_ptr points into its thread's copy of the bytecode.

No free-threaded 3.14/3.15 can be run here (Debian sid packages none, and their sources are
not downloadable), so this checks the reader's side of it against memory laid out as the
3.14t headers say, in a real process: a `_PyCodeArray` {size, entries[]} that a code object's
`co_tlbc` points to, built with ctypes in a target, read back through process_vm_readv.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import pytest
from conftest import read_line

from spy_magic.reader import TornStack
from spy_magic.reader.codes import CodeCache, CodeInfo
from spy_magic.reader.frames import ChunkWalker
from spy_magic.reader.layouts import LAYOUTS
from spy_magic.reader.linetable import LineTable
from spy_magic.reader.memory import ProcessMemory

LAYOUT = LAYOUTS["3.14t"]
UNITS = 64  # code units in each copy of the fake bytecode

# The target: a fake code object (only its co_tlbc word matters), a _PyCodeArray of 3 copies
# and the copies' bytecode; prints their addresses, then on "grow" replaces the array by a
# larger one (as CPython does when a new thread needs a copy) and prints again.
TARGET = r"""
import ctypes, json, sys
co_tlbc, entries_at, size_at = map(int, sys.argv[1:4])
units = int(sys.argv[4])
code = ctypes.create_string_buffer(co_tlbc + 8)
copies = [ctypes.create_string_buffer(units * 2) for _ in range(5)]
def array(n):
    buf = ctypes.create_string_buffer(entries_at + 8 * n)
    ctypes.c_int64.from_buffer(buf, size_at).value = n
    for i in range(n):
        ctypes.c_uint64.from_buffer(buf, entries_at + 8 * i).value = ctypes.addressof(copies[i])
    ctypes.c_uint64.from_buffer(code, co_tlbc).value = ctypes.addressof(buf)
    return buf
keep = [array(3)]
def report():
    print(json.dumps({"code": ctypes.addressof(code),
                      "copies": [ctypes.addressof(c) for c in copies]}), flush=True)
report()
for line in sys.stdin:
    if line.strip() == "grow":
        keep.append(array(5))
        report()
"""


@pytest.fixture
def target(spawn):
    proc = spawn(
        [sys.executable, "-c", TARGET, LAYOUT["code.co_tlbc"], LAYOUT["codearray.entries"],
         LAYOUT["codearray.size"], UNITS],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    return proc, json.loads(read_line(proc))


def _cache_with(proc, code: int) -> tuple[CodeCache, CodeInfo]:
    mem = ProcessMemory(proc.pid)
    cache = CodeCache(mem, (3, 14, 0), LAYOUT, None)
    table = LineTable("locations", bytes([0x80 | (13 << 3) | 7, 2]), 10)  # 8 units, line 11
    info = CodeInfo(code, "f", "<fake>", 10, table, ())
    info.code_start, info.code_units, info.first_traceable = 0x1000, UNITS, 0
    cache._entries[code] = info
    return cache, info


def test_the_copy_a_frame_names_is_found_through_co_tlbc(target):
    proc, where = target
    cache, info = _cache_with(proc, where["code"])
    for copy in (1, 2):
        assert cache.bytecode_start(info, copy) == where["copies"][copy]
    with pytest.raises(TornStack, match="copy 3 of 3 does not exist"):
        cache.bytecode_start(info, 3)


def test_a_grown_array_is_read_again_when_a_cached_copy_no_longer_fits(target):
    """The array is replaced when it grows; an index past the cached view is re-read."""
    proc, where = target
    cache, info = _cache_with(proc, where["code"])
    walker = ChunkWalker(LAYOUT, cache, (3, 14, 0))
    assert cache.bytecode_start(info, 2) == where["copies"][2]
    proc.stdin.write(b"grow\n")
    proc.stdin.flush()
    grown = json.loads(read_line(proc))
    # Copy 4 did not exist a moment ago; the frame's instr_ptr inside it resolves now.
    instr = grown["copies"][4] + 2 * 5
    code, frame, hidden = walker._resolve(where["code"], instr, 4)
    assert (code, frame.name, hidden) == (where["code"], "f", False)
    # A stale cached start (the copy's buffer moved) is re-read rather than trusted.
    info.copies[1] = where["copies"][1] + 4096 * 16
    _, frame, _ = walker._resolve(where["code"], grown["copies"][1] + 2, 1)
    assert info.copies[1] == grown["copies"][1]
    # An instr_ptr in no copy at all is a torn read, not a frame.
    with pytest.raises(TornStack, match="outside its code object"):
        walker._resolve(where["code"], ctypes.sizeof(ctypes.c_void_p), 2)


def test_the_walker_reads_tlbc_index_only_where_the_build_has_it():
    assert ChunkWalker(LAYOUT, _NoCodes(), (3, 14, 0)).per_thread_bytecode
    assert not ChunkWalker(LAYOUTS["3.14"], _NoCodes(), (3, 14, 0)).per_thread_bytecode
    assert not ChunkWalker(LAYOUTS["3.13t"], _NoCodes(), (3, 13, 0)).per_thread_bytecode


class _NoCodes:
    """A code cache the walker is never asked anything of here."""
