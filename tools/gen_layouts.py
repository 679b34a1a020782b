#!/usr/bin/env python3
"""Generate spy_magic/reader/layouts.py: CPython struct offsets, sizes and constants.

For every supported CPython (3.8 to 3.13) installed under ~/.pyenv/versions (or the directory
given with --pyenv), this writes a small C probe that prints offsetof()/sizeof() of the fields
the remote reader needs, compiles it with gcc against that version's own headers (with
Py_BUILD_CORE, so the internal structs are visible), runs it and collects the numbers.

The result is committed, so users never need a compiler or the headers.

    python tools/gen_layouts.py            # regenerate spy_magic/reader/layouts.py
    python tools/gen_layouts.py --check    # exit 1 if the committed file is out of date

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
VERSIONS = [(3, 8), (3, 9), (3, 10), (3, 11), (3, 12), (3, 13)]

Version = tuple[int, int]


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


V38, V39, V310, V311, V312, V313 = VERSIONS
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
    Field("tstate.size", size("PyThreadState")),
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
    Field("object.ob_refcnt", off("PyObject", "ob_refcnt")),
    Field("object.ob_type", off("PyObject", "ob_type")),
    Field("varobject.ob_size", off("PyVarObject", "ob_size")),
    Field("type.tp_name", off("PyTypeObject", "tp_name")),
    Field("type.tp_basicsize", off("PyTypeObject", "tp_basicsize")),
    Field("type.tp_itemsize", off("PyTypeObject", "tp_itemsize")),
    Field("type.tp_dictoffset", off("PyTypeObject", "tp_dictoffset")),
    Field("type.tp_flags", off("PyTypeObject", "tp_flags")),
    Field("heaptype.ht_cached_keys", off("PyHeapTypeObject", "ht_cached_keys"), since=V311),
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
    Field("const.FRAME_OWNED_BY_CSTACK", "FRAME_OWNED_BY_CSTACK", since=V312),
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

# Facts that must hold for the reader's hard-coded decoding; checked against every version.
# The probe prints "check.<name> <value>"; these are not written to layouts.py.
CHECKS_C = r"""
static unsigned int state_word(PyASCIIObject *a) {
    unsigned int w = 0;
    memcpy(&w, &a->state, sizeof(w) < sizeof(a->state) ? sizeof(w) : sizeof(a->state));
    return w;
}

static void checks(void) {
    PyASCIIObject a;
    memset(&a, 0, sizeof a); a.state.kind = 7;
    printf("check.unicode.kind_mask %u\n", state_word(&a));
    memset(&a, 0, sizeof a); a.state.compact = 1;
    printf("check.unicode.compact_mask %u\n", state_word(&a));
    memset(&a, 0, sizeof a); a.state.ascii = 1;
    printf("check.unicode.ascii_mask %u\n", state_word(&a));
    printf("check.unicode.PyUnicode_1BYTE_KIND %d\n", (int)PyUnicode_1BYTE_KIND);
    printf("check.unicode.PyUnicode_2BYTE_KIND %d\n", (int)PyUnicode_2BYTE_KIND);
    printf("check.unicode.PyUnicode_4BYTE_KIND %d\n", (int)PyUnicode_4BYTE_KIND);
    printf("check.sizeof_digit %d\n", (int)sizeof(digit));
    printf("check.sizeof_void_p %d\n", (int)sizeof(void *));
}
"""

EXPECTED_CHECKS = {
    "check.unicode.kind_mask": 7 << 2,
    "check.unicode.compact_mask": 1 << 5,
    "check.unicode.ascii_mask": 1 << 6,
    "check.unicode.PyUnicode_1BYTE_KIND": 1,
    "check.unicode.PyUnicode_2BYTE_KIND": 2,
    "check.unicode.PyUnicode_4BYTE_KIND": 4,
    "check.sizeof_digit": 4,
    "check.sizeof_void_p": 8,
}


def probe_source(v: Version) -> str:
    lines = [
        "/* generated by tools/gen_layouts.py */",
        "#define Py_BUILD_CORE 1",
    ]
    lines += [f'#include "{h}"' for h in INCLUDES[v]]
    lines += ["#include <stddef.h>", "#include <stdio.h>", "#include <string.h>"]
    if v <= V310:
        lines.append(PRIVATE_DICT_38_310)
    if v <= V39:
        lines.append(PRIVATE_MODULE_38_39)
    lines.append(CHECKS_C)
    lines.append("int main(void) {")
    lines.append("    checks();")
    for f in FIELDS:
        if not f.applies(v):
            continue
        stmt = f'    printf("%s %lld\\n", "{f.key}", (long long)({f.expr}));'
        if f.guard:
            lines += [f"#if {f.guard}", stmt, "#endif"]
        else:
            lines.append(stmt)
    lines += ["    return 0;", "}", ""]
    return "\n".join(lines)


def find_install(pyenv: str, v: Version) -> str | None:
    pattern = os.path.join(pyenv, f"{v[0]}.{v[1]}.*")
    cands = []
    for path in glob.glob(pattern):
        m = re.fullmatch(rf"{v[0]}\.{v[1]}\.(\d+)", os.path.basename(path))
        inc = os.path.join(path, "include", f"python{v[0]}.{v[1]}")
        if m and os.path.isfile(os.path.join(inc, "Python.h")):
            cands.append((int(m.group(1)), path))
    if not cands:
        return None
    return max(cands)[1]  # newest patch release


def run_probe(install: str, v: Version, cc: str, workdir: str) -> dict[str, int]:
    inc = os.path.join(install, "include", f"python{v[0]}.{v[1]}")
    src = os.path.join(workdir, f"probe_{v[0]}{v[1]}.c")
    exe = os.path.join(workdir, f"probe_{v[0]}{v[1]}")
    with open(src, "w") as fh:
        fh.write(probe_source(v))
    cmd = [
        cc,
        "-std=gnu11",
        "-O0",
        "-w",
        "-DPy_BUILD_CORE",
        "-I",
        inc,
        "-I",
        os.path.join(inc, "internal"),
        src,
        "-o",
        exe,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"compiling the {v[0]}.{v[1]} probe failed:\n{' '.join(cmd)}\n{proc.stderr}"
        )
    out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout
    values: dict[str, int] = {}
    for line in out.splitlines():
        key, _, val = line.partition(" ")
        if key in values:
            raise SystemExit(f"{v[0]}.{v[1]}: key {key} printed twice")
        values[key] = int(val)
    for key, want in EXPECTED_CHECKS.items():
        if values.pop(key, None) != want:
            raise SystemExit(
                f"{v[0]}.{v[1]}: {key} is not {want}: the reader's hard-coded "
                "decoding is wrong for this version"
            )
    return values


def render(layouts: dict[Version, dict[str, int]], sources: dict[Version, str]) -> str:
    out = [
        "# generated by tools/gen_layouts.py, do not edit",
        '"""CPython struct layouts (64-bit Linux) per (major, minor) version.',
        "",
        "Byte offsets are from the start of the named struct; `.size` keys are sizeof();",
        "`const.` keys are C constants. A key is absent when that version has no such field.",
        "Derived with offsetof()/sizeof() against the installed headers of:",
    ]
    out += [f"    {v[0]}.{v[1]}: {os.path.basename(sources[v])}" for v in sorted(layouts)]
    out += [
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "LAYOUTS: dict[tuple[int, int], dict[str, int]] = {",
    ]
    for v in sorted(layouts):
        out.append(f"    ({v[0]}, {v[1]}): {{")
        for key in sorted(layouts[v]):
            out.append(f'        "{key}": {layouts[v][key]},')
        out.append("    },")
    out.append("}")
    out.append("")
    return "\n".join(out)


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
        "--check", action="store_true", help="do not write; exit 1 if the output file differs"
    )
    ap.add_argument("--print-probe", metavar="3.X", help="print one version's C probe and exit")
    args = ap.parse_args(argv)

    if args.print_probe:
        major, minor = (int(x) for x in args.print_probe.split("."))
        print(probe_source((major, minor)))
        return 0

    layouts: dict[Version, dict[str, int]] = {}
    sources: dict[Version, str] = {}
    missing = []
    with tempfile.TemporaryDirectory(prefix="gen_layouts_") as workdir:
        for v in VERSIONS:
            install = find_install(args.pyenv, v)
            if install is None:
                missing.append(f"{v[0]}.{v[1]}")
                continue
            layouts[v] = run_probe(install, v, args.cc, workdir)
            sources[v] = install
            print(f"{v[0]}.{v[1]}: {len(layouts[v])} entries from {install}", file=sys.stderr)
    if missing:
        # A partial table would silently drop support for a version: refuse.
        print(
            f"error: no headers found for Python {', '.join(missing)} under {args.pyenv}",
            file=sys.stderr,
        )
        return 2

    text = render(layouts, sources)
    if args.check:
        try:
            with open(args.output) as fh:
                current = fh.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            print(f"{args.output} is out of date: run tools/gen_layouts.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date", file=sys.stderr)
        return 0
    with open(args.output, "w") as fh:
        fh.write(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
