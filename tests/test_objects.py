"""Reading Python objects out of live processes of every supported interpreter.

A target process (run by each interpreter 3.8-3.13, plus Debian's static 3.11) builds known
objects, prints their id()s and expected values as JSON, and waits; spy_magic.reader.objects
then reads them through process_vm_readv and must get the same values back. The target also
forges corrupt objects (absurd lengths and counts) that must be refused quickly.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from conftest import read_line

from spy_magic.reader.errors import MemoryReadError, ReaderError
from spy_magic.reader.layouts import LAYOUTS
from spy_magic.reader.memory import ProcessMemory
from spy_magic.reader.objects import BadObject, ObjectReader, thread_names
from spy_magic.reader.process import find_interpreter

# Runs in the target. argv[1] is the layout (JSON), used only to forge corrupt objects.
TARGET = r"""
import ctypes, json, sys, threading

L = json.loads(sys.argv[1])
V = sys.version_info[:2]
ids = {}
expect = {}

def keep(name, obj, value=None):
    ids[name] = id(obj)
    expect[name] = obj if value is None else value
    keep.alive.append(obj)
keep.alive = []

class MyStr(str):  # instances are non-compact strings (data in a separate block)
    pass

strings = {
    "empty": "",
    "ascii": "hello world",
    "ascii_long": "spam-" * 300,
    "latin1": "caf\xe9 cr\xe8me br\xfbl\xe9e",
    "latin1_long": "\xe9" * 2000,
    "cjk": "\u4e2d\u6587\u5b57\u7b26",
    "cjk_long": "\u6f22" * 777,
    "astral": "\U00020000\U0001d11e astral",
    "emoji": "\U0001f600" * 40,
    "surrogate": "a\ud800b\udc00\ud83d\ude00",
    "subclass": MyStr("subclassed \xe9\u4e2d"),
    "subclass_ascii": MyStr("plain subclass"),
}
for k, s in strings.items():
    keep("str." + k, s, ascii(str(s)))  # ascii(): JSON would pair up lone surrogates

for k, b in {"empty": b"", "short": b"abc\x00\xff", "long": bytes(range(256)) * 40}.items():
    keep("bytes." + k, b, b.hex())

ints = {
    "zero": 0, "one": 1, "minus_one": -1, "small": 255, "digit_edge": 2 ** 30 - 1,
    "two_digits": 2 ** 30, "i64": 2 ** 63 - 1, "neg_i64": -(2 ** 63), "big": 7 ** 300,
    "neg_big": -(10 ** 50) - 12345, "true": True, "false": False,
}
for k, n in ints.items():
    # build big ints at run time so they are not shared constants
    keep("int." + k, n if isinstance(n, bool) else int(str(n)), int(n))

def pairs(d):
    out = []
    for k, v in d.items():
        out.append([k.hex() if isinstance(k, bytes) else k,
                    v.hex() if isinstance(v, bytes) else v])
    return out

class Plain:
    pass

dicts = {
    "empty": {},
    "one": {1: 2},
    "str_keys": {"alpha": 1, "beta": "two", "gamma": None, "\u4e2d": True},
    "mixed": {1: "one", "two": 2, b"three": 3, -4: -4},
    "ints_100": {i: i * i for i in range(100)},
    "strs_1000": {"k%d" % i: "v%d" % i for i in range(1000)},
    "ints_300": {i: -i for i in range(300)},        # 2-byte indices
    "ints_70000": {i: i for i in range(70000)},      # 4-byte indices
}
deleted = {i: i for i in range(50)}
for i in range(0, 50, 3):
    del deleted[i]
dicts["with_deletions"] = deleted
for k, d in dicts.items():
    keep("dict." + k, d, pairs(d))

# Instances: split-table dicts / managed values / inline values, depending on version.
a = Plain(); a.x = 1; a.y = "two"; a.z = "\u4e2d"
b = Plain(); b.x = 5
c = Plain(); c.z = "zz"; c.x = 3  # insertion order differs from the shared keys' order
d = Plain(); d.x = 10; d.y = 20
d.__dict__  # materialise d's dict
e = Plain(); e.y = 1; e.x = 2; del e.y
for k, o in {"a": a, "b": b, "c": c, "d": d, "e": e}.items():
    keep("inst." + k, o, pairs(vars(o)))
keep("dict.instance_d", d.__dict__, pairs(vars(d)))  # a split table (shared keys)
empty_inst = Plain()
keep("inst.empty", empty_inst, [])

# Threads with known names (non-ASCII too), parked on an event.
stop = threading.Event()
names = ["worker-1", "ty\xf6l\xe4inen", "\u7ebf\u7a0b-2", "\U0001d518nicode \U0001f600"]
threads = [threading.Thread(target=stop.wait, name=n, daemon=True) for n in names]
for t in threads:
    t.start()
expect_threads = {str(t.ident): t.name for t in threading.enumerate()}

# Forged objects: copies of real headers with absurd sizes, in ctypes buffers we keep alive.
def forge(obj, nbytes, patches):
    buf = ctypes.create_string_buffer(ctypes.string_at(id(obj), nbytes), nbytes)
    for off, ctype, value in patches:
        ctype.from_address(ctypes.addressof(buf) + off).value = value
    keep.alive.append(buf)
    return ctypes.addressof(buf)

forged = {}
s = "forged string"
forged["str_len"] = forge(s, 128, [(L["unicode.length"], ctypes.c_int64, 1 << 50)])
forged["str_state"] = forge(s, 128, [(L["unicode.state"], ctypes.c_uint32, 0)])
n = 12345
if "long.lv_tag" in L:
    forged["int_digits"] = forge(n, 64, [(L["long.lv_tag"], ctypes.c_uint64, (1 << 40) << 3)])
else:
    forged["int_digits"] = forge(n, 64, [(L["long.ob_size"], ctypes.c_int64, 1 << 40)])
forged["int_digit_value"] = forge(n, 64, [(L["long.ob_digit"], ctypes.c_uint32, 0xFFFFFFFF)])
dd = {1: 2, 3: 4}
forged["dict_used"] = forge(dd, 64, [(L["dict.ma_used"], ctypes.c_int64, 1 << 40)])
keys_addr = ctypes.c_void_p.from_address(id(dd) + L["dict.ma_keys"]).value
fake_keys = ctypes.create_string_buffer(ctypes.string_at(keys_addr, 256), 256)
keep.alive.append(fake_keys)
ctypes.c_int64.from_address(ctypes.addressof(fake_keys) + L["dictkeys.dk_nentries"]).value = 1 << 40
forged["dict_nentries"] = forge(dd, 64, [(L["dict.ma_keys"], ctypes.c_uint64,
                                          ctypes.addressof(fake_keys))])
forged["not_a_str"] = id(12345678)
forged["not_an_int"] = id("123")
forged["not_a_dict"] = id([1, 2])

runtime = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
print(json.dumps({"ids": ids, "expect": expect, "threads": expect_threads, "forged": forged,
                  "runtime": runtime, "version": list(V)}), flush=True)
sys.stdin.readline()
stop.set()
"""


def layout_for(interpreter) -> dict:
    """The interpreter's LAYOUTS entry, whether LAYOUTS is keyed by build name ("3.13t") or,
    as it was, by (major, minor) (which never meant a free-threaded build)."""
    if interpreter.build in LAYOUTS:
        return LAYOUTS[interpreter.build]
    if not interpreter.free_threaded and interpreter.version in LAYOUTS:
        return LAYOUTS[interpreter.version]
    pytest.fail(f"no layout for Python {interpreter.build} in LAYOUTS", pytrace=False)


@pytest.fixture(scope="module")
def target(interpreter, spawn_module):
    """(pid, report, layout) of a target under `interpreter`, alive for the module."""
    layout = layout_for(interpreter)
    proc = spawn_module(interpreter.argv("-c", TARGET, json.dumps(layout)), stdin=subprocess.PIPE)
    report = json.loads(read_line(proc))
    assert tuple(report["version"]) == interpreter.version
    return proc.pid, report, layout


@pytest.fixture
def reader(target, interpreter):
    pid, _, layout = target
    mem = ProcessMemory(pid)
    try:
        yield ObjectReader(mem, interpreter.version, layout)
    finally:
        mem.close()


def _names(report, prefix):
    return sorted(k for k in report["ids"] if k.startswith(prefix))


def _norm(value):
    """Local values in the JSON shape the target used (bytes as hex)."""
    return value.hex() if isinstance(value, bytes) else value


def test_strings(target, reader):
    _, report, _ = target
    names = _names(report, "str.")
    assert len(names) == 12
    for name in names:
        assert ascii(reader.read_str(report["ids"][name])) == report["expect"][name], name
    # batch read: one list in, one list out, in order
    got = reader.read_strs([report["ids"][n] for n in names])
    assert [ascii(s) for s in got] == [report["expect"][n] for n in names]


def test_string_syscalls(target, reader):
    _, report, _ = target
    before = reader.mem.syscalls
    reader.read_str(report["ids"]["str.ascii"])  # short: header and characters in one read
    assert reader.mem.syscalls - before <= 2  # + the str type, the first time only
    before = reader.mem.syscalls
    reader.read_strs([report["ids"][n] for n in _names(report, "str.")])
    assert reader.mem.syscalls - before <= 3


def test_bytes(target, reader):
    _, report, _ = target
    for name in _names(report, "bytes."):
        assert reader.read_bytes(report["ids"][name]).hex() == report["expect"][name], name


def test_ints(target, reader):
    _, report, _ = target
    names = _names(report, "int.")
    assert len(names) == 12
    for name in names:
        assert reader.read_int(report["ids"][name]) == report["expect"][name], name


def test_dicts(target, reader):
    _, report, _ = target
    names = _names(report, "dict.")
    assert len(names) == 10
    for name in names:
        addr = report["ids"][name]
        got = [[_norm(reader.read_value(k)), _norm(reader.read_value(v))]
               for k, v in reader.dict_items(addr)]  # fmt: skip
        assert got == report["expect"][name], name


def test_dict_lookup(target, reader):
    _, report, _ = target
    ids = report["ids"]
    d = ids["dict.str_keys"]
    assert reader.read_str(reader.dict_get_str(d, "beta")) == "two"
    assert reader.read_value(reader.dict_get_str(d, "gamma")) is None
    assert reader.read_value(reader.dict_get_str(d, "\u4e2d")) is True
    assert reader.dict_get_str(d, "delta") is None
    assert reader.dict_get_str(d, "bet") is None
    big = ids["dict.strs_1000"]
    assert reader.read_str(reader.dict_get_str(big, "k777")) == "v777"
    assert reader.dict_get_str(big, "k1000") is None
    mixed = ids["dict.mixed"]
    assert reader.read_int(reader.dict_get_str(mixed, "two")) == 2
    assert reader.dict_get_str(mixed, "three") is None  # b"three" is bytes, not str
    assert reader.dict_get_str(ids["dict.empty"], "x") is None


def test_instance_attributes(target, reader):
    _, report, _ = target
    ids = report["ids"]
    for name in _names(report, "inst."):
        items = reader.instance_dict_items(ids[name])
        got = [[reader.read_str(k), _norm(reader.read_value(v))] for k, v in items]
        assert got == report["expect"][name], name
    assert reader.read_int(reader.get_attr(ids["inst.a"], "x")) == 1
    assert reader.read_str(reader.get_attr(ids["inst.a"], "z")) == "\u4e2d"
    assert reader.read_str(reader.get_attr(ids["inst.c"], "z")) == "zz"
    assert reader.get_attr(ids["inst.b"], "y") is None
    assert reader.get_attr(ids["inst.e"], "y") is None  # deleted
    assert reader.get_attr(ids["inst.empty"], "x") is None
    assert reader.read_int(reader.get_attr(ids["inst.d"], "y")) == 20
    # an object without any __dict__
    assert reader.instance_dict_items(ids["int.big"]) == []


def test_type_names(target, reader):
    _, report, _ = target
    ids = report["ids"]
    assert reader.type_name(ids["str.ascii"]) == "str"
    assert reader.type_name(ids["str.subclass"]) == "MyStr"
    assert reader.type_name(ids["int.true"]) == "bool"
    assert reader.type_name(ids["dict.one"]) == "dict"
    assert reader.type_name(ids["bytes.short"]) == "bytes"
    assert reader.type_name(ids["inst.a"]) == "Plain"


def _interp_address(reader, report):
    runtime = report["runtime"]
    return reader.mem.read_u64(runtime + reader.L["runtime.interpreters_head"])


def test_thread_names(target, reader, interpreter):
    _, report, layout = target
    interp = _interp_address(reader, report)
    before = reader.mem.syscalls
    t0 = time.perf_counter()
    names = thread_names(reader.mem, interpreter.version, layout, interp)
    elapsed = time.perf_counter() - t0
    expected = {int(k): v for k, v in report["threads"].items()}
    assert names == expected
    assert "MainThread" in names.values()
    # about 20 syscalls to find threading._active, then under 10 per thread
    assert reader.mem.syscalls - before < 80, reader.mem.syscalls - before
    assert elapsed < 1.0


def test_thread_names_without_threading(interpreter, spawn):
    """{} when the target never imported threading."""
    # No ctypes in the target: 3.14's ctypes imports threading itself.
    src = (
        "import sys\n"
        "assert 'threading' not in sys.modules, 'threading imported at startup'\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    proc = spawn(interpreter.argv("-S", "-c", src), stdin=subprocess.PIPE)
    assert read_line(proc) == "ready"
    runtime = find_interpreter(proc.pid).runtime_address
    mem = ProcessMemory(proc.pid)
    try:
        layout = layout_for(interpreter)
        interp = mem.read_u64(runtime + layout["runtime.interpreters_head"])
        assert thread_names(mem, interpreter.version, layout, interp) == {}
    finally:
        mem.close()


def test_forged_objects_are_refused(target, reader):
    _, report, _ = target
    f = report["forged"]
    t0 = time.perf_counter()
    with pytest.raises(BadObject):
        reader.read_str(f["str_len"])
    with pytest.raises(BadObject):
        reader.read_str(f["str_state"])
    with pytest.raises(BadObject):
        reader.read_int(f["int_digits"])
    with pytest.raises(BadObject):
        reader.read_int(f["int_digit_value"])
    with pytest.raises(BadObject):
        reader.dict_items(f["dict_used"])
    with pytest.raises(BadObject):
        reader.dict_items(f["dict_nentries"])
    with pytest.raises(BadObject):
        reader.read_str(f["not_a_str"])
    with pytest.raises(BadObject):
        reader.read_int(f["not_an_int"])
    with pytest.raises(BadObject):
        reader.dict_items(f["not_a_dict"])
    assert time.perf_counter() - t0 < 1.0
    # Batch string reads turn bad entries into None instead of raising.
    got = reader.read_strs([f["str_len"], report["ids"]["str.ascii"], f["not_a_str"]])
    assert got == [None, "hello world", None]


def test_unreadable_addresses(reader):
    for addr in (0, 8, 0xFFFF_FFFF_FFFF_F000):
        with pytest.raises(ReaderError):
            reader.read_str(addr)
        with pytest.raises(ReaderError):
            reader.dict_items(addr)
    with pytest.raises(MemoryReadError):
        reader.read_int(0x10)
