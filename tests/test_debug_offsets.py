"""3.13+'s _Py_DebugOffsets: read from every 3.13+ build here, trusted only after checks;
newer layouts and corrupted structs refused by name, never read as a wrong stack."""

from __future__ import annotations

import struct
import subprocess

import pytest
from conftest import read_line, require_interpreter

from spy_magic.reader import StackReader, UnsupportedVersion
from spy_magic.reader import debug_offsets as dbg
from spy_magic.reader.layouts import LAYOUTS
from spy_magic.reader.memory import ProcessMemory

# Every 3.13+ interpreter the tests know (skipped by name where not installed).
DEBUG_OFFSET_INTERPRETERS = ["pyenv-3.13", "ft-3.13t", "sid-3.14", "sid-3.15"]

# Runs in the target: prints "ready", then on each stdin line "POSITION VALUE" overwrites the
# u64 at _PyRuntime + POSITION (its own _Py_DebugOffsets) and answers "done".
TARGET = r"""
import ctypes, sys, time
runtime = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
def work():
    time.sleep(0.001)
print("ready", flush=True)
for line in sys.stdin:
    position, value = map(int, line.split())
    ctypes.c_uint64.from_address(runtime + position).value = value
    print("done", flush=True)
"""


def _build(interp) -> str:
    return f"{interp.dotted}{'t' if interp.free_threaded else ''}"


@pytest.fixture(params=DEBUG_OFFSET_INTERPRETERS)
def target(request, spawn):
    """(interpreter, process, its raw _Py_DebugOffsets) for each 3.13+ build."""
    interp = require_interpreter(request.param)
    proc = spawn(interp.argv("-c", TARGET), stdin=subprocess.PIPE)
    assert read_line(proc) == "ready"
    reader = StackReader(proc.pid)
    size = LAYOUTS[_build(interp)]["debug.size"]
    raw = ProcessMemory(proc.pid).read(reader.interpreter.runtime_address, size)
    reader.close()
    return interp, proc, raw


def _overwrite(proc, position: int, value: int) -> None:
    proc.stdin.write(f"{position} {value}\n".encode())
    proc.stdin.flush()
    assert read_line(proc) == "done"


def test_the_targets_offsets_are_used_and_match_the_generated_table(target):
    interp, proc, raw = target
    build = _build(interp)
    version, free_threaded = dbg.parse_header(raw)
    assert (version >> 24, (version >> 16) & 0xFF) == interp.version
    assert free_threaded is interp.free_threaded
    parsed = dbg.parse(raw, LAYOUTS[build], free_threaded)
    assert len(parsed) > 40
    with StackReader(proc.pid) as reader:
        assert reader.free_threaded is interp.free_threaded
        for key, value in parsed.items():
            assert reader.layout[key] == value, key
    # The generated table (headers) and the target's own description agree on every offset
    # both have: the table stays as a cross-check. Struct sizes may differ (sid's 3.15.2
    # reports its interpreter state 8 bytes larger than host gcc's sizeof() of its headers):
    # they must still hold every field the table places in them.
    table = LAYOUTS[build]
    offsets = {k: v for k, v in parsed.items() if not k.endswith(".size")}
    differ = {k: (v, table[k]) for k, v in offsets.items() if k in table and table[k] != v}
    assert not differ, f"{build}: debug offsets (target) vs table (headers): {differ}"
    for key in (k for k in parsed if k.endswith(".size")):
        group = key[: -len("size")]
        inside = [v for k, v in table.items() if k.startswith(group) and k != key]
        assert parsed[key] > max(inside), (key, parsed[key], max(inside))


def _at(raw: bytes, table: dict, member: str, value: int) -> bytes:
    pos = table[f"debug.{member}"]
    return raw[:pos] + struct.pack("<Q", value) + raw[pos + 8 :]


def test_an_offset_outside_its_struct_is_refused(target):
    interp, _, raw = target
    table = LAYOUTS[_build(interp)]
    bad = _at(raw, table, "runtime_state.interpreters_head", 1 << 40)
    with pytest.raises(dbg.DebugOffsetsError, match="interpreters_head"):
        dbg.parse(bad, table, interp.free_threaded)


def test_an_implausible_struct_size_is_refused(target):
    interp, _, raw = target
    table = LAYOUTS[_build(interp)]
    with pytest.raises(dbg.DebugOffsetsError, match="implausible size"):
        dbg.parse(_at(raw, table, "thread_state.size", 0), table, interp.free_threaded)


def test_a_truncated_struct_is_refused(target):
    interp, _, raw = target
    table = LAYOUTS[_build(interp)]
    with pytest.raises(dbg.DebugOffsetsError, match="truncated"):
        dbg.parse(raw[:100], table, interp.free_threaded)


def test_no_cookie_no_trust():
    with pytest.raises(dbg.DebugOffsetsError, match="cookie"):
        dbg.parse_header(b"\0" * 64)


def test_the_free_threaded_flag_is_read_and_checked(target):
    _, _, raw = target
    assert dbg.parse_header(raw[:16] + struct.pack("<Q", 1) + raw[24:])[1] is True
    assert dbg.parse_header(raw[:16] + struct.pack("<Q", 0) + raw[24:])[1] is False
    with pytest.raises(dbg.DebugOffsetsError, match="free_threaded flag"):
        dbg.parse_header(raw[:16] + struct.pack("<Q", 7) + raw[24:])


@pytest.mark.parametrize(
    "member, value, message",
    [
        ("thread_state.size", 0, "implausible size"),
        ("thread_state.current_frame", 1 << 40, "current_frame"),
        ("runtime_state.interpreters_head", 1 << 33, "interpreters_head"),
        ("code_object.size", 1 << 30, "implausible size"),
    ],
)
def test_a_corrupted_struct_in_a_live_target_is_refused(target, member, value, message):
    """The target overwrites its own _Py_DebugOffsets (ctypes): a clear error, no crash."""
    interp, proc, _ = target
    _overwrite(proc, LAYOUTS[_build(interp)][f"debug.{member}"], value)
    with pytest.raises(UnsupportedVersion, match=message) as info:
        StackReader(proc.pid)
    assert "cannot be trusted" in str(info.value)


def test_an_in_bounds_wrong_thread_offset_is_caught(target):
    """An offset that is inside its struct but wrong (interp moved onto a field no other
    offset names) is caught by the thread state not pointing back at its interpreter."""
    interp, proc, raw = target
    table = LAYOUTS[_build(interp)]
    named = {
        struct.unpack_from("<Q", raw, pos)[0]
        for key, pos in table.items()
        if key.startswith("debug.thread_state.")
    }
    unnamed = next(o for o in range(24, 4096, 8) if o not in named)
    _overwrite(proc, table["debug.thread_state.interp"], unnamed)
    with pytest.raises(UnsupportedVersion, match="does not point back"):
        StackReader(proc.pid)


def test_two_fields_at_one_offset_are_refused(target):
    interp, proc, raw = target
    table = LAYOUTS[_build(interp)]
    previous = struct.unpack_from("<Q", raw, table["debug.interpreter_frame.previous"])[0]
    _overwrite(proc, table["debug.interpreter_frame.executable"], previous)
    with pytest.raises(UnsupportedVersion, match="share offset"):
        StackReader(proc.pid)


def test_an_in_bounds_wrong_frame_offset_never_gives_a_wrong_stack(target):
    """f_executable pointed at f_funcobj (a function, which no offset here names): every
    frame then fails the code-object check, so each read reports the stack as unreadable
    instead of inventing frames."""
    interp, proc, _ = target
    table = LAYOUTS[_build(interp)]
    _overwrite(proc, table["debug.interpreter_frame.executable"], table["iframe.func"])
    with StackReader(proc.pid, pause_when_torn=False) as reader:
        for _ in range(5):
            for stack in reader.read():
                assert not stack.frames, stack.frames
                assert stack.error is not None


@pytest.mark.parametrize(
    "version, named, why",
    [((3, 16, 0), "3.16", "newer than this reader knows"), ((3, 7, 0), "3.7", "too old")],
)
def test_versions_it_cannot_read_are_refused_by_name(monkeypatch, spawn, version, named, why):
    """No 3.16 exists yet: a real 3.13 process stands in, its interpreter record altered to
    claim what such a build would report."""
    from spy_magic.reader import reader as reader_module

    interp = require_interpreter("pyenv-3.13")
    proc = spawn(interp.argv("-c", TARGET), stdin=subprocess.PIPE)
    assert read_line(proc) == "ready"
    real_find = reader_module.find_interpreter

    def pretend(pid):
        found = real_find(pid)
        found.version = version
        return found

    monkeypatch.setattr(reader_module, "find_interpreter", pretend)
    with pytest.raises(UnsupportedVersion) as info:
        StackReader(proc.pid)
    message = str(info.value)
    assert named in message and why in message
    assert "supported: CPython 3.8–3.15" in message


def test_a_free_threaded_build_of_unknown_layout_is_refused(monkeypatch):
    """A 3.13t whose table the reader lacks (as a 3.16t would be) gets a clear error."""
    from spy_magic.reader import versions

    monkeypatch.delitem(versions.LAYOUTS, "3.13t")
    with pytest.raises(versions.UnknownBuild, match=r"layout of a 3\.13t build is not known"):
        versions.lookup((3, 13), free_threaded=True)
    with pytest.raises(versions.UnknownBuild, match="no free-threaded build"):
        versions.lookup((3, 12), free_threaded=True)
