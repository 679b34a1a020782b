"""3.13+'s _Py_DebugOffsets: trusted only after checks, newer layouts refused by name."""

from __future__ import annotations

import struct

import pytest
from conftest import read_line, require_interpreter

from spy_magic.reader import StackReader, UnsupportedVersion
from spy_magic.reader import debug_offsets as dbg
from spy_magic.reader.memory import ProcessMemory


@pytest.fixture(scope="module")
def real_offsets(spawn_module):
    """The raw _Py_DebugOffsets bytes of a live 3.13 process."""
    interp = require_interpreter("pyenv-3.13")
    proc = spawn_module([interp.path, "-c", "print('ready', flush=True); input()"],
                        stdin=__import__("subprocess").PIPE)  # fmt: skip
    assert read_line(proc) == "ready"
    reader = StackReader(proc.pid)
    raw = ProcessMemory(proc.pid).read(reader.interpreter.runtime_address, dbg.header_size())
    return raw, reader.layout, proc.pid


def test_the_targets_offsets_are_used(real_offsets):
    raw, layout, _ = real_offsets
    version, free_threaded = dbg.parse_header(raw)
    assert version >> 16 == 0x030D and not free_threaded
    parsed = dbg.parse_313(raw)
    for key, value in parsed.items():
        assert layout[key] == value, key


def _with_field(raw: bytes, index: int, value: int) -> bytes:
    """raw with the index-th u64 after the 24-byte header replaced."""
    pos = 24 + 8 * index
    return raw[:pos] + struct.pack("<Q", value) + raw[pos + 8 :]


def test_an_offset_outside_its_struct_is_refused(real_offsets):
    raw, _, _ = real_offsets
    # Field 2 is runtime_state.interpreters_head; make it point far past the struct's size.
    with pytest.raises(dbg.DebugOffsetsError, match="interpreters_head"):
        dbg.parse_313(_with_field(raw, 2, 1 << 40))


def test_an_implausible_struct_size_is_refused(real_offsets):
    raw, _, _ = real_offsets
    with pytest.raises(dbg.DebugOffsetsError, match="implausible size"):
        dbg.parse_313(_with_field(raw, 0, 0))


def test_no_cookie_no_trust():
    with pytest.raises(dbg.DebugOffsetsError, match="cookie"):
        dbg.parse_header(b"\0" * 64)


def test_free_threaded_flag_is_seen(real_offsets):
    raw, _, _ = real_offsets
    flagged = raw[:16] + struct.pack("<Q", 1) + raw[24:]
    assert dbg.parse_header(flagged)[1] is True


@pytest.mark.parametrize(
    "version, free_threaded, named",
    [((3, 14, 0), False, "3.14"), ((3, 15, 1), False, "3.15.1"), ((3, 13, 0), True, "3.13t")],
)
def test_versions_it_cannot_read_are_refused_by_name(
    real_offsets, monkeypatch, version, free_threaded, named
):
    """No 3.14 or free-threaded build is installed here: a real 3.13 process stands in, its
    interpreter record altered to claim what such a build would report."""
    from spy_magic.reader import reader as reader_module

    real_find = reader_module.find_interpreter

    def pretend(pid):
        found = real_find(pid)
        found.version = version
        found.free_threaded = free_threaded
        return found

    monkeypatch.setattr(reader_module, "find_interpreter", pretend)
    pid = real_offsets[2]
    with pytest.raises(UnsupportedVersion) as info:
        StackReader(pid)
    message = str(info.value)
    assert named in message and "supported: CPython 3.8 to 3.13" in message
