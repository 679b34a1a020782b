"""Just enough of ELF to find CPython's globals: symbols, sections, load segments, needs."""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field

from .model import decode_name

ET_EXEC = 2
ET_DYN = 3
PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3
SHT_SYMTAB = 2
SHT_DYNSYM = 11
DT_NEEDED = 1
DT_STRTAB = 5

_MAX_SYMBOLS = 2_000_000
_SYMBOL = struct.Struct("<IBBHQQ")


class ElfError(ValueError):
    """The file is not an ELF file we understand (64-bit little-endian)."""


@dataclass
class Segment:
    vaddr: int
    offset: int
    filesz: int
    memsz: int


@dataclass
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


@dataclass
class ElfFile:
    """A parsed ELF image: what the reader needs and nothing more."""

    path: str
    type: int
    loads: list[Segment]
    sections: dict[str, Section]
    symbols: dict[str, int] = field(repr=False)
    needed: list[str]
    has_interp: bool

    def symbol(self, name: str) -> int | None:
        return self.symbols.get(name)

    @property
    def first_load(self) -> Segment:
        return min(self.loads, key=lambda s: s.vaddr)


def _cstr(blob: bytes, offset: int) -> str:
    end = blob.find(b"\0", offset)
    if end < 0:
        end = len(blob)
    return decode_name(blob[offset:end])


def parse_elf(
    path: str, data: bytes | None = None, wanted: frozenset[str] | None = None
) -> ElfFile:
    """Parse `path` (or the given bytes of it); only the `wanted` symbols, if given."""
    if data is None:
        # Map rather than read: only the headers and symbol tables are touched.
        with open(path, "rb") as fh:
            try:
                data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # an empty file
                data = b""
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise ElfError(f"{path}: not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ElfError(f"{path}: only 64-bit little-endian ELF is supported")
    (
        e_type,
        _machine,
        _version,
        _entry,
        e_phoff,
        e_shoff,
        _flags,
        _ehsize,
        e_phentsize,
        e_phnum,
        e_shentsize,
        e_shnum,
        e_shstrndx,
    ) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)

    loads: list[Segment] = []
    dynamic: Segment | None = None
    has_interp = False
    for i in range(e_phnum):
        off = e_phoff + i * e_phentsize
        if off + 56 > len(data):
            break
        p_type, _pflags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", data, off
        )
        seg = Segment(p_vaddr, p_offset, p_filesz, p_memsz)
        if p_type == PT_LOAD:
            loads.append(seg)
        elif p_type == PT_DYNAMIC:
            dynamic = seg
        elif p_type == PT_INTERP:
            has_interp = True
    if not loads:
        raise ElfError(f"{path}: no loadable segments")

    raw_sections = []
    for i in range(e_shnum if e_shoff else 0):
        off = e_shoff + i * e_shentsize
        if off + 64 > len(data):
            break
        raw_sections.append(struct.unpack_from("<IIQQQQIIQQ", data, off))
    sections: dict[str, Section] = {}
    if raw_sections and e_shstrndx < len(raw_sections):
        shstr = raw_sections[e_shstrndx]
        names = data[shstr[4] : shstr[4] + shstr[5]]
        for (
            sh_name,
            sh_type,
            _f,
            sh_addr,
            sh_offset,
            sh_size,
            sh_link,
            _i,
            _a,
            sh_entsize,
        ) in raw_sections:
            name = _cstr(names, sh_name)
            sections[name] = Section(
                name, sh_type, sh_addr, sh_offset, sh_size, sh_link, sh_entsize
            )

    symbols: dict[str, int] = {}
    for sec in sorted(sections.values(), key=lambda s: s.type != SHT_DYNSYM):
        if sec.type not in (SHT_DYNSYM, SHT_SYMTAB) or sec.entsize != _SYMBOL.size:
            continue
        if sec.link >= len(raw_sections):
            continue
        strsec = raw_sections[sec.link]
        strtab = data[strsec[4] : strsec[4] + strsec[5]]
        count = min(sec.size // sec.entsize, _MAX_SYMBOLS)
        table = data[sec.offset : sec.offset + count * sec.entsize]
        if wanted is not None:
            # Find the wanted names in the string table first, then only match offsets.
            offsets: dict[int, str] = {}
            for name in wanted:
                needle = b"\0" + name.encode() + b"\0"
                at = strtab.find(needle)
                while at >= 0:
                    offsets[at + 1] = name
                    at = strtab.find(needle, at + 1)
            for st_name, _info, _other, shndx, st_value, _size in _SYMBOL.iter_unpack(table):
                name = offsets.get(st_name)
                if name is not None and shndx and st_value:
                    symbols.setdefault(name, st_value)
            continue
        for st_name, _info, _other, shndx, st_value, _size in _SYMBOL.iter_unpack(table):
            if st_name == 0 or shndx == 0 or st_value == 0:
                continue
            symbols.setdefault(_cstr(strtab, st_name), st_value)

    needed: list[str] = []
    if dynamic is not None:
        entries = []
        for k in range(dynamic.filesz // 16):
            tag, val = struct.unpack_from("<qQ", data, dynamic.offset + 16 * k)
            if tag == 0:
                break
            entries.append((tag, val))
        strtab_vaddr = next((v for t, v in entries if t == DT_STRTAB), None)
        if strtab_vaddr is not None:
            str_off = vaddr_to_offset(loads, strtab_vaddr)
            if str_off is not None:
                needed = [_cstr(data, str_off + v) for t, v in entries if t == DT_NEEDED]
    return ElfFile(path, e_type, loads, sections, symbols, needed, has_interp)


def vaddr_to_offset(loads: list[Segment], vaddr: int) -> int | None:
    for seg in loads:
        if seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
            return vaddr - seg.vaddr + seg.offset
    return None
