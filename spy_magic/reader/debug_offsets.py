"""CPython 3.13's own description of its layout: `_Py_DebugOffsets` at the start of _PyRuntime.

The struct is untrusted input (it is whatever bytes the target holds): every offset is
checked against the size of the struct it indexes before it replaces a table entry.
"""

from __future__ import annotations

import struct

COOKIE = b"xdebugpy"
MAX_STRUCT_SIZE = 1 << 20

# The 3.13 layout, in order: (group, [fields]); every group starts with its struct's size.
_LAYOUT_313 = (
    ("runtime_state", ("size", "finalizing", "interpreters_head")),
    (
        "interpreter_state",
        (
            "size",
            "id",
            "next",
            "threads_head",
            "gc",
            "imports_modules",
            "sysdict",
            "builtins",
            "ceval_gil",
            "gil_runtime_state",
            "gil_runtime_state_enabled",
            "gil_runtime_state_locked",
            "gil_runtime_state_holder",
        ),
    ),
    (
        "thread_state",
        (
            "size",
            "prev",
            "next",
            "interp",
            "current_frame",
            "thread_id",
            "native_thread_id",
            "datastack_chunk",
            "status",
        ),
    ),
    ("interpreter_frame", ("size", "previous", "executable", "instr_ptr", "localsplus", "owner")),
    (
        "code_object",
        (
            "size",
            "filename",
            "name",
            "qualname",
            "linetable",
            "firstlineno",
            "argcount",
            "localsplusnames",
            "localspluskinds",
            "co_code_adaptive",
        ),
    ),
    ("pyobject", ("size", "ob_type")),
    ("type_object", ("size", "tp_name", "tp_repr", "tp_flags")),
    ("tuple_object", ("size", "ob_item", "ob_size")),
    ("list_object", ("size", "ob_item", "ob_size")),
    ("dict_object", ("size", "ma_keys", "ma_values")),
    ("float_object", ("size", "ob_fval")),
    ("long_object", ("size", "lv_tag", "ob_digit")),
    ("bytes_object", ("size", "ob_size", "ob_sval")),
    ("unicode_object", ("size", "state", "length", "asciiobject_size")),
    ("gc", ("size", "collecting")),
)

# Our layout key <- (group, field). Offsets into sub-structs are checked against that size.
_MAPPING = {
    "runtime.interpreters_head": ("runtime_state", "interpreters_head"),
    "interp.id": ("interpreter_state", "id"),
    "interp.next": ("interpreter_state", "next"),
    "interp.threads_head": ("interpreter_state", "threads_head"),
    "interp.modules": ("interpreter_state", "imports_modules"),
    "interp.sysdict": ("interpreter_state", "sysdict"),
    "interp.ceval_gil": ("interpreter_state", "ceval_gil"),
    "interp.size": ("interpreter_state", "size"),
    "tstate.prev": ("thread_state", "prev"),
    "tstate.next": ("thread_state", "next"),
    "tstate.interp": ("thread_state", "interp"),
    "tstate.current_frame": ("thread_state", "current_frame"),
    "tstate.thread_id": ("thread_state", "thread_id"),
    "tstate.native_thread_id": ("thread_state", "native_thread_id"),
    "tstate.datastack_chunk": ("thread_state", "datastack_chunk"),
    "tstate.size": ("thread_state", "size"),
    "iframe.previous": ("interpreter_frame", "previous"),
    "iframe.code": ("interpreter_frame", "executable"),
    "iframe.instr_ptr": ("interpreter_frame", "instr_ptr"),
    "iframe.localsplus": ("interpreter_frame", "localsplus"),
    "iframe.owner": ("interpreter_frame", "owner"),
    "iframe.size": ("interpreter_frame", "size"),
    "code.filename": ("code_object", "filename"),
    "code.name": ("code_object", "name"),
    "code.qualname": ("code_object", "qualname"),
    "code.linetable": ("code_object", "linetable"),
    "code.firstlineno": ("code_object", "firstlineno"),
    "code.code_adaptive": ("code_object", "co_code_adaptive"),
    "code.size": ("code_object", "size"),
    "object.ob_type": ("pyobject", "ob_type"),
    "type.tp_name": ("type_object", "tp_name"),
    "type.tp_flags": ("type_object", "tp_flags"),
    "tuple.ob_item": ("tuple_object", "ob_item"),
    "list.ob_item": ("list_object", "ob_item"),
    "dict.ma_keys": ("dict_object", "ma_keys"),
    "dict.ma_values": ("dict_object", "ma_values"),
    "long.lv_tag": ("long_object", "lv_tag"),
    "long.ob_digit": ("long_object", "ob_digit"),
    "bytes.ob_size": ("bytes_object", "ob_size"),
    "bytes.ob_sval": ("bytes_object", "ob_sval"),
    "unicode.state": ("unicode_object", "state"),
    "unicode.length": ("unicode_object", "length"),
    "unicode.ascii_data": ("unicode_object", "asciiobject_size"),
}
# The GIL fields are given as offsets inside the interpreter state (of its embedded GIL);
# we want them relative to the GIL struct, which `ceval_gil` points at.
_GIL_FIELDS = {
    "gil.locked": "gil_runtime_state_locked",
    "gil.last_holder": "gil_runtime_state_holder",
}


class DebugOffsetsError(ValueError):
    """The bytes are not a `_Py_DebugOffsets` we can trust."""


def header_size() -> int:
    return 24 + 8 * sum(len(fields) for _, fields in _LAYOUT_313)


def parse_header(raw: bytes) -> tuple[int, bool]:
    """(packed version, free-threaded) from the first 24 bytes; raises if there is no cookie."""
    if raw[:8] != COOKIE:
        raise DebugOffsetsError("no _Py_DebugOffsets cookie")
    version, free_threaded = struct.unpack_from("<QQ", raw, 8)
    return version, bool(free_threaded)


def parse_313(raw: bytes) -> dict[str, int]:
    """Our layout keys, taken from a 3.13 `_Py_DebugOffsets`, each bounds-checked."""
    if len(raw) < header_size():
        raise DebugOffsetsError("truncated _Py_DebugOffsets")
    values: dict[tuple[str, str], int] = {}
    pos = 24
    for group, fields in _LAYOUT_313:
        for name in fields:
            values[(group, name)] = struct.unpack_from("<Q", raw, pos)[0]
            pos += 8
    for group, _ in _LAYOUT_313:
        if not 0 < values[(group, "size")] <= MAX_STRUCT_SIZE:
            raise DebugOffsetsError(f"implausible size for {group}")
    out: dict[str, int] = {}
    for key, (group, name) in _MAPPING.items():
        value = values[(group, name)]
        limit = values[(group, "size")]
        if name != "size" and not 0 <= value < limit:
            raise DebugOffsetsError(f"{group}.{name} = {value} lies outside its struct")
        out[key] = value
    gil_start = values[("interpreter_state", "gil_runtime_state")]
    interp_size = values[("interpreter_state", "size")]
    for key, name in _GIL_FIELDS.items():
        value = values[("interpreter_state", name)]
        if not gil_start <= value < interp_size:
            raise DebugOffsetsError(f"{name} = {value} lies outside the interpreter's GIL")
        out[key] = value - gil_start
    return out
