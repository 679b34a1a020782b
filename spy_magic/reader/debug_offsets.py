"""CPython 3.13+'s own description of its layout: `_Py_DebugOffsets` at the start of _PyRuntime.

Where each field sits inside that struct differs between versions (fields get inserted); the
generated table records it per build (`debug.GROUP.FIELD` keys, from the build's header), so
one parser serves every version. The struct is untrusted input (it is whatever bytes the
target holds): every offset is checked against the size of the struct it indexes before it
replaces a table entry, and a struct that fails a check is refused whole.
"""

from __future__ import annotations

import struct

COOKIE = b"xdebugpy"
HEADER_SIZE = 24  # cookie, packed version, free_threaded
MAX_STRUCT_SIZE = 1 << 20
MAX_DEBUG_OFFSETS_SIZE = 1 << 16

# Our layout key <- (group, field) of `_Py_DebugOffsets`. A pair the build's struct lacks is
# skipped (the table's value stays). Each offset must lie inside its group's `size`.
MAPPING = {
    "runtime.interpreters_head": ("runtime_state", "interpreters_head"),
    "interp.id": ("interpreter_state", "id"),
    "interp.next": ("interpreter_state", "next"),
    "interp.threads_head": ("interpreter_state", "threads_head"),
    "interp.modules": ("interpreter_state", "imports_modules"),
    "interp.sysdict": ("interpreter_state", "sysdict"),
    "interp.ceval_gil": ("interpreter_state", "ceval_gil"),
    "interp.size": ("interpreter_state", "size"),
    "interp.gc": ("interpreter_state", "gc"),
    "gcstate.collecting": ("gc", "collecting"),
    "gcstate.size": ("gc", "size"),
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
    "type.tp_basicsize": ("type_object", "tp_basicsize"),
    "type.tp_dictoffset": ("type_object", "tp_dictoffset"),
    "heaptype.ht_cached_keys": ("heap_type_object", "ht_cached_keys"),
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
    "unicode.compact_data": ("unicode_object", "compactunicodeobject_size"),
}
# Described only by free-threaded builds (a standard build's struct holds 0 there).
FREE_THREADED_MAPPING = {
    "iframe.tlbc_index": ("interpreter_frame", "tlbc_index"),
    "code.co_tlbc": ("code_object", "co_tlbc"),
}
# Sizes, not offsets: they are the bound, so only their own plausibility is checked.
_SIZES = {"interp.size", "tstate.size", "iframe.size", "code.size", "gcstate.size"}
# The GIL fields are given as offsets inside the interpreter state (of its embedded GIL);
# we want them relative to the GIL struct, which `ceval_gil` points at.
_GIL_FIELDS = {
    "gil.locked": "gil_runtime_state_locked",
    "gil.last_holder": "gil_runtime_state_holder",
}


class DebugOffsetsError(ValueError):
    """The bytes are not a `_Py_DebugOffsets` we can trust; the message says which check."""


def parse_header(raw: bytes) -> tuple[int, bool]:
    """(packed version, free-threaded) from the first 24 bytes; raises if there is no cookie."""
    if len(raw) < HEADER_SIZE or raw[:8] != COOKIE:
        raise DebugOffsetsError("no _Py_DebugOffsets cookie")
    version, free_threaded = struct.unpack_from("<QQ", raw, 8)
    if free_threaded not in (0, 1):
        raise DebugOffsetsError(f"free_threaded flag is {free_threaded}, neither 0 nor 1")
    return version, bool(free_threaded)


def parse(raw: bytes, table: dict[str, int], free_threaded: bool) -> dict[str, int]:
    """Our layout keys, read from a `_Py_DebugOffsets` laid out as `table` says, each
    bounds-checked against the size of the struct it indexes."""
    size = table.get("debug.size", 0)
    if not HEADER_SIZE < size <= MAX_DEBUG_OFFSETS_SIZE:
        raise DebugOffsetsError("this build's _Py_DebugOffsets layout is not known")
    if len(raw) < size:
        raise DebugOffsetsError("truncated _Py_DebugOffsets")

    def value(group: str, name: str) -> int | None:
        position = table.get(f"debug.{group}.{name}")
        if position is None:
            return None
        if not HEADER_SIZE <= position <= size - 8:
            raise DebugOffsetsError(f"{group}.{name} lies outside _Py_DebugOffsets")
        return struct.unpack_from("<Q", raw, position)[0]

    mapping = dict(MAPPING)
    if free_threaded:
        mapping.update(FREE_THREADED_MAPPING)
    groups = {group for group, _ in mapping.values()}
    sizes: dict[str, int] = {}
    for group in groups:
        group_size = value(group, "size")
        if group_size is None:
            continue
        if not 0 < group_size <= MAX_STRUCT_SIZE:
            raise DebugOffsetsError(f"implausible size {group_size} for {group}")
        sizes[group] = group_size
    out: dict[str, int] = {}
    for key, (group, name) in mapping.items():
        found = value(group, name)
        if found is None:
            continue
        if key not in _SIZES:
            limit = sizes.get(group)
            if limit is None:
                raise DebugOffsetsError(f"{group} has no size to check {name} against")
            if not 0 <= found < limit:
                raise DebugOffsetsError(f"{group}.{name} = {found} lies outside its struct")
        out[key] = found
    # Two fields of one struct at one offset: the description is corrupt.
    taken: dict[tuple[str, int], str] = {}
    for key, (group, name) in mapping.items():
        if key in out and key not in _SIZES:
            other = taken.setdefault((group, out[key]), name)
            if other != name:
                raise DebugOffsetsError(
                    f"{group}.{name} and {group}.{other} share offset {out[key]}"
                )
    gil_start = value("interpreter_state", "gil_runtime_state")
    if gil_start is not None:
        interp_size = sizes["interpreter_state"]
        for key, name in _GIL_FIELDS.items():
            found = value("interpreter_state", name)
            if found is None or not gil_start <= found < interp_size:
                raise DebugOffsetsError(f"{name} = {found} lies outside the interpreter's GIL")
            out[key] = found - gil_start
    return out
