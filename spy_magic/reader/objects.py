"""Reading Python objects (str, bytes, int, dict, instance attributes) out of another process.

Everything here treats the target's memory as untrusted: the target keeps running while we
read it (so a dict may be resized under us), and a hostile or corrupted process could hand us
any bytes at all. Every length is bounded before it is used for a read, every loop has a fixed
upper bound, and anything that does not look like the object it should be raises `BadObject`
(or `MemoryReadError` when an address cannot be read) instead of looping or allocating without
limit.

    reader = ObjectReader(memory, (3, 12), LAYOUTS["3.12"])
    reader.read_str(addr)                     # -> str
    reader.dict_items(addr)                   # -> [(key address, value address), ...]
    reader.dict_get_str(addr, "threading")    # -> value address or None
    reader.get_attr(addr, "_name")            # -> attribute value address or None
    thread_names(memory, (3, 12), layout, interp_address)   # -> {thread ident: name}

Versions 3.8 to 3.15 (64-bit): struct offsets come from the generated `layouts.LAYOUTS`; the
few layout rules that are code rather than offsets (where managed dicts live, how split tables
record insertion order) are written out below per version, with the CPython source they follow.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .errors import AccessDenied, MemoryReadError, ProcessExited, ReaderError
from .layouts import LAYOUTS
from .memory import ProcessMemory
from .model import decode_name
from .versions import KNOWN

_Q = struct.Struct("<Q")
_q = struct.Struct("<q")
_I = struct.Struct("<I")

PTR = 8
PAGE = 4096

# Default bounds (callers may pass tighter ones).
MAX_STR_CHARS = 1 << 20  # characters in one str
MAX_BYTES = 1 << 22  # bytes in one bytes object
MAX_INT_DIGITS = 1 << 12  # 30-bit digits in one int (about 37000 decimal digits)
MAX_DICT_ENTRIES = 1 << 17  # entries in one dict's table
MAX_CSTRING = 1024  # bytes of a C string (tp_name)
MAX_THREADS = 10_000
# A thread name longer than this is cut there, marked "…(N chars)": it still names the thread.
THREAD_NAME_CHARS = 200

# Speculative header reads: one syscall fetches the header plus the characters of a short
# string / the digits of a small int; on a failed read we retry with the exact header size.
_STR_PEEK = 128
_INT_PEEK_DIGITS = 4
_BYTES_PEEK = 64

_KIND_CODECS = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}


class BadObject(ReaderError):
    """Memory at an address does not hold the object it should (torn, freed, or hostile)."""

    def __init__(self, address: int, detail: str) -> None:
        super().__init__(f"unexpected object at {address:#x}: {detail}")
        self.address = address


@dataclass(frozen=True)
class TypeInfo:
    """The fields of a type object the reader uses."""

    address: int
    name_ptr: int
    basicsize: int
    itemsize: int
    dictoffset: int
    flags: int


@dataclass(frozen=True)
class _StrHeader:
    address: int
    length: int
    kind: int
    data: int  # address of the characters
    inline: bytes | None  # the characters, when the header read already covered them


@dataclass(frozen=True)
class _Keys:
    """A parsed PyDictKeysObject: where its entries are and how to read one."""

    address: int
    nentries: int
    entries: int
    entry_size: int
    key_off: int
    value_off: int
    split: bool  # 3.11+: dk_kind == DICT_KEYS_SPLIT


class ObjectReader:
    """Reads objects of one interpreter version from one process."""

    def __init__(
        self,
        memory: ProcessMemory,
        version: tuple[int, int],
        layout: dict[str, int] | None = None,
        *,
        max_dict_entries: int = MAX_DICT_ENTRIES,
    ) -> None:
        self.mem = memory
        self.version = tuple(version[:2])
        if self.version not in KNOWN:
            raise ValueError(f"no model of Python {version[0]}.{version[1]}")
        self._dicts = KNOWN[self.version].instance_dicts
        if layout is None:
            name = f"{version[0]}.{version[1]}"
            if name not in LAYOUTS:
                raise ValueError(f"no layout for Python {name}")
            layout = LAYOUTS[name]
        self.L = layout
        self.max_dict_entries = max_dict_entries
        self._static_types: dict[int, TypeInfo] = {}  # non-heap types never move or die
        self._names: dict[int, str] = {}  # tp_name pointer -> decoded name (static types)
        # Heap types, keys objects and strings can die and their addresses be reused: they are
        # only remembered within one batch operation (thread_names), never across calls.
        self._batch: dict | None = None
        L = layout
        self._heaptype = L["const.Py_TPFLAGS_HEAPTYPE"]
        self._type_read = max(
            L["type.tp_name"], L["type.tp_basicsize"], L["type.tp_itemsize"],
            L["type.tp_dictoffset"], L["type.tp_flags"],
        ) + PTR  # fmt: skip
        self._str_hdr = L["unicode.compact_data"] + PTR  # also covers data.any
        self._int_hdr = L["long.ob_digit"]
        self._bytes_hdr = L["bytes.ob_sval"]
        self._dict_hdr = max(L["dict.ma_used"], L["dict.ma_keys"], L["dict.ma_values"]) + PTR
        self._shift = L.get("const.PyLong_SHIFT", 30)
        # The str state word's bits (free-threaded 3.14+ moved them).
        self._kind_mask = L.get("unicode.kind_mask", 7 << 2)
        self._kind_shift = (self._kind_mask & -self._kind_mask).bit_length() - 1
        self._compact_mask = L.get("unicode.compact_mask", 1 << 5)
        self._ascii_mask = L.get("unicode.ascii_mask", 1 << 6)
        # 3.13+: which of the 4 words before an object holds its managed __dict__ pointer.
        self._managed_dict_word = 4 + L.get("const.MANAGED_DICT_OFFSET", -3 * PTR) // PTR

    # -- small helpers ----------------------------------------------------------------------
    def _u64(self, addr: int) -> int:
        return _Q.unpack(self.mem.read(addr, PTR))[0]

    def _read_cstring(self, addr: int, limit: int = MAX_CSTRING) -> str:
        """A NUL-terminated string, read a page at a time so we never read past its end."""
        if not addr:
            raise BadObject(addr, "NULL C string")
        out = b""
        while len(out) < limit:
            here = addr + len(out)
            step = min(PAGE - here % PAGE, limit - len(out), 256)
            chunk = self.mem.read(here, step)
            nul = chunk.find(b"\0")
            if nul >= 0:
                return decode_name(out + chunk[:nul])
            out += chunk
        raise BadObject(addr, f"C string longer than {limit} bytes")

    # -- types ------------------------------------------------------------------------------
    def type_of(self, addr: int) -> int:
        """The address of the object's type."""
        return self._u64(addr + self.L["object.ob_type"])

    def type_info(self, type_addr: int) -> TypeInfo:
        info = self._static_types.get(type_addr)
        if info is None and self._batch is not None:
            info = self._batch.get(("type", type_addr))
        if info is not None:
            return info
        return self._parse_type(type_addr, self.mem.read(type_addr, self._type_read))

    def _type_infos(self, type_addrs: Sequence[int]) -> dict[int, TypeInfo | None]:
        """TypeInfo for several types in one syscall (None for unreadable ones)."""
        out: dict[int, TypeInfo | None] = {}
        todo = []
        for t in set(type_addrs):
            info = self._static_types.get(t)
            if info is not None:
                out[t] = info
            elif t:
                todo.append(t)
            else:
                out[t] = None
        if todo:
            blobs = self.mem.read_many([(t, self._type_read) for t in todo])
            for t, blob in zip(todo, blobs):
                try:
                    out[t] = None if blob is None else self._parse_type(t, blob)
                except BadObject:
                    out[t] = None
        return out

    def _parse_type(self, type_addr: int, blob: bytes) -> TypeInfo:
        L = self.L
        info = TypeInfo(
            address=type_addr,
            name_ptr=_Q.unpack_from(blob, L["type.tp_name"])[0],
            basicsize=_q.unpack_from(blob, L["type.tp_basicsize"])[0],
            itemsize=_q.unpack_from(blob, L["type.tp_itemsize"])[0],
            dictoffset=_q.unpack_from(blob, L["type.tp_dictoffset"])[0],
            flags=_Q.unpack_from(blob, L["type.tp_flags"])[0],
        )
        if not (0 < info.basicsize < 1 << 20 and 0 <= info.itemsize < 1 << 16):
            raise BadObject(type_addr, "not a type object (implausible tp_basicsize)")
        if not info.flags & self._heaptype:
            if len(self._static_types) < 4096:
                self._static_types[type_addr] = info
        else:
            self._remember(("type", type_addr), info)
        return info

    def _remember(self, key: tuple, value) -> None:
        if self._batch is not None and len(self._batch) < 100_000:
            self._batch[key] = value

    def type_name(self, addr: int) -> str:
        """tp_name of the object's type ("str", "Thread", "collections.OrderedDict", ...)."""
        info = self.type_info(self.type_of(addr))
        name = self._names.get(info.name_ptr)
        if name is None:
            name = self._read_cstring(info.name_ptr)
            if not info.flags & self._heaptype and len(self._names) < 4096:
                self._names[info.name_ptr] = name
        return name

    def _require_flag(self, addr: int, blob: bytes, flag_key: str, what: str) -> TypeInfo:
        """Check the type of the object whose header is `blob`."""
        info = self.type_info(_Q.unpack_from(blob, self.L["object.ob_type"])[0])
        if not info.flags & self.L[flag_key]:
            raise BadObject(addr, f"not a {what} (type flags {info.flags:#x})")
        return info

    # -- str --------------------------------------------------------------------------------
    def read_str(self, addr: int, max_chars: int = MAX_STR_CHARS) -> str:
        """Decode a str object (any kind: compact ASCII, 1-, 2- and 4-byte, non-compact)."""
        out = self.read_strs([addr], max_chars=max_chars, strict=True)[0]
        assert out is not None
        return out

    def read_strs(
        self,
        addrs: Sequence[int],
        max_chars: int = MAX_STR_CHARS,
        strict: bool = False,
        cut_at: int | None = None,
    ) -> list[str | None]:
        """Decode many str objects in about two syscalls. A bad one is None (or raises, when
        `strict`). With `cut_at`, a longer one is read only that far and marked as cut:
        "first cut_at characters…(N chars)"."""
        headers = self._str_headers(addrs, max_chars, strict)
        if cut_at is None:
            return self._str_values(headers, strict)
        lengths = [h.length if h is not None else 0 for h in headers]
        headers = [
            h if h is None or h.length <= cut_at else _cut_header(h, cut_at) for h in headers
        ]
        return [
            text if text is None or length <= cut_at else f"{text}…({length} chars)"
            for text, length in zip(self._str_values(headers, strict), lengths)
        ]

    def _str_headers(
        self, addrs: Sequence[int], max_chars: int, strict: bool, peek: int = _STR_PEEK
    ) -> list[_StrHeader | None]:
        L = self.L
        peek = max(peek, self._str_hdr)
        blobs = self.mem.read_many([(a, peek) for a in addrs])
        for i, blob in enumerate(blobs):
            if blob is None and addrs[i]:  # near the end of a mapping: exact header only
                try:
                    blobs[i] = self.mem.read(addrs[i], L["unicode.ascii_data"])
                except MemoryReadError:
                    if strict:
                        raise
        types = self._type_infos(
            [_Q.unpack_from(b, L["object.ob_type"])[0] for b in blobs if b is not None]
        )
        flag = L["const.Py_TPFLAGS_UNICODE_SUBCLASS"]
        out: list[_StrHeader | None] = []
        for addr, blob in zip(addrs, blobs):
            try:
                if blob is None:
                    raise BadObject(addr, "unreadable str")
                info = types.get(_Q.unpack_from(blob, L["object.ob_type"])[0])
                if info is None or not info.flags & flag:
                    raise BadObject(addr, "not a str")
                out.append(self._parse_str_header(addr, blob, max_chars))
            except BadObject:
                if strict:
                    raise
                out.append(None)
        return out

    def _parse_str_header(self, addr: int, blob: bytes, max_chars: int) -> _StrHeader:
        L = self.L
        length = _q.unpack_from(blob, L["unicode.length"])[0]
        state = _I.unpack_from(blob, L["unicode.state"])[0]
        kind = (state & self._kind_mask) >> self._kind_shift
        compact = bool(state & self._compact_mask)
        ascii_ = bool(state & self._ascii_mask)
        if length < 0 or length > max_chars:
            raise BadObject(addr, f"str length {length} outside 0..{max_chars}")
        if kind not in (1, 2, 4) or (ascii_ and kind != 1):
            # kind 0 is a <= 3.11 legacy string that was never made "ready"
            raise BadObject(addr, f"str with unsupported state {state:#x}")
        if compact:
            start = L["unicode.ascii_data"] if ascii_ else L["unicode.compact_data"]
            data = addr + start
            end = start + length * kind
            inline = blob[start:end] if end <= len(blob) else None
        else:
            if len(blob) < L["unicode.data_any"] + PTR:
                blob = self.mem.read(addr, L["unicode.data_any"] + PTR)
            data = _Q.unpack_from(blob, L["unicode.data_any"])[0]
            if not data:
                raise BadObject(addr, "non-compact str without data")
            inline = None
        return _StrHeader(addr, length, kind, data, inline)

    def _str_values(self, headers: list[_StrHeader | None], strict: bool) -> list[str | None]:
        need = [h for h in headers if h is not None and h.inline is None]
        raw: dict[int, bytes | None] = {}
        if need:
            blobs = self.mem.read_many([(h.data, h.length * h.kind) for h in need])
            raw = {h.address: b for h, b in zip(need, blobs)}
        out: list[str | None] = []
        for h in headers:
            if h is None:
                out.append(None)
                continue
            data = h.inline if h.inline is not None else raw.get(h.address)
            try:
                if data is None:
                    raise MemoryReadError(h.data, h.length * h.kind, "str characters")
                out.append(_decode(h.address, data, h.kind, h.length))
            except (BadObject, MemoryReadError):
                if strict:
                    raise
                out.append(None)
        return out

    # -- bytes ------------------------------------------------------------------------------
    def read_bytes(self, addr: int, max_len: int = MAX_BYTES) -> bytes:
        L = self.L
        try:
            blob = self.mem.read(addr, self._bytes_hdr + _BYTES_PEEK)
        except MemoryReadError:
            blob = self.mem.read(addr, self._bytes_hdr)
        self._require_flag(addr, blob, "const.Py_TPFLAGS_BYTES_SUBCLASS", "bytes")
        n = _q.unpack_from(blob, L["bytes.ob_size"])[0]
        if n < 0 or n > max_len:
            raise BadObject(addr, f"bytes length {n} outside 0..{max_len}")
        start = L["bytes.ob_sval"]
        if start + n <= len(blob):
            return blob[start : start + n]
        return self.mem.read(addr + start, n)

    # -- int --------------------------------------------------------------------------------
    def read_int(self, addr: int, max_digits: int = MAX_INT_DIGITS) -> int:
        """Decode an int (or bool) object."""
        L = self.L
        try:
            blob = self.mem.read(addr, self._int_hdr + 4 * _INT_PEEK_DIGITS)
        except MemoryReadError:
            blob = self.mem.read(addr, self._int_hdr)
        self._require_flag(addr, blob, "const.Py_TPFLAGS_LONG_SUBCLASS", "int")
        if "long.lv_tag" in L:  # 3.12+: lv_tag = ndigits << 3 | sign (0 +, 1 zero, 2 -)
            tag = _Q.unpack_from(blob, L["long.lv_tag"])[0]
            sign_bits = tag & 3
            if sign_bits == 3:
                raise BadObject(addr, f"int with invalid lv_tag {tag:#x}")
            ndigits = tag >> L.get("const._PyLong_NON_SIZE_BITS", 3)
            negative = sign_bits == 2
        else:
            size = _q.unpack_from(blob, L["long.ob_size"])[0]
            ndigits, negative = abs(size), size < 0
        if ndigits > max_digits:
            raise BadObject(addr, f"int with {ndigits} digits (more than {max_digits})")
        start = L["long.ob_digit"]
        if start + 4 * ndigits <= len(blob):
            raw = blob[start : start + 4 * ndigits]
        else:
            raw = self.mem.read(addr + start, 4 * ndigits)
        shift = self._shift
        value = 0
        for d in reversed(struct.unpack(f"<{ndigits}I", raw)):
            if d >> shift:
                raise BadObject(addr, f"int digit {d:#x} wider than {shift} bits")
            value = (value << shift) | d
        return -value if negative else value

    # -- dict -------------------------------------------------------------------------------
    def dict_items(self, addr: int, check_type: bool = True) -> list[tuple[int, int]]:
        """(key address, value address) of every item of a dict, in insertion order."""
        L = self.L
        blob = self.mem.read(addr, self._dict_hdr)
        if check_type:
            self._require_flag(addr, blob, "const.Py_TPFLAGS_DICT_SUBCLASS", "dict")
        used = _q.unpack_from(blob, L["dict.ma_used"])[0]
        keys_addr = _Q.unpack_from(blob, L["dict.ma_keys"])[0]
        values = _Q.unpack_from(blob, L["dict.ma_values"])[0]
        if used < 0 or used > self.max_dict_entries:
            raise BadObject(addr, f"dict with {used} items")
        if used == 0:
            return []
        keys = self._keys(keys_addr)
        items = self._split_items(keys, values) if values else self._combined_items(keys)
        return items[:used]

    def _keys(self, addr: int) -> _Keys:
        if self._batch is not None:
            keys = self._batch.get(("keys", addr))
            if keys is None:
                keys = self._parse_keys(addr)
                self._remember(("keys", addr), keys)
            return keys
        return self._parse_keys(addr)

    def _parse_keys(self, addr: int) -> _Keys:
        L = self.L
        if not addr:
            raise BadObject(addr, "dict without keys")
        blob = self.mem.read(addr, L["dictkeys.size"])
        nentries = _q.unpack_from(blob, L["dictkeys.dk_nentries"])[0]
        if "dictkeys.dk_size" in L:  # <= 3.10 (Objects/dict-common.h)
            size = _q.unpack_from(blob, L["dictkeys.dk_size"])[0]
            if size <= 0 or size & (size - 1) or size > 1 << 40:
                raise BadObject(addr, f"dict keys with dk_size {size}")
            ixsize = 1 if size <= 0xFF else 2 if size <= 0xFFFF else 4 if size <= 0xFFFFFFFF else 8
            index_bytes = size * ixsize
            general, split = True, False
        else:  # 3.11+ (Include/internal/pycore_dict.h)
            log2_size = blob[L["dictkeys.dk_log2_size"]]
            log2_index_bytes = blob[L["dictkeys.dk_log2_index_bytes"]]
            kind = blob[L["dictkeys.dk_kind"]]
            if log2_size > 40 or not log2_size <= log2_index_bytes <= log2_size + 3:
                raise BadObject(addr, f"dict keys with log2 sizes {log2_size}/{log2_index_bytes}")
            size = 1 << log2_size
            index_bytes = 1 << log2_index_bytes
            if kind not in (
                L["const.DICT_KEYS_GENERAL"],
                L["const.DICT_KEYS_UNICODE"],
                L["const.DICT_KEYS_SPLIT"],
            ):
                raise BadObject(addr, f"dict keys of unknown kind {kind}")
            general = kind == L["const.DICT_KEYS_GENERAL"]
            split = kind == L["const.DICT_KEYS_SPLIT"]
        if nentries < 0 or nentries > size or nentries > self.max_dict_entries:
            raise BadObject(addr, f"dict keys with {nentries} entries (table size {size})")
        if general:
            esize, koff, voff = (
                L["dictentry.size"], L["dictentry.me_key"], L["dictentry.me_value"]
            )  # fmt: skip
        else:
            esize, koff, voff = (
                L["dictunicodeentry.size"],
                L["dictunicodeentry.me_key"],
                L["dictunicodeentry.me_value"],
            )
        entries = addr + L["dictkeys.dk_indices"] + index_bytes
        return _Keys(addr, nentries, entries, esize, koff, voff, split)

    def _entries(self, keys: _Keys) -> bytes:
        return self.mem.read(keys.entries, keys.nentries * keys.entry_size)

    def _combined_items(self, keys: _Keys) -> list[tuple[int, int]]:
        raw = self._entries(keys)
        out = []
        for i in range(keys.nentries):
            base = i * keys.entry_size
            key = _Q.unpack_from(raw, base + keys.key_off)[0]
            value = _Q.unpack_from(raw, base + keys.value_off)[0]
            if key and value:  # deleted entries keep a dummy key (or NULL) and no value
                out.append((key, value))
        return out

    def _split_items(self, keys: _Keys, values: int, inline: bool = False) -> list[tuple[int, int]]:
        """Items of a split table: keys from the (shared) keys object, values from `values`.

        <= 3.10: `values` is a PyObject*[] in entry order.
        3.11/3.12: PyDictValues; the bytes before it hold the insertion order: values[-1] is
        the prefix size, values[-2] the number of items, values[-3-k] the k-th item's index.
        3.13: PyDictValues {capacity, size, embedded, valid, values[capacity]} followed by the
        insertion order array (Include/internal/pycore_dict.h, get_insertion_order_array).
        `inline`: values embedded in the object, only meaningful while `valid` is set.
        """
        n = keys.nentries
        if n == 0:
            return []
        key_addrs = self._entry_keys(keys)
        L = self.L
        order: list[int] | None = None
        if self._dicts == "dict":
            vals = self.mem.read(values, n * PTR)
        elif self._dicts in ("values311", "dorv312"):
            # The prefix was sized for at least as many items as the shared keys can ever hold
            # (shared_keys_usable_size), so the n order bytes before it are ours to read.
            blob = self.mem.read(values - 2 - n, 2 + n + n * PTR)
            count, prefix = blob[n], blob[n + 1]
            vals = blob[n + 2 :]
            if 0 < count <= n and count + 2 <= prefix:
                order = list(reversed(blob[n - count : n]))
        else:
            head = self.mem.read(values, L["dictvalues.values"])
            if inline and not head[L["dictvalues.valid"]]:
                return []
            capacity = head[L["dictvalues.capacity"]]
            count = head[L["dictvalues.size_member"]]
            n = min(n, capacity)
            base = L["dictvalues.values"]
            blob = self.mem.read(values + base, capacity * PTR + capacity)
            vals = blob[: n * PTR]
            if 0 < count <= capacity:
                order = list(blob[capacity * PTR : capacity * PTR + count])
        value_addrs = [_Q.unpack_from(vals, i * PTR)[0] for i in range(n)]
        if order is None or len(set(order)) != len(order) or any(i >= n for i in order):
            order = list(range(n))  # no (usable) order record: entry order
        return [(key_addrs[i], value_addrs[i]) for i in order if key_addrs[i] and value_addrs[i]]

    def _entry_keys(self, keys: _Keys) -> list[int]:
        memo = ("entry_keys", keys.address, keys.nentries)
        if self._batch is not None and memo in self._batch:
            return self._batch[memo]
        raw = self._entries(keys)
        size, off = keys.entry_size, keys.key_off
        out = [_Q.unpack_from(raw, i * size + off)[0] for i in range(keys.nentries)]
        self._remember(memo, out)
        return out

    def dict_get_str(self, addr: int, key: str, check_type: bool = True) -> int | None:
        """The address of d[key] for a str key, or None if there is no such key."""
        return _find_str(self, self.dict_items(addr, check_type), key)

    def dict_to_python(self, addr: int) -> dict:
        """A dict of str/bytes/int keys and values decoded into a local dict (for tests and
        small dicts; values of other types become their type name in angle brackets)."""
        return {self.read_value(k): self.read_value(v) for k, v in self.dict_items(addr)}

    def read_value(self, addr: int):
        """Decode a str, bytes, int, bool or None; other objects come back as '<typename>'."""
        name = self.type_name(addr)
        if name == "NoneType":
            return None
        if name == "bool":
            return bool(self.read_int(addr))
        flags = self.type_info(self.type_of(addr)).flags
        L = self.L
        if flags & L["const.Py_TPFLAGS_UNICODE_SUBCLASS"]:
            return self.read_str(addr)
        if flags & L["const.Py_TPFLAGS_BYTES_SUBCLASS"]:
            return self.read_bytes(addr)
        if flags & L["const.Py_TPFLAGS_LONG_SUBCLASS"]:
            return self.read_int(addr)
        return f"<{name}>"

    # -- instance attributes ----------------------------------------------------------------
    def instance_dict_items(self, addr: int) -> list[tuple[int, int]]:
        """(name address, value address) of an instance's attributes (its __dict__, whether or
        not the dict has been materialised). Empty when the object has no __dict__."""
        L = self.L
        managed = L.get("const.Py_TPFLAGS_MANAGED_DICT", 0)
        pre = None  # 3.11+: the 4 words before the object (managed dict / values pointers)
        if managed:
            try:
                blob = self.mem.read(addr - 4 * PTR, 4 * PTR + L["object.ob_type"] + PTR)
                pre = blob[: 4 * PTR]
                type_addr = _Q.unpack_from(blob, 4 * PTR + L["object.ob_type"])[0]
            except MemoryReadError:
                type_addr = self.type_of(addr)
        else:
            type_addr = self.type_of(addr)
        info = self.type_info(type_addr)
        if managed and info.flags & managed:
            return self._managed_items(addr, info, pre)
        dict_addr = self._dict_pointer(addr, info)
        if not dict_addr:
            return []
        return self.dict_items(dict_addr)

    def get_attr(self, addr: int, name: str) -> int | None:
        """The address of an instance attribute stored in the object's __dict__ (or its inline
        / managed values), or None if the instance has no such attribute. Class attributes,
        properties and __slots__ are not looked at."""
        return _find_str(self, self.instance_dict_items(addr), name)

    def _dict_pointer(self, addr: int, info: TypeInfo) -> int:
        """Classic tp_dictoffset (Objects/object.c, _PyObject_GetDictPtr)."""
        off = info.dictoffset
        if off == 0:
            return 0
        if off < 0:  # counted from the end of a variable-sized object
            size = _q.unpack_from(self.mem.read(addr + self.L["varobject.ob_size"], PTR))[0]
            total = info.basicsize + abs(size) * info.itemsize
            off += (total + PTR - 1) // PTR * PTR
            if off < 0 or off > 1 << 30:
                raise BadObject(addr, f"implausible dict offset {off}")
        return self._u64(addr + off)

    def _cached_keys(self, type_addr: int) -> _Keys:
        memo = ("cached_keys", type_addr)
        if self._batch is not None and memo in self._batch:
            return self._batch[memo]
        keys = self._keys(self._u64(type_addr + self.L["heaptype.ht_cached_keys"]))
        self._remember(memo, keys)
        return keys

    def _managed_items(self, addr: int, info: TypeInfo, pre: bytes | None) -> list[tuple[int, int]]:
        """Managed dicts (3.11+; Include/internal/pycore_object.h of each version):

        3.11: values pointer at obj[-4], dict pointer at obj[-3] (words before the object).
        3.12: obj[-3] is a tagged union: a dict pointer, or (values pointer - 1), odd.
        3.13: dict pointer at obj[-3]; without a dict, the values are inline after the object
              (Py_TPFLAGS_INLINE_VALUES) unless they were invalidated.
        """
        L = self.L
        if pre is None:
            pre = self.mem.read(addr - 4 * PTR, 4 * PTR)
        words = struct.unpack("<4Q", pre)  # obj[-4], obj[-3], obj[-2], obj[-1]
        if self._dicts == "values311":
            values, dict_addr = words[0], words[1]
            if dict_addr:
                return self.dict_items(dict_addr)
            if values:
                return self._split_items(self._cached_keys(info.address), values)
            return []
        if self._dicts == "dorv312":
            dorv = words[1]
            if dorv & 1:
                return self._split_items(self._cached_keys(info.address), dorv + 1)
            return self.dict_items(dorv) if dorv else []
        dict_addr = words[self._managed_dict_word]
        if dict_addr:
            return self.dict_items(dict_addr)
        inline = L.get("const.Py_TPFLAGS_INLINE_VALUES", 0)
        if inline and info.flags & inline:
            values = addr + info.basicsize
            return self._split_items(self._cached_keys(info.address), values, inline=True)
        return []

    # -- threads ----------------------------------------------------------------------------
    def module_dict(self, modules_dict: int, name: str) -> int | None:
        """The __dict__ of sys.modules[name], or None if not imported."""
        mod = self.dict_get_str(modules_dict, name)
        if mod is None:
            return None
        return self._u64(mod + self.L["module.md_dict"]) or None

    def thread_names(self, interp_addr: int) -> dict[int, str]:
        """{thread ident: name} from threading._active of the interpreter at interp_addr."""
        self._batch = {}
        try:
            return self._thread_names(interp_addr)
        finally:
            self._batch = None

    def _thread_names(self, interp_addr: int) -> dict[int, str]:
        modules = self._u64(interp_addr + self.L["interp.modules"])
        if not modules:
            return {}
        md = self.module_dict(modules, "threading")
        if md is None:
            return {}
        active = self.dict_get_str(md, "_active")
        if active is None:
            return {}
        items = self.dict_items(active)[:MAX_THREADS]
        found: list[tuple[int, int]] = []  # (ident, address of the name)
        for key, thread in items:
            try:
                ident = self.read_int(key)
                name_addr = self.get_attr(thread, "_name")
            except (ProcessExited, AccessDenied):
                raise
            except ReaderError:  # a thread being set up or torn down: skip just that one
                continue
            if name_addr is not None:
                found.append((ident, name_addr))
        texts = self.read_strs([a for _, a in found], cut_at=THREAD_NAME_CHARS)
        return {ident: text for (ident, _), text in zip(found, texts) if text is not None}


def _cut_header(header: _StrHeader, chars: int) -> _StrHeader:
    """The header of the string's first `chars` characters only."""
    inline = None if header.inline is None else header.inline[: chars * header.kind]
    return replace(header, length=chars, inline=inline)


def _decode(addr: int, data: bytes, kind: int, length: int) -> str:
    if kind == 1:
        return data.decode("latin-1")
    try:
        text = data.decode(_KIND_CODECS[kind], "surrogatepass")
    except UnicodeDecodeError:
        text = None
    if text is None or len(text) != length:
        # 2-byte strings may hold lone (or adjacent) surrogates, which UTF-16 would pair up;
        # 4-byte strings may hold values past U+10FFFF only if corrupt.
        try:
            text = "".join(map(chr, memoryview(data).cast("H" if kind == 2 else "I")))
        except (ValueError, TypeError):
            raise BadObject(addr, "str with invalid code points") from None
    return text


def _find_str(reader: ObjectReader, items: list[tuple[int, int]], key: str) -> int | None:
    """The value of the first item whose key is a str equal to `key`; keys are read in a
    batch, and only those of the right length have their characters fetched."""
    if not items:
        return None
    batch = reader._batch
    known: dict[int, str | None] = {}
    if batch is not None:
        for k, _ in items:
            if ("str", k) in batch:
                known[k] = batch[("str", k)]
    todo = [k for k, _ in items if k not in known]
    if todo:
        width = max(1, max((ord(c) for c in key), default=0).bit_length())
        kind = 1 if width <= 8 else 2 if width <= 16 else 4
        peek = min(_STR_PEEK, reader.L["unicode.compact_data"] + kind * len(key))
        headers = reader._str_headers(todo, max_chars=len(key), strict=False, peek=peek)
        cand = [h if h is not None and h.length == len(key) and h.kind == kind else None
                for h in headers]  # fmt: skip
        for k, text in zip(todo, reader._str_values(cand, strict=False)):
            known[k] = text
            reader._remember(("str", k), text)
    for k, value in items:
        if known.get(k) == key:
            return value
    return None


def thread_names(
    memory: ProcessMemory,
    version: tuple[int, int],
    layout: dict[str, int] | None,
    interp_addr: int,
) -> dict[int, str]:
    """{Python thread ident: Thread name} read from sys.modules['threading']._active of the
    interpreter at `interp_addr`; {} if threading is not imported."""
    return ObjectReader(memory, version, layout).thread_names(interp_addr)
