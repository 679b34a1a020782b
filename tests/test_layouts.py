"""Check the generated struct layouts against what each interpreter itself shows.

For every interpreter the tests know (tests/conftest.py: pyenv 3.8-3.13, Debian's static 3.11,
free-threaded 3.13t, Debian sid's 3.14 and 3.15 in their root), a subprocess of that
interpreter compares its build's LAYOUTS entry with facts it can observe about itself: type
sizes seen from Python (`__basicsize__`, `sys.getsizeof`) and, through ctypes, the memory of
its own live objects, thread state, interpreter state and _PyRuntime.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import SUPPORTED, require_interpreter

from spy_magic.reader.layouts import LAYOUTS
from spy_magic.reader.versions import KNOWN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSIONS = sorted(KNOWN)
BUILDS = [f"{v[0]}.{v[1]}" for v in VERSIONS] + [
    f"{v[0]}.{v[1]}t" for v in VERSIONS if KNOWN[v].free_threaded_build
]


def minor(build: str) -> tuple[int, int]:
    major, minor_ = build.rstrip("t").split(".")
    return int(major), int(minor_)


# Runs inside the target interpreter (any of 3.8-3.15): argv[1] is its LAYOUTS entry as JSON.
# Prints a JSON list of [check name, value found, value expected].
TARGET = r"""
import ctypes, json, sys, threading, types

L = json.loads(sys.argv[1])
V = sys.version_info[:2]
out = []

def check(name, got, want):
    out.append([name, got, want])

def ptr(addr):
    return ctypes.c_void_p.from_address(addr).value or 0

def i64(addr):
    return ctypes.c_int64.from_address(addr).value

def i32(addr):
    return ctypes.c_int32.from_address(addr).value

def u8(addr):
    return ctypes.c_uint8.from_address(addr).value

FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()
TAGS = L.get("const.Py_TAG_BITS", 0)  # 3.14+: _PyStackRef's low bits are tags

def ref(addr):
    return ptr(addr) & ~TAGS

api = ctypes.pythonapi
api.PyThreadState_Get.restype = ctypes.c_void_p
api.PyInterpreterState_Main.restype = ctypes.c_void_p

# -- sizes visible from Python ---------------------------------------------------------------
if V <= (3, 10):
    check("code.size == CodeType.__basicsize__", L["code.size"], types.CodeType.__basicsize__)
    check("frame.size == FrameType.__basicsize__", L["frame.size"],
          types.FrameType.__basicsize__)
else:
    # 3.11+: code objects are variable-sized, the fixed part ends at co_code_adaptive
    check("code.code_adaptive == CodeType.__basicsize__", L["code.code_adaptive"],
          types.CodeType.__basicsize__)
check("bytes.ob_sval == getsizeof(b'') - 1", L["bytes.ob_sval"], sys.getsizeof(b"") - 1)
check("unicode.ascii_data == getsizeof('') - 1", L["unicode.ascii_data"], sys.getsizeof("") - 1)
check("unicode.compact_data == getsizeof('é'*3) - 4", L["unicode.compact_data"],
      sys.getsizeof("é" * 3) - 4)
check("long.ob_digit == int.__basicsize__", L["long.ob_digit"], int.__basicsize__)
check("int.__itemsize__ == 4", int.__itemsize__, 4)
check("tuple.ob_item == tuple.__basicsize__", L["tuple.ob_item"], tuple.__basicsize__)
check("module.md_dict == module.__dictoffset__", L["module.md_dict"],
      types.ModuleType.__dictoffset__)

# -- objects and types -----------------------------------------------------------------------
obj = object()
check("object.ob_type", ptr(id(obj) + L["object.ob_type"]), id(object))
if "object.ob_refcnt" in L:
    check("object.ob_refcnt > 0", i64(id(obj) + L["object.ob_refcnt"]) > 0, True)
lst = [obj, 1, 2]
check("varobject.ob_size", i64(id(lst) + L["varobject.ob_size"]), 3)
check("list.ob_item", ptr(ptr(id(lst) + L["list.ob_item"])), id(obj))
tup = (obj, None)
check("tuple.ob_item[1]", ptr(id(tup) + L["tuple.ob_item"] + 8), id(None))

class Plain:
    pass

for t in (int, dict, Plain, threading.Thread):
    a = id(t)
    check(f"type.tp_basicsize {t.__name__}", i64(a + L["type.tp_basicsize"]), t.__basicsize__)
    check(f"type.tp_itemsize {t.__name__}", i64(a + L["type.tp_itemsize"]), t.__itemsize__)
    check(f"type.tp_dictoffset {t.__name__}", i64(a + L["type.tp_dictoffset"]),
          t.__dictoffset__)
    check(f"type.tp_flags {t.__name__}", ctypes.c_ulong.from_address(a + L["type.tp_flags"]).value,
          t.__flags__)
    check(f"type.tp_name {t.__name__}",
          ctypes.string_at(ptr(a + L["type.tp_name"])).decode(),
          t.__name__)
check("Py_TPFLAGS_HEAPTYPE set on a class", bool(Plain.__flags__ & L["const.Py_TPFLAGS_HEAPTYPE"]),
      True)
check("Py_TPFLAGS_HEAPTYPE clear on int", bool(int.__flags__ & L["const.Py_TPFLAGS_HEAPTYPE"]),
      False)
if "const.Py_TPFLAGS_MANAGED_DICT" in L:
    check("Py_TPFLAGS_MANAGED_DICT on a class",
          bool(Plain.__flags__ & L["const.Py_TPFLAGS_MANAGED_DICT"]), True)
if "const.Py_TPFLAGS_INLINE_VALUES" in L:
    check("Py_TPFLAGS_INLINE_VALUES on a class",
          bool(Plain.__flags__ & L["const.Py_TPFLAGS_INLINE_VALUES"]), True)

# -- bytes, str, int -------------------------------------------------------------------------
b = bytes(range(65, 75))
check("bytes.ob_size", i64(id(b) + L["bytes.ob_size"]), 10)
check("bytes.ob_sval data", ctypes.string_at(id(b) + L["bytes.ob_sval"], 10).decode(), b.decode())
for s, kind, is_ascii in (("abc" * 3, 1, 1), ("é" * 3, 1, 0), ("中文字", 2, 0),
                          ("\U00020000x", 4, 0)):
    a = id(s)
    st = ctypes.c_uint32.from_address(a + L["unicode.state"]).value
    check(f"unicode.length {s!r}", i64(a + L["unicode.length"]), len(s))
    kind_mask = L["unicode.kind_mask"]
    check(f"unicode kind {s!r}", (st & kind_mask) // (kind_mask & -kind_mask), kind)
    check(f"unicode compact {s!r}", int(bool(st & L["unicode.compact_mask"])), 1)
    check(f"unicode ascii {s!r}", int(bool(st & L["unicode.ascii_mask"])), is_ascii)
    data = a + (L["unicode.ascii_data"] if is_ascii else L["unicode.compact_data"])
    raw = ctypes.string_at(data, len(s) * kind)
    check(f"unicode data {s!r}",
          raw.decode({1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]), s)
for n in (0, 1, -5, 2 ** 30 + 3, -(2 ** 40), 7 ** 50):
    a = id(n)
    ndigits = 0
    m = abs(n)
    while m:
        ndigits += 1
        m >>= L["const.PyLong_SHIFT"]
    if "long.lv_tag" in L:
        tag = ctypes.c_uint64.from_address(a + L["long.lv_tag"]).value
        if V >= (3, 14):
            tag &= ~(1 << 2)  # the small ints' immortality bit (IMMORTALITY_BIT_MASK)
        sign = 1 if n == 0 else (2 if n < 0 else 0)
        check(f"long.lv_tag {n}", tag, (ndigits << L["const._PyLong_NON_SIZE_BITS"]) | sign)
    else:
        check(f"long.ob_size {n}", i64(a + L["long.ob_size"]), -ndigits if n < 0 else ndigits)
    if n:
        check(f"long.ob_digit[0] {n}", ctypes.c_uint32.from_address(a + L["long.ob_digit"]).value,
              abs(n) & ((1 << L["const.PyLong_SHIFT"]) - 1))

# -- dicts -----------------------------------------------------------------------------------
keys_int = [10, 20, 30, 40, 50]
for name, d in (("int keys", dict.fromkeys(keys_int, obj)),
                ("str keys", {"k%d" % i: i for i in range(5)})):
    a = id(d)
    dk = ptr(a + L["dict.ma_keys"])
    check(f"dict.ma_used {name}", i64(a + L["dict.ma_used"]), 5)
    check(f"dict.ma_values {name}", ptr(a + L["dict.ma_values"]), 0)
    check(f"dictkeys.dk_nentries {name}", i64(dk + L["dictkeys.dk_nentries"]), 5)
    if "dictkeys.dk_size" in L:
        size = i64(dk + L["dictkeys.dk_size"])
        check(f"dictkeys.dk_size {name}", size, 8)
        entries = dk + L["dictkeys.dk_indices"] + size  # 1-byte indices
        general = True
    else:
        check(f"dictkeys.dk_log2_size {name}", u8(dk + L["dictkeys.dk_log2_size"]), 3)
        check(f"dictkeys.dk_log2_index_bytes {name}",
              u8(dk + L["dictkeys.dk_log2_index_bytes"]), 3)
        kind = u8(dk + L["dictkeys.dk_kind"])
        general = name == "int keys"
        check(f"dictkeys.dk_kind {name}", kind,
              L["const.DICT_KEYS_GENERAL"] if general else L["const.DICT_KEYS_UNICODE"])
        entries = dk + L["dictkeys.dk_indices"] + (1 << u8(dk + L["dictkeys.dk_log2_index_bytes"]))
    ks = list(d)
    for i in (0, 4):
        if general:
            e = entries + i * L["dictentry.size"]
            check(f"dictentry.me_hash {name}[{i}]", i64(e + L["dictentry.me_hash"]), hash(ks[i]))
            check(f"dictentry.me_key {name}[{i}]", ptr(e + L["dictentry.me_key"]), id(ks[i]))
            check(f"dictentry.me_value {name}[{i}]", ptr(e + L["dictentry.me_value"]),
                  id(d[ks[i]]))
        else:
            e = entries + i * L["dictunicodeentry.size"]
            check(f"dictunicodeentry.me_key {name}[{i}]", ptr(e + L["dictunicodeentry.me_key"]),
                  id(ks[i]))
            check(f"dictunicodeentry.me_value {name}[{i}]",
                  ptr(e + L["dictunicodeentry.me_value"]), id(d[ks[i]]))

class Attrs:
    def __init__(self):
        self.first = obj
        self.second = lst

inst = Attrs()
Attrs()  # a second instance keeps the keys shared
if "heaptype.ht_cached_keys" in L:
    ck = ptr(id(Attrs) + L["heaptype.ht_cached_keys"])
    check("heaptype.ht_cached_keys is a split table", u8(ck + L["dictkeys.dk_kind"]),
          L["const.DICT_KEYS_SPLIT"])
idict = inst.__dict__  # materialise the instance dict (a split table sharing the class keys)
if "const.MANAGED_DICT_OFFSET" in L:
    check("const.MANAGED_DICT_OFFSET holds the instance dict",
          ptr(id(inst) + L["const.MANAGED_DICT_OFFSET"]), id(idict))
values = ptr(id(idict) + L["dict.ma_values"])
check("instance dict is split (ma_values set)", values != 0, True)
if values:
    arr = values + L.get("dictvalues.values", 0)
    check("ma_values[0] is the first attribute", ptr(arr), id(obj))
    check("ma_values[1] is the second attribute", ptr(arr + 8), id(lst))

# -- thread and interpreter state ------------------------------------------------------------
def current_state():
    ts = api.PyThreadState_Get()
    interp = api.PyInterpreterState_Main()
    frame = sys._getframe()
    check("tstate.interp", ptr(ts + L["tstate.interp"]), interp)
    check("tstate.thread_id", ctypes.c_ulong.from_address(ts + L["tstate.thread_id"]).value,
          threading.get_ident())
    if "tstate.native_thread_id" in L:
        check("tstate.native_thread_id",
              ctypes.c_ulong.from_address(ts + L["tstate.native_thread_id"]).value,
              threading.get_native_id())
    check("interp.id", i64(interp + L["interp.id"]), 0)
    check("interp.next", ptr(interp + L["interp.next"]), 0)
    check("interp.modules", ptr(interp + L["interp.modules"]), id(sys.modules))
    check("interp.sysdict", ptr(interp + L["interp.sysdict"]), id(sys.__dict__))
    seen, t = [], ptr(interp + L["interp.threads_head"])
    while t and len(seen) < 100:
        seen.append(t)
        t = ptr(t + L["tstate.next"])
    check("our tstate is on interp.threads_head's list", ts in seen, True)
    check("tstate.prev of the head", ptr(seen[0] + L["tstate.prev"]), 0)

    runtime = ctypes.addressof(ctypes.c_char.in_dll(api, "_PyRuntime"))
    check("runtime.interpreters_head", ptr(runtime + L["runtime.interpreters_head"]), interp)
    if "runtime.gilstate_tstate_current" in L:
        check("runtime.gilstate_tstate_current",
              ptr(runtime + L["runtime.gilstate_tstate_current"]), ts)
    if "runtime.gil_locked" in L:
        check("runtime.gil_locked", i32(runtime + L["runtime.gil_locked"]), 1)
        check("runtime.gil_last_holder", ptr(runtime + L["runtime.gil_last_holder"]), ts)
        check("gil.locked relative offset",
              L["runtime.gil_locked"] - L["gil.locked"],
              L["runtime.gil_last_holder"] - L["gil.last_holder"])
    if "tstate.state" in L:
        check("tstate.state is attached while running", i32(ts + L["tstate.state"]),
              L["const._Py_THREAD_ATTACHED"])
    if "interp.ceval_gil" in L and not FREE_THREADED:
        gil = ptr(interp + L["interp.ceval_gil"])
        check("gil.locked via interp.ceval_gil", i32(gil + L["gil.locked"]), 1)
        check("gil.last_holder via interp.ceval_gil", ptr(gil + L["gil.last_holder"]), ts)

    # Read the current frame with no Python-level call in between (ptr() would be a frame).
    if "tstate.frame" in L:
        f = ctypes.c_void_p.from_address(ts + L["tstate.frame"]).value
        check("tstate.frame", f, id(frame))
        check("frame.f_back", ptr(f + L["frame.f_back"]), id(frame.f_back))
        check("frame.f_code", ptr(f + L["frame.f_code"]), id(frame.f_code))
        check("frame.f_lasti_size", L["frame.f_lasti_size"], 4)
        # The caller is suspended in the call, so its f_lasti is stable. 3.10 counts code
        # units (2 bytes) in the struct but reports bytes to Python.
        units = 2 if V == (3, 10) else 1
        check("frame.f_lasti", i32(id(frame.f_back) + L["frame.f_lasti"]) * units,
              frame.f_back.f_lasti)
        check("frame.f_lineno inside the struct", L["frame.f_lineno"] < L["frame.size"], True)
    else:
        if "tstate.cframe" in L:
            cf = ctypes.c_void_p.from_address(ts + L["tstate.cframe"]).value
            fr = ctypes.c_void_p.from_address(cf + L["cframe.current_frame"]).value
        else:
            fr = ctypes.c_void_p.from_address(ts + L["tstate.current_frame"]).value
        code = frame.f_code
        check("iframe.code", ref(fr + L["iframe.code"]), id(code))
        check("iframe.func", ref(fr + L["iframe.func"]), id(current_state))
        check("iframe.owner", u8(fr + L["iframe.owner"]), L["const.FRAME_OWNED_BY_THREAD"])
        ip = ptr(fr + L["iframe.instr_ptr"])
        start = id(code) + L["code.code_adaptive"]
        check("iframe.instr_ptr inside co_code_adaptive",
              start - 2 <= ip < start + len(code.co_code), True)
        if V < (3, 14):  # a 3.14+ int local is a tagged value, not a pointer
            check("iframe.localsplus[0] is the first local", ptr(fr + L["iframe.localsplus"]),
                  id(ts))
        prev = ptr(fr + L["iframe.previous"])
        caller = frame.f_back.f_code
        check("iframe.previous", ref(prev + L["iframe.code"]), id(caller))
        check("caller's instr_ptr gives its f_lasti",
              ptr(prev + L["iframe.instr_ptr"]) - (id(caller) + L["code.code_adaptive"]),
              frame.f_back.f_lasti)
        chunk = ptr(ts + L["tstate.datastack_chunk"])
        csize = i64(chunk + L["chunk.size"])
        check("chunk holds the frame", chunk + L["chunk.data"] <= fr < chunk + csize, True)
        check("tstate.datastack_limit", ptr(ts + L["tstate.datastack_limit"]), chunk + csize)
        top = ptr(ts + L["tstate.datastack_top"])
        check("tstate.datastack_top above the frame", fr < top <= chunk + csize, True)
        check("chunk.previous of the first chunk", ptr(chunk + L["chunk.previous"]), 0)
        check("code.firsttraceable small",
              0 <= i32(id(code) + L["code.firsttraceable"]) < len(code.co_code), True)
        check("iframe.size <= localsplus", L["iframe.localsplus"] <= L["iframe.size"], True)

current_state()

# -- code objects ----------------------------------------------------------------------------
co = current_state.__code__
c = id(co)
check("code.filename", ptr(c + L["code.filename"]), id(co.co_filename))
check("code.name", ptr(c + L["code.name"]), id(co.co_name))
check("code.firstlineno", i32(c + L["code.firstlineno"]), co.co_firstlineno)
if "code.qualname" in L:
    check("code.qualname", ptr(c + L["code.qualname"]), id(co.co_qualname))
if "code.lnotab" in L:
    check("code.lnotab", ptr(c + L["code.lnotab"]), id(co.co_lnotab))
if "code.linetable" in L:
    check("code.linetable", ptr(c + L["code.linetable"]), id(co.co_linetable))
if "code.code" in L:
    check("code.code", ptr(c + L["code.code"]), id(co.co_code))

# -- modules ---------------------------------------------------------------------------------
check("module.md_dict", ptr(id(sys) + L["module.md_dict"]), id(sys.__dict__))

print(json.dumps(out))
"""


# Which keys each version must have (and no other version may have).
def since(first: tuple[int, int], last: tuple[int, int] = (3, 99)) -> set[tuple[int, int]]:
    return {v for v in VERSIONS if first <= v <= last}


# Which keys each version must have (and no other version may have), in both its builds.
ONLY = {
    "runtime.gilstate_tstate_current": since((3, 8), (3, 11)),
    "runtime.gil_locked": since((3, 8), (3, 11)),
    "runtime.gil_last_holder": since((3, 8), (3, 11)),
    "interp.ceval_gil": since((3, 12)),
    "tstate.frame": since((3, 8), (3, 10)),
    "tstate.cframe": since((3, 11), (3, 12)),
    "cframe.current_frame": since((3, 11), (3, 12)),
    "tstate.current_frame": since((3, 13)),
    "tstate.native_thread_id": since((3, 11)),
    "tstate.datastack_chunk": since((3, 11)),
    "tstate.state": since((3, 13)),
    "chunk.data": since((3, 11)),
    "frame.f_back": since((3, 8), (3, 10)),
    "frame.f_lasti_size": since((3, 8), (3, 10)),
    "iframe.code": since((3, 11)),
    "code.qualname": since((3, 11)),
    "code.lnotab": since((3, 8), (3, 9)),
    "code.linetable": since((3, 10)),
    "code.code": since((3, 8), (3, 10)),
    "code.firsttraceable": since((3, 11)),
    "code.code_adaptive": since((3, 11)),
    "heaptype.ht_cached_keys": since((3, 11)),
    "long.ob_size": since((3, 8), (3, 11)),
    "long.lv_tag": since((3, 12)),
    "dictkeys.dk_size": since((3, 8), (3, 10)),
    "dictkeys.dk_log2_size": since((3, 11)),
    "dictkeys.dk_log2_index_bytes": since((3, 11)),
    "dictkeys.dk_kind": since((3, 11)),
    "dictunicodeentry.size": since((3, 11)),
    "dictvalues.values": since((3, 11)),
    "dictvalues.size": since((3, 11)),
    "const.Py_TPFLAGS_MANAGED_DICT": since((3, 11)),
    "const.Py_TPFLAGS_INLINE_VALUES": since((3, 13)),
    "const.MANAGED_DICT_OFFSET": since((3, 13)),
    "const.FRAME_OWNED_BY_THREAD": since((3, 11)),
    "const.FRAME_OWNED_BY_CSTACK": since((3, 12), (3, 14)),
    "const.FRAME_OWNED_BY_INTERPRETER": since((3, 14)),
    "const.Py_TAG_BITS": since((3, 14)),
    "debug.size": since((3, 13)),
    "debug.thread_state.native_thread_id": since((3, 13)),
}
# Keys of one kind of build only: free-threaded 3.14+ bytecode copies; the split refcount.
FREE_THREADED_ONLY = {
    "iframe.tlbc_index": since((3, 14)),
    "code.co_tlbc": since((3, 14)),
    "codearray.entries": since((3, 14)),
}
STANDARD_ONLY = {"object.ob_refcnt": since((3, 8))}
EVERYWHERE = [
    "runtime.interpreters_head",
    "interp.next",
    "interp.id",
    "interp.threads_head",
    "interp.modules",
    "interp.sysdict",
    "interp.size",
    "gil.locked",
    "gil.last_holder",
    "gil.size",
    "tstate.prev",
    "tstate.next",
    "tstate.interp",
    "tstate.thread_id",
    "tstate.size",
    "code.filename",
    "code.name",
    "code.firstlineno",
    "code.size",
    "object.ob_type",
    "varobject.ob_size",
    "type.tp_name",
    "type.tp_basicsize",
    "type.tp_dictoffset",
    "type.tp_flags",
    "bytes.ob_size",
    "bytes.ob_sval",
    "unicode.length",
    "unicode.state",
    "unicode.ascii_data",
    "unicode.compact_data",
    "long.ob_digit",
    "dict.ma_used",
    "dict.ma_keys",
    "dict.ma_values",
    "dictkeys.dk_nentries",
    "dictkeys.dk_indices",
    "dictkeys.size",
    "dictentry.size",
    "module.md_dict",
    "tuple.ob_item",
    "list.ob_item",
    "const.Py_TPFLAGS_HEAPTYPE",
]


def test_every_build_present():
    assert sorted(LAYOUTS) == sorted(BUILDS)


@pytest.mark.parametrize("build", BUILDS)
def test_keys_present_exactly_where_they_exist(build):
    layout = LAYOUTS[build]
    v, free_threaded = minor(build), build.endswith("t")
    for key in EVERYWHERE:
        assert key in layout, f"{build} lacks {key}"
    for key, where in ONLY.items():
        assert (key in layout) == (v in where), f"{key} in {build}: {key in layout}"
    for key, where in FREE_THREADED_ONLY.items():
        want = free_threaded and v in where
        assert (key in layout) == want, f"{key} in {build}: {key in layout}"
    for key, where in STANDARD_ONLY.items():
        want = not free_threaded and v in where
        assert (key in layout) == want, f"{key} in {build}: {key in layout}"


def test_notes_table_spot_checks():
    # Values measured independently (shared/notes/remote-reading.md).
    want = {
        "runtime.interpreters_head": (40, 40, 632),
        "interp.threads_head": (16, 72, 7344),
        "tstate.native_thread_id": (160, 144, 160),
        "tstate.datastack_chunk": (296, 232, 232),
        "iframe.owner": (69, 70, 70),
        "code.firsttraceable": (168, 176, 184),
        "code.code_adaptive": (184, 192, 200),
        "unicode.compact_data": (72, 56, 56),
    }
    for key, vals in want.items():
        got = tuple(LAYOUTS[b][key] for b in ["3.11", "3.12", "3.13"])
        assert got == vals, key


def test_free_threaded_object_header():
    # PEP 703: ob_tid, ob_flags, ob_mutex, ob_gc_bits, ob_ref_local, ob_ref_shared, ob_type.
    for build in (b for b in BUILDS if b.endswith("t")):
        assert LAYOUTS[build]["object.ob_type"] == 24, build
    for build in (b for b in BUILDS if not b.endswith("t")):
        assert LAYOUTS[build]["object.ob_type"] == 8, build


@pytest.mark.parametrize("interpreter_id", list(SUPPORTED))
def test_layout_matches_running_interpreter(interpreter_id):
    interp = require_interpreter(interpreter_id)
    proc = subprocess.run(
        interp.argv("-c", TARGET, json.dumps(LAYOUTS[interp.build])),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) > 60
    bad = [
        f"{name}: found {got!r}, expected {want!r}" for name, got, want in results if got != want
    ]
    assert not bad, f"Python {interp.build} ({interp.id}):\n" + "\n".join(bad)


def test_generated_file_is_up_to_date():
    """The committed table is what tools/gen_layouts.py makes of the headers here (every
    build whose headers are installed; it names those it could not check)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to regenerate the layouts")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "gen_layouts.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "is up to date for" in proc.stderr
