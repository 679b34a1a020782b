#!/usr/bin/env python3
"""Generate spy_magic/reader/layouts.py: CPython struct offsets, sizes and constants.

For every CPython build the reader knows (`BUILDS`: 3.8 to 3.15, standard and free-threaded),
this writes a small C probe that prints offsetof()/sizeof() of the fields the remote reader
needs, compiles it with gcc against that build's own headers (with Py_BUILD_CORE, so the
internal structs are visible), runs it and collects the numbers. For 3.13+ it also records
where each field of `_Py_DebugOffsets` sits inside that struct (`debug.GROUP.FIELD`), parsed
from the header that declares it, so the reader can read any version's own offsets.

Headers are found in: ~/.pyenv/versions/3.X.Y (3.8-3.13, or --pyenv), and under
$SPY_MAGIC_PYTHONS (default /opt/spy_magic-pythons, made by tools/install_pythons.sh):
cpython-3.13t/ (free-threaded 3.13) and sid/usr/include/python3.14, python3.15 (Debian sid's
-dev packages). A free-threaded build without headers of its own (3.14t, 3.15t) is probed
against the standard build's headers with Py_GIL_DISABLED defined, which is the one switch
that build differs by.

The result is committed, so users never need a compiler or the headers.

    python tools/gen_layouts.py            # regenerate spy_magic/reader/layouts.py
    python tools/gen_layouts.py --check    # exit 1 if the committed file is out of date
                                           # for any build whose headers are here

Runs on any Python >= 3.9. Only x86-64 / 64-bit Linux layouts are produced (the probe is
compiled for the host).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "spy_magic", "reader", "layouts.py")
PYTHONS = os.environ.get("SPY_MAGIC_PYTHONS", "/opt/spy_magic-pythons")

Version = tuple[int, int]


@dataclass(frozen=True)
class Build:
    """One CPython build whose layout the table holds: "3.13" or "3.13t" (free-threaded)."""

    version: Version
    free_threaded: bool = False

    @property
    def name(self) -> str:
        return f"{self.version[0]}.{self.version[1]}" + ("t" if self.free_threaded else "")


VERSIONS = [(3, 8), (3, 9), (3, 10), (3, 11), (3, 12), (3, 13), (3, 14), (3, 15)]
BUILDS = [Build(v) for v in VERSIONS] + [Build(v, True) for v in VERSIONS if v >= (3, 13)]


@dataclass(frozen=True)
class Field:
    key: str
    expr: str  # a C integer expression
    since: Version = (3, 8)
    until: Version = (3, 99)
    guard: str | None = None  # preprocessor condition the entry is emitted under

    def applies(self, v: Version) -> bool:
        return self.since <= v <= self.until


def off(struct: str, member: str) -> str:
    return f"offsetof({struct}, {member})"


def size(struct: str) -> str:
    return f"sizeof({struct})"


def msize(struct: str, member: str) -> str:
    return f"sizeof((({struct} *)0)->{member})"


V38, V39, V310, V311, V312, V313, V314, V315 = VERSIONS
FREE_THREADED = "defined(Py_GIL_DISABLED)"
NO_ISOLATED = "!defined(EXPERIMENTAL_ISOLATED_SUBINTERPRETERS)"

# Each key exists exactly in the versions of its entries; several entries may share a key when
# the C spelling changed between versions.
FIELDS: list[Field] = [
    # -- runtime ---------------------------------------------------------------------------
    Field("runtime.interpreters_head", off("_PyRuntimeState", "interpreters.head")),
    Field(
        "runtime.gilstate_tstate_current",
        off("_PyRuntimeState", "gilstate.tstate_current"),
        until=V311,
    ),
    Field(
        "runtime.gil_locked",
        off("_PyRuntimeState", "ceval.gil.locked"),
        until=V311,
        guard=NO_ISOLATED,
    ),
    Field(
        "runtime.gil_last_holder",
        off("_PyRuntimeState", "ceval.gil.last_holder"),
        until=V311,
        guard=NO_ISOLATED,
    ),
    # -- interpreter -----------------------------------------------------------------------
    Field("interp.next", off("PyInterpreterState", "next")),
    Field("interp.id", off("PyInterpreterState", "id")),
    Field("interp.threads_head", off("PyInterpreterState", "tstate_head"), until=V310),
    Field("interp.threads_head", off("PyInterpreterState", "threads.head"), since=V311),
    Field("interp.modules", off("PyInterpreterState", "modules"), until=V311),
    Field("interp.modules", off("PyInterpreterState", "imports.modules"), since=V312),
    Field("interp.sysdict", off("PyInterpreterState", "sysdict")),
    Field("interp.ceval_gil", off("PyInterpreterState", "ceval.gil"), since=V312),
    Field("interp.size", size("PyInterpreterState")),
    # -- GIL -------------------------------------------------------------------------------
    Field("gil.locked", off("struct _gil_runtime_state", "locked")),
    Field("gil.last_holder", off("struct _gil_runtime_state", "last_holder")),
    Field("gil.size", size("struct _gil_runtime_state")),
    # -- thread state ----------------------------------------------------------------------
    Field("tstate.prev", off("PyThreadState", "prev")),
    Field("tstate.next", off("PyThreadState", "next")),
    Field("tstate.interp", off("PyThreadState", "interp")),
    Field("tstate.frame", off("PyThreadState", "frame"), until=V310),
    Field("tstate.cframe", off("PyThreadState", "cframe"), since=V311, until=V312),
    Field("cframe.current_frame", off("_PyCFrame", "current_frame"), since=V311, until=V312),
    Field("tstate.current_frame", off("PyThreadState", "current_frame"), since=V313),
    Field("tstate.thread_id", off("PyThreadState", "thread_id")),
    Field("tstate.native_thread_id", off("PyThreadState", "native_thread_id"), since=V311),
    Field("tstate.datastack_chunk", off("PyThreadState", "datastack_chunk"), since=V311),
    Field("tstate.datastack_top", off("PyThreadState", "datastack_top"), since=V311),
    Field("tstate.datastack_limit", off("PyThreadState", "datastack_limit"), since=V311),
    # attached / detached / suspended: on a free-threaded build, "is running Python"
    Field("tstate.state", off("PyThreadState", "state"), since=V313),
    Field("const._Py_THREAD_ATTACHED", "_Py_THREAD_ATTACHED", since=V313),
    Field("tstate.size", size("PyThreadState")),
    # the exception being handled (sys.exception()): a chain of _PyErr_StackItem from here
    Field("tstate.exc_info", off("PyThreadState", "exc_info")),
    Field("excitem.exc_type", off("_PyErr_StackItem", "exc_type"), until=V310),
    Field("excitem.exc_value", off("_PyErr_StackItem", "exc_value")),
    Field("excitem.previous_item", off("_PyErr_StackItem", "previous_item")),
    # the collector's `collecting` flag: in the runtime state (3.8), per interpreter (3.9+)
    Field("runtime.gc", off("_PyRuntimeState", "gc"), until=V38),
    Field("interp.gc", off("PyInterpreterState", "gc"), since=V39),
    Field("gcstate.collecting", off("struct _gc_runtime_state", "collecting")),
    Field("gcstate.size", size("struct _gc_runtime_state")),
    # -- data stack chunks (3.11+) ---------------------------------------------------------
    Field("chunk.previous", off("_PyStackChunk", "previous"), since=V311),
    Field("chunk.size", off("_PyStackChunk", "size"), since=V311),
    Field("chunk.top", off("_PyStackChunk", "top"), since=V311),
    Field("chunk.data", off("_PyStackChunk", "data"), since=V311),
    # -- frame objects (<= 3.10) -----------------------------------------------------------
    Field("frame.f_back", off("PyFrameObject", "f_back"), until=V310),
    Field("frame.f_code", off("PyFrameObject", "f_code"), until=V310),
    Field("frame.f_lasti", off("PyFrameObject", "f_lasti"), until=V310),
    Field("frame.f_lasti_size", msize("PyFrameObject", "f_lasti"), until=V310),
    Field("frame.f_lineno", off("PyFrameObject", "f_lineno"), until=V310),
    Field("frame.f_gen", off("PyFrameObject", "f_gen"), until=V310),
    Field("frame.f_executing", off("PyFrameObject", "f_executing"), until=V39),
    Field("frame.f_state", off("PyFrameObject", "f_state"), since=V310, until=V310),
    Field("frame.size", size("PyFrameObject"), until=V310),
    # -- interpreter frames (3.11+) --------------------------------------------------------
    Field("iframe.code", off("_PyInterpreterFrame", "f_code"), since=V311, until=V312),
    Field("iframe.code", off("_PyInterpreterFrame", "f_executable"), since=V313),
    Field("iframe.previous", off("_PyInterpreterFrame", "previous"), since=V311),
    Field("iframe.instr_ptr", off("_PyInterpreterFrame", "prev_instr"), since=V311, until=V312),
    Field("iframe.instr_ptr", off("_PyInterpreterFrame", "instr_ptr"), since=V313),
    Field("iframe.owner", off("_PyInterpreterFrame", "owner"), since=V311),
    Field("iframe.localsplus", off("_PyInterpreterFrame", "localsplus"), since=V311),
    Field("iframe.func", off("_PyInterpreterFrame", "f_func"), since=V311, until=V311),
    Field("iframe.func", off("_PyInterpreterFrame", "f_funcobj"), since=V312),
    Field("iframe.size", size("_PyInterpreterFrame"), since=V311),
    # free-threaded 3.14+: which thread-local copy of the bytecode instr_ptr points into
    Field(
        "iframe.tlbc_index",
        off("_PyInterpreterFrame", "tlbc_index"),
        since=V314,
        guard=FREE_THREADED,
    ),
    Field("code.co_tlbc", off("PyCodeObject", "co_tlbc"), since=V314, guard=FREE_THREADED),
    Field("codearray.size", off("_PyCodeArray", "size"), since=V314, guard=FREE_THREADED),
    Field("codearray.entries", off("_PyCodeArray", "entries"), since=V314, guard=FREE_THREADED),
    # _PyStackRef (3.14+): the low bits of a reference are tags, not address
    Field("const.Py_TAG_BITS", "Py_TAG_BITS", since=V314),
    # -- code objects ----------------------------------------------------------------------
    Field("code.filename", off("PyCodeObject", "co_filename")),
    Field("code.name", off("PyCodeObject", "co_name")),
    Field("code.qualname", off("PyCodeObject", "co_qualname"), since=V311),
    Field("code.firstlineno", off("PyCodeObject", "co_firstlineno")),
    Field("code.lnotab", off("PyCodeObject", "co_lnotab"), until=V39),
    Field("code.linetable", off("PyCodeObject", "co_linetable"), since=V310),
    Field("code.code", off("PyCodeObject", "co_code"), until=V310),
    Field("code.firsttraceable", off("PyCodeObject", "_co_firsttraceable"), since=V311),
    Field("code.code_adaptive", off("PyCodeObject", "co_code_adaptive"), since=V311),
    Field("code.size", size("PyCodeObject")),
    # -- objects and types -----------------------------------------------------------------
    # free-threaded builds split the count (ob_ref_local, ob_ref_shared); only <= 3.10 needs it
    Field("object.ob_refcnt", off("PyObject", "ob_refcnt"), guard="!" + FREE_THREADED),
    Field("object.ob_type", off("PyObject", "ob_type")),
    Field("varobject.ob_size", off("PyVarObject", "ob_size")),
    Field("type.tp_name", off("PyTypeObject", "tp_name")),
    Field("type.tp_basicsize", off("PyTypeObject", "tp_basicsize")),
    Field("type.tp_itemsize", off("PyTypeObject", "tp_itemsize")),
    Field("type.tp_dictoffset", off("PyTypeObject", "tp_dictoffset")),
    Field("type.tp_flags", off("PyTypeObject", "tp_flags")),
    Field("heaptype.ht_cached_keys", off("PyHeapTypeObject", "ht_cached_keys"), since=V311),
    # where a managed __dict__ pointer sits before the object (-3 words; -1 free-threaded)
    Field("const.MANAGED_DICT_OFFSET", "MANAGED_DICT_OFFSET", since=V313),
    # -- bytes, str, int -------------------------------------------------------------------
    Field("bytes.ob_size", off("PyBytesObject", "ob_base.ob_size")),
    Field("bytes.ob_sval", off("PyBytesObject", "ob_sval")),
    Field("unicode.length", off("PyASCIIObject", "length")),
    Field("unicode.state", off("PyASCIIObject", "state")),
    Field("unicode.ascii_data", size("PyASCIIObject")),
    Field("unicode.compact_data", size("PyCompactUnicodeObject")),
    # non-compact strings (str subclasses, legacy strings) point to their characters
    Field("unicode.data_any", off("PyUnicodeObject", "data.any")),
    Field("long.ob_size", off("PyLongObject", "ob_base.ob_size"), until=V311),
    Field("long.lv_tag", off("PyLongObject", "long_value.lv_tag"), since=V312),
    Field("long.ob_digit", off("PyLongObject", "ob_digit"), until=V311),
    Field("long.ob_digit", off("PyLongObject", "long_value.ob_digit"), since=V312),
    Field("const.PyLong_SHIFT", "PyLong_SHIFT"),
    Field("const._PyLong_NON_SIZE_BITS", "_PyLong_NON_SIZE_BITS", since=V312),
    # -- dicts -----------------------------------------------------------------------------
    Field("dict.ma_used", off("PyDictObject", "ma_used")),
    Field("dict.ma_keys", off("PyDictObject", "ma_keys")),
    Field("dict.ma_values", off("PyDictObject", "ma_values")),
    Field("dictkeys.dk_size", off("PyDictKeysObject", "dk_size"), until=V310),
    Field("dictkeys.dk_log2_size", off("PyDictKeysObject", "dk_log2_size"), since=V311),
    Field(
        "dictkeys.dk_log2_index_bytes", off("PyDictKeysObject", "dk_log2_index_bytes"), since=V311
    ),
    Field("dictkeys.dk_kind", off("PyDictKeysObject", "dk_kind"), since=V311),
    Field("dictkeys.dk_nentries", off("PyDictKeysObject", "dk_nentries")),
    Field("dictkeys.dk_indices", off("PyDictKeysObject", "dk_indices")),
    Field("dictkeys.size", size("PyDictKeysObject")),
    Field("dictentry.me_hash", off("PyDictKeyEntry", "me_hash")),
    Field("dictentry.me_key", off("PyDictKeyEntry", "me_key")),
    Field("dictentry.me_value", off("PyDictKeyEntry", "me_value")),
    Field("dictentry.size", size("PyDictKeyEntry")),
    Field("dictunicodeentry.me_key", off("PyDictUnicodeEntry", "me_key"), since=V311),
    Field("dictunicodeentry.me_value", off("PyDictUnicodeEntry", "me_value"), since=V311),
    Field("dictunicodeentry.size", size("PyDictUnicodeEntry"), since=V311),
    Field("dictvalues.values", off("PyDictValues", "values"), since=V311),
    Field("dictvalues.capacity", off("PyDictValues", "capacity"), since=V313),
    Field("dictvalues.size_member", off("PyDictValues", "size"), since=V313),
    Field("dictvalues.embedded", off("PyDictValues", "embedded"), since=V313),
    Field("dictvalues.valid", off("PyDictValues", "valid"), since=V313),
    Field("dictvalues.size", size("PyDictValues"), since=V311),
    Field("const.DICT_KEYS_GENERAL", "DICT_KEYS_GENERAL", since=V311),
    Field("const.DICT_KEYS_UNICODE", "DICT_KEYS_UNICODE", since=V311),
    Field("const.DICT_KEYS_SPLIT", "DICT_KEYS_SPLIT", since=V311),
    # -- containers and modules ------------------------------------------------------------
    Field("module.md_dict", off("PyModuleObject", "md_dict")),
    Field("tuple.ob_item", off("PyTupleObject", "ob_item")),
    Field("list.ob_item", off("PyListObject", "ob_item")),
    # -- constants -------------------------------------------------------------------------
    Field("const.Py_TPFLAGS_HEAPTYPE", "Py_TPFLAGS_HEAPTYPE"),
    Field("const.Py_TPFLAGS_LONG_SUBCLASS", "Py_TPFLAGS_LONG_SUBCLASS"),
    Field("const.Py_TPFLAGS_BYTES_SUBCLASS", "Py_TPFLAGS_BYTES_SUBCLASS"),
    Field("const.Py_TPFLAGS_UNICODE_SUBCLASS", "Py_TPFLAGS_UNICODE_SUBCLASS"),
    Field("const.Py_TPFLAGS_DICT_SUBCLASS", "Py_TPFLAGS_DICT_SUBCLASS"),
    Field(
        "const.Py_TPFLAGS_MANAGED_DICT",
        "Py_TPFLAGS_MANAGED_DICT",
        guard="defined(Py_TPFLAGS_MANAGED_DICT)",
    ),
    Field(
        "const.Py_TPFLAGS_INLINE_VALUES",
        "Py_TPFLAGS_INLINE_VALUES",
        guard="defined(Py_TPFLAGS_INLINE_VALUES)",
    ),
    Field("const.FRAME_OWNED_BY_THREAD", "FRAME_OWNED_BY_THREAD", since=V311),
    Field("const.FRAME_OWNED_BY_GENERATOR", "FRAME_OWNED_BY_GENERATOR", since=V311),
    Field("const.FRAME_OWNED_BY_FRAME_OBJECT", "FRAME_OWNED_BY_FRAME_OBJECT", since=V311),
    Field("const.FRAME_OWNED_BY_CSTACK", "FRAME_OWNED_BY_CSTACK", since=V312, until=V314),
    Field("const.FRAME_OWNED_BY_INTERPRETER", "FRAME_OWNED_BY_INTERPRETER", since=V314),
]

# Headers per version (all relative to include/python3.X; internal/ is on the include path).
INCLUDES: dict[Version, list[str]] = {
    V38: ["Python.h", "code.h", "frameobject.h", "longintrepr.h", "internal/pycore_pystate.h"],
    V39: [
        "Python.h",
        "code.h",
        "frameobject.h",
        "longintrepr.h",
        "internal/pycore_runtime.h",
        "internal/pycore_interp.h",
        "internal/pycore_pystate.h",
    ],
    V310: [
        "Python.h",
        "frameobject.h",
        "longintrepr.h",
        "internal/pycore_runtime.h",
        "internal/pycore_interp.h",
        "internal/pycore_pystate.h",
        "internal/pycore_moduleobject.h",
    ],
    V311: [
        "Python.h",
        "frameobject.h",
        "internal/pycore_runtime.h",
        "internal/pycore_interp.h",
        "internal/pycore_pystate.h",
        "internal/pycore_frame.h",
        "internal/pycore_code.h",
        "internal/pycore_dict.h",
        "internal/pycore_moduleobject.h",
    ],
    V312: [
        "Python.h",
        "frameobject.h",
        "internal/pycore_runtime.h",
        "internal/pycore_interp.h",
        "internal/pycore_pystate.h",
        "internal/pycore_frame.h",
        "internal/pycore_code.h",
        "internal/pycore_dict.h",
        "internal/pycore_moduleobject.h",
        "internal/pycore_gil.h",
        "internal/pycore_long.h",
    ],
    V313: [
        "Python.h",
        "frameobject.h",
        "internal/pycore_runtime.h",
        "internal/pycore_interp.h",
        "internal/pycore_pystate.h",
        "internal/pycore_frame.h",
        "internal/pycore_code.h",
        "internal/pycore_dict.h",
        "internal/pycore_moduleobject.h",
        "internal/pycore_gil.h",
        "internal/pycore_long.h",
    ],
}

INCLUDES[V313] = [*INCLUDES[V313], "internal/pycore_object.h"]
INCLUDES[V314] = [*INCLUDES[V313], "internal/pycore_stackref.h", "internal/pycore_debug_offsets.h"]
INCLUDES[V315] = INCLUDES[V314]

# Structs that live in .c files (not installed headers) in old versions, copied verbatim from
# CPython's sources of that version (Objects/dict-common.h, Objects/moduleobject.c).
PRIVATE_DICT_38_310 = """
typedef struct {
    Py_hash_t me_hash;
    PyObject *me_key;
    PyObject *me_value;
} PyDictKeyEntry;

typedef Py_ssize_t (*dict_lookup_func)
    (PyDictObject *mp, PyObject *key, Py_hash_t hash, PyObject **value_addr);

struct _dictkeysobject {
    Py_ssize_t dk_refcnt;
    Py_ssize_t dk_size;
    dict_lookup_func dk_lookup;
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
};
"""

PRIVATE_MODULE_38_39 = """
typedef struct {
    PyObject_HEAD
    PyObject *md_dict;
    struct PyModuleDef *md_def;
    void *md_state;
    PyObject *md_weaklist;
    PyObject *md_name;
} PyModuleObject;
"""

# The str state word's bits (where kind, compact and ascii sit: free-threaded 3.14+ moved
# them), and facts that must hold for the reader's hard-coded decoding, checked against every
# build: the probe prints "check.<name> <value>"; those are not written to layouts.py.
CHECKS_C = r"""
static unsigned int state_word(PyASCIIObject *a) {
    unsigned int w = 0;
    memcpy(&w, &a->state, sizeof(w) < sizeof(a->state) ? sizeof(w) : sizeof(a->state));
    return w;
}

static void checks(void) {
    PyASCIIObject a;
    memset(&a, 0, sizeof a); a.state.kind = 7;
    printf("unicode.kind_mask %u\n", state_word(&a));
    memset(&a, 0, sizeof a); a.state.compact = 1;
    printf("unicode.compact_mask %u\n", state_word(&a));
    memset(&a, 0, sizeof a); a.state.ascii = 1;
    printf("unicode.ascii_mask %u\n", state_word(&a));
    printf("check.unicode.PyUnicode_1BYTE_KIND %d\n", (int)PyUnicode_1BYTE_KIND);
    printf("check.unicode.PyUnicode_2BYTE_KIND %d\n", (int)PyUnicode_2BYTE_KIND);
    printf("check.unicode.PyUnicode_4BYTE_KIND %d\n", (int)PyUnicode_4BYTE_KIND);
    printf("check.sizeof_digit %d\n", (int)sizeof(digit));
    printf("check.sizeof_void_p %d\n", (int)sizeof(void *));
}
"""

EXPECTED_CHECKS = {
    "check.unicode.PyUnicode_1BYTE_KIND": 1,
    "check.unicode.PyUnicode_2BYTE_KIND": 2,
    "check.unicode.PyUnicode_4BYTE_KIND": 4,
    "check.sizeof_digit": 4,
    "check.sizeof_void_p": 8,
}


_DEBUG_STRUCT = re.compile(r"typedef struct _Py_DebugOffsets \{(.*?)\} _Py_DebugOffsets;", re.S)
_DEBUG_GROUP = re.compile(r"struct\s*\w*\s*\{([^{}]*)\}\s*(\w+)\s*;")
_DEBUG_FIELD = re.compile(r"uint64_t\s+(\w+)\s*;")


def debug_offsets_fields(include: str) -> list[tuple[str, str]]:
    """(group, field) of every uint64 in this version's `_Py_DebugOffsets`, from its header."""
    for name in ("pycore_debug_offsets.h", "pycore_runtime.h"):
        path = os.path.join(include, "internal", name)
        if not os.path.isfile(path):
            continue
        with open(path) as fh:
            text = re.sub(r"/\*.*?\*/|//[^\n]*", "", fh.read(), flags=re.S)
        match = _DEBUG_STRUCT.search(text)
        if match is None:
            continue
        body = match.group(1)
        out = [("", f) for f in _DEBUG_FIELD.findall(_DEBUG_GROUP.sub("", body))]
        for group_body, group in _DEBUG_GROUP.findall(body):
            out += [(group, f) for f in _DEBUG_FIELD.findall(group_body)]
        return out
    raise SystemExit(f"no _Py_DebugOffsets declaration under {include}/internal")


def probe_source(b: Build, include: str) -> str:
    v = b.version
    lines = ["/* generated by tools/gen_layouts.py */", "#define Py_BUILD_CORE 1"]
    if b.free_threaded:
        lines += ["#ifndef Py_GIL_DISABLED", "#define Py_GIL_DISABLED 1", "#endif"]
    lines += [f'#include "{h}"' for h in INCLUDES[v]]
    lines += ["#include <stddef.h>", "#include <stdio.h>", "#include <string.h>"]
    if v <= V310:
        lines.append(PRIVATE_DICT_38_310)
    if v <= V39:
        lines.append(PRIVATE_MODULE_38_39)
    lines.append(CHECKS_C)
    lines.append("int main(void) {")
    lines.append("    checks();")
    fields = [f for f in FIELDS if f.applies(v)]
    if v >= V313:
        fields.append(Field("debug.size", size("_Py_DebugOffsets")))
        for group, name in debug_offsets_fields(include):
            member = f"{group}.{name}" if group else name
            fields.append(Field(f"debug.{member}", off("_Py_DebugOffsets", member)))
    for f in fields:
        stmt = f'    printf("%s %lld\\n", "{f.key}", (long long)({f.expr}));'
        if f.guard:
            lines += [f"#if {f.guard}", stmt, "#endif"]
        else:
            lines.append(stmt)
    lines += ["    return 0;", "}", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class Headers:
    """Where one build's headers are: the python3.X include dir and any extra -I dirs."""

    include: str
    extra: tuple[str, ...] = ()
    source: str = ""  # what to name in the generated file's docstring


def _pyenv_headers(pyenv: str, v: Version) -> Headers | None:
    pattern = os.path.join(pyenv, f"{v[0]}.{v[1]}.*")
    cands = []
    for path in glob.glob(pattern):
        m = re.fullmatch(rf"{v[0]}\.{v[1]}\.(\d+)", os.path.basename(path))
        inc = os.path.join(path, "include", f"python{v[0]}.{v[1]}")
        if m and os.path.isfile(os.path.join(inc, "Python.h")):
            cands.append((int(m.group(1)), inc, os.path.basename(path)))
    if not cands:
        return None
    _, inc, release = max(cands)  # newest patch release
    return Headers(inc, source=release)


def _sid_headers(v: Version, workdir: str) -> Headers | None:
    """Debian sid's -dev headers in the sid root. Debian's pyconfig.h includes
    <x86_64-linux-gnu/python3.X/pyconfig.h>: a private -I dir reaches just that, since the
    root's other headers (its newer glibc's) must not replace the host's."""
    usr = os.path.join(PYTHONS, "sid", "usr", "include")
    inc = os.path.join(usr, f"python{v[0]}.{v[1]}")
    arch = os.path.join(usr, "x86_64-linux-gnu", f"python{v[0]}.{v[1]}")
    if not (os.path.isfile(os.path.join(inc, "Python.h")) and os.path.isdir(arch)):
        return None
    shim = os.path.join(workdir, f"sid{v[0]}{v[1]}")
    os.makedirs(os.path.join(shim, "x86_64-linux-gnu"), exist_ok=True)
    link = os.path.join(shim, "x86_64-linux-gnu", f"python{v[0]}.{v[1]}")
    if not os.path.lexists(link):
        os.symlink(arch, link)
    version = _patchlevel(inc)
    return Headers(inc, (shim,), source=f"Debian sid {version}")


def _patchlevel(include: str) -> str:
    with open(os.path.join(include, "patchlevel.h")) as fh:
        m = re.search(r'#define PY_VERSION\s+"([^"]+)"', fh.read())
    return m.group(1) if m else "?"


def find_headers(b: Build, pyenv: str, workdir: str) -> Headers | None:
    v = b.version
    if b.free_threaded and v == V313:
        inc = os.path.join(PYTHONS, "cpython-3.13t", "include", "python3.13t")
        if os.path.isfile(os.path.join(inc, "Python.h")):
            return Headers(inc, source=f"{_patchlevel(inc)} --disable-gil")
        return None
    if v >= V314:
        found = _sid_headers(v, workdir)
        if found is not None and b.free_threaded:
            return Headers(found.include, found.extra, found.source + " with Py_GIL_DISABLED")
        return found
    return _pyenv_headers(pyenv, v)


def run_probe(b: Build, headers: Headers, cc: str, workdir: str) -> dict[str, int]:
    tag = b.name.replace(".", "")
    src = os.path.join(workdir, f"probe_{tag}.c")
    exe = os.path.join(workdir, f"probe_{tag}")
    with open(src, "w") as fh:
        fh.write(probe_source(b, headers.include))
    cmd = [cc, "-std=gnu11", "-O0", "-w", "-DPy_BUILD_CORE", "-I", headers.include]
    cmd += ["-I", os.path.join(headers.include, "internal")]
    for extra in headers.extra:
        cmd += ["-I", extra]
    cmd += [src, "-o", exe]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"compiling the {b.name} probe failed:\n{' '.join(cmd)}\n{proc.stderr}")
    out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout
    values: dict[str, int] = {}
    for line in out.splitlines():
        key, _, val = line.partition(" ")
        if key in values:
            raise SystemExit(f"{b.name}: key {key} printed twice")
        values[key] = int(val)
    for key, want in EXPECTED_CHECKS.items():
        if values.pop(key, None) != want:
            raise SystemExit(
                f"{b.name}: {key} is not {want}: the reader's hard-coded "
                "decoding is wrong for this build"
            )
    return values


def render(layouts: dict[str, dict[str, int]], sources: dict[str, str]) -> str:
    out = [
        "# generated by tools/gen_layouts.py, do not edit",
        '"""CPython struct layouts (64-bit Linux) per build: "3.13", or "3.13t" free-threaded.',
        "",
        "Byte offsets are from the start of the named struct; `.size` keys are sizeof();",
        "`const.` keys are C constants; `debug.GROUP.FIELD` keys are where that field sits",
        "inside the build's own `_Py_DebugOffsets` (3.13+). A key is absent when that build has",
        "no such field. Derived with offsetof()/sizeof() against the headers of:",
    ]
    out += [f"    {name}: {sources[name]}" for name in sorted(layouts, key=_build_order)]
    out += [
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "LAYOUTS: dict[str, dict[str, int]] = {",
    ]
    for name in sorted(layouts, key=_build_order):
        out.append(f'    "{name}": {{')
        for key in sorted(layouts[name]):
            out.append(f'        "{key}": {layouts[name][key]},')
        out.append("    },")
    out.append("}")
    out.append("")
    return "\n".join(out)


def _build_order(name: str) -> tuple:
    major, minor = name.rstrip("t").split(".")
    return int(major), int(minor), name.endswith("t")


def _committed(path: str) -> dict[str, dict[str, int]]:
    namespace: dict = {}
    try:
        with open(path) as fh:
            exec(compile(fh.read(), path, "exec"), namespace)
    except FileNotFoundError:
        return {}
    return namespace.get("LAYOUTS", {})


def _committed_sources(path: str) -> dict[str, str]:
    """The "build: headers" lines of the committed file's docstring."""
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        return {}
    return dict(re.findall(r"^    (\d+\.\d+t?): (.+)$", text, flags=re.M))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--pyenv",
        default=os.path.expanduser("~/.pyenv/versions"),
        help="directory holding the 3.X.Y installs (default: %(default)s)",
    )
    ap.add_argument("--cc", default=os.environ.get("CC", "gcc"))
    ap.add_argument("--output", default=OUTPUT)
    ap.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if any build whose headers are here differs from the file",
    )
    ap.add_argument(
        "--keep-missing",
        action="store_true",
        help="a build whose headers are not here keeps its entry from the committed file",
    )
    ap.add_argument("--print-probe", metavar="3.X[t]", help="print one build's C probe and exit")
    args = ap.parse_args(argv)

    builds = {b.name: b for b in BUILDS}
    layouts: dict[str, dict[str, int]] = {}
    sources: dict[str, str] = {}
    missing = []
    with tempfile.TemporaryDirectory(prefix="gen_layouts_") as workdir:
        if args.print_probe:
            b = builds[args.print_probe]
            headers = find_headers(b, args.pyenv, workdir)
            print(probe_source(b, headers.include if headers else ""))
            return 0
        for b in BUILDS:
            headers = find_headers(b, args.pyenv, workdir)
            if headers is None:
                missing.append(b.name)
                continue
            layouts[b.name] = run_probe(b, headers, args.cc, workdir)
            sources[b.name] = headers.source
            print(
                f"{b.name}: {len(layouts[b.name])} entries from {headers.include}", file=sys.stderr
            )

    if args.check:
        committed = _committed(args.output)
        stale = [name for name in layouts if committed.get(name) != layouts[name]]
        if missing:
            print(f"not checked (no headers here): {', '.join(missing)}", file=sys.stderr)
        if stale:
            print(
                f"{args.output} is out of date for {', '.join(stale)}: run tools/gen_layouts.py",
                file=sys.stderr,
            )
            return 1
        print(f"{args.output} is up to date for {', '.join(layouts)}", file=sys.stderr)
        return 0
    if missing and args.keep_missing:
        # Builds without headers here keep what the committed file says of them.
        committed, committed_sources = _committed(args.output), _committed_sources(args.output)
        for name in [m for m in missing if m in committed]:
            layouts[name] = committed[name]
            sources[name] = committed_sources.get(name, "?")
            missing.remove(name)
    if missing:
        # A partial table would silently drop support for a build: refuse.
        print(
            f"error: no headers found for {', '.join(missing)} (pyenv: {args.pyenv}, "
            f"others: {PYTHONS}; tools/install_pythons.sh installs them)",
            file=sys.stderr,
        )
        return 2
    text = render(layouts, sources)
    with open(args.output, "w") as fh:
        fh.write(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
