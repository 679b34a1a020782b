"""Finding the CPython interpreter inside a process: which binary, where, which version."""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

from .elf import ET_EXEC, ElfError, ElfFile, parse_elf
from .errors import AccessDenied, NoSuchProcess, NotPython, NotReady, ProcessExited
from .model import decode_name

# The only symbols the reader looks up: finding just these is far cheaper than all of them.
WANTED_SYMBOLS = frozenset({"_PyRuntime", "Py_Version", "PyCode_Type", "Py_Main", "_Py_NoneStruct"})
_ELF_CACHE: dict[tuple[str, int, int, int], ElfFile] = {}


def load_elf(path: str) -> ElfFile:
    """parse_elf, cached by file identity (many children run the same interpreter)."""
    st = os.stat(path)
    key = (path, st.st_dev, st.st_ino, st.st_mtime_ns)
    elf = _ELF_CACHE.get(key)
    if elf is None:
        if len(_ELF_CACHE) > 32:
            _ELF_CACHE.clear()
        elf = _ELF_CACHE[key] = parse_elf(path, wanted=WANTED_SYMBOLS)
    return elf


_PY_NAME = re.compile(r"(?:^|/)(?:lib)?python(\d)\.(\d+)([a-z]*)(?:\.so|$|[-_.])")


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    path: str
    device: tuple[int, int] = (0, 0)  # (major, minor) of the mapped file's filesystem
    inode: int = 0


@dataclass
class Interpreter:
    """Where a CPython interpreter lives in a process, and which one it is."""

    pid: int
    binary: str
    elf: ElfFile
    load_bias: int
    version: tuple[int, int, int]
    runtime_address: int
    code_type_address: int | None
    # Set by the reader from the target's _Py_DebugOffsets (3.13+), never from a file name.
    free_threaded: bool = False

    def symbol(self, name: str) -> int | None:
        value = self.elf.symbol(name)
        return None if value is None else value + self.load_bias


def read_maps(pid: int) -> list[Mapping]:
    """Parse /proc/PID/maps; raise NoSuchProcess / AccessDenied as the kernel says."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as fh:
            text = decode_name(fh.read())  # a mapped file's name may be any bytes
    except FileNotFoundError:
        raise NoSuchProcess(pid) from None
    except ProcessLookupError:
        raise ProcessExited(pid) from None
    except PermissionError:
        raise AccessDenied(pid, "cannot read /proc/PID/maps") from None
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, hi = parts[0].split("-")
        path = parts[5] if len(parts) > 5 else ""
        major, _, minor = parts[3].partition(":")
        device = (int(major, 16), int(minor or "0", 16))
        out.append(
            Mapping(
                int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), path, device, int(parts[4])
            )
        )
    return out


def stat_state(stat: bytes) -> bytes:
    """The one-letter state field of a /proc .../stat line (b"" when it is cut short).

    Found after the last ")": the command name before it may itself hold ")" or spaces."""
    close = stat.rfind(b")")
    return stat[close + 2 : close + 3] if close >= 0 else b""


def process_is_gone(pid: int) -> bool:
    """True when the pid no longer names a live process (gone, or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True
    return stat_state(stat) in (b"Z", b"X")


_DELETED = " (deleted)"


def _without_deleted(path: str) -> str:
    return path[: -len(_DELETED)] if path.endswith(_DELETED) else path


def _open_path(pid: int, path: str) -> str:
    """The binary as the target sees it: through /proc/PID/root so containers work."""
    clean = _without_deleted(path)
    rooted = f"/proc/{pid}/root{clean}"
    return rooted if os.path.exists(rooted) else clean


def _is_mapped_file(path: str, mapping: Mapping) -> bool:
    """Whether `path` names the very file behind `mapping` (device and inode as maps says)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) == (*mapping.device, mapping.inode)


def _openable(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError:
        return False
    return True


def mapped_file(pid: int, path: str, maps: list[Mapping], exe: str | None = None) -> str:
    """A path that opens the file `pid` has mapped as `path`, even once that path is gone.

    A package upgrade deletes (or renames a new file over) the executable or libpython of
    every process running it: the file at the path is then missing, or another file, whose
    symbols would be read as this process's. The mapped file itself stays reachable through
    /proc/PID/map_files (root only) and, for the executable, /proc/PID/exe.
    """
    by_path = _open_path(pid, path)
    first = min((m for m in maps if m.path == path), key=lambda m: m.start, default=None)
    if first is not None and not path.endswith(_DELETED) and _is_mapped_file(by_path, first):
        return by_path
    if first is None and not path.endswith(_DELETED):
        return by_path  # not mapped (yet): nothing to compare with
    alternatives = []
    if first is not None:
        alternatives.append(f"/proc/{pid}/map_files/{first.start:x}-{first.end:x}")
    if exe is not None and path == exe:
        alternatives.append(f"/proc/{pid}/exe")
    for alternative in alternatives:
        if _openable(alternative):
            return alternative
    # Neither is open to us (not root): the path is the best guess left. A device or inode
    # that differ only by how the filesystem numbers them (overlayfs, btrfs) end up here too.
    return by_path


def _load_bias(elf: ElfFile, maps: list[Mapping], path: str) -> int:
    if elf.type == ET_EXEC:
        return 0
    lowest = min((m for m in maps if m.path == path), key=lambda m: m.start)
    first = elf.first_load
    return (lowest.start - lowest.offset) - (first.vaddr - first.offset)


def _version_from_name(path: str) -> tuple[int, int, str] | None:
    path = _without_deleted(path)
    match = _PY_NAME.search(os.path.basename(path)) or _PY_NAME.search(path)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3)


def _executable(pid: int) -> str | None:
    """The process's executable; None for kernel threads (which have none)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except FileNotFoundError:
        if os.path.exists(f"/proc/{pid}"):
            return None
        raise NoSuchProcess(pid) from None
    except PermissionError:
        raise AccessDenied(pid, "cannot resolve /proc/PID/exe") from None
    except OSError:
        return None


def find_interpreter(pid: int) -> Interpreter:
    """Locate `_PyRuntime` and the version of the interpreter running in `pid`.

    Raises NotPython when nothing in the process looks like CPython, NotReady when it will
    (an executable that needs libpython which the loader has not mapped yet), and leaves
    the version policy (UnsupportedVersion) to the caller, which knows what it can read.
    """
    if not os.path.exists(f"/proc/{pid}"):
        raise NoSuchProcess(pid)
    maps = read_maps(pid)
    exe = _executable(pid)
    if exe is None and not maps:
        if process_is_gone(pid):
            raise ProcessExited(pid)  # a zombie: exited, not yet reaped
        raise NotPython(f"process {pid} is a kernel thread, not a Python process")
    paths: list[str] = []
    for m in maps:
        if m.path.startswith("/") and m.path not in paths:
            paths.append(m.path)

    # libpython first (shared builds), then the executable (static builds), then the rest of
    # whatever has "python" in its name.
    def rank(p: str) -> int:
        base = os.path.basename(p)
        if base.startswith("libpython"):
            return 0
        if exe and p == exe:
            return 1
        return 2 if "python" in base else 3

    candidates = sorted((p for p in paths if rank(p) < 3), key=rank)
    named_version: tuple[int, int, str] | None = None
    for path in candidates:
        named_version = named_version or _version_from_name(path)
        try:
            elf = load_elf(mapped_file(pid, path, maps, exe))
        except (OSError, ElfError):
            continue
        runtime = elf.symbol("_PyRuntime")
        version_sym = elf.symbol("Py_Version")
        if runtime is None and version_sym is None and _version_from_name(path) is None:
            continue
        bias = _load_bias(elf, maps, path)
        version = _read_version(pid, elf, bias, path)
        if version is None:
            continue
        code_type = elf.symbol("PyCode_Type")
        return Interpreter(
            pid=pid,
            binary=path,
            elf=elf,
            load_bias=bias,
            version=version,
            runtime_address=(runtime + bias) if runtime is not None else 0,
            code_type_address=(code_type + bias) if code_type is not None else None,
        )

    # Nothing mapped yet carries an interpreter. An executable that needs a libpython the
    # dynamic loader has not mapped yet is Python that is still starting.
    if exe:
        try:
            exe_elf = load_elf(mapped_file(pid, exe, maps, exe))
        except (OSError, ElfError):
            exe_elf = None
        if exe_elf is not None:
            needs_libpython = any(n.startswith("libpython") for n in exe_elf.needed)
            if needs_libpython:
                raise NotReady(pid, "the interpreter library is not loaded yet")
            if exe_elf.symbol("_PyRuntime") is not None or exe_elf.symbol("Py_Main"):
                raise NotReady(pid, "the interpreter is not mapped yet")
    if named_version is not None:
        raise NotReady(pid, "no interpreter symbols found yet")
    raise NotPython(f"process {pid} ({exe or 'unknown executable'}) is not running CPython")


def _read_version(pid: int, elf: ElfFile, bias: int, path: str) -> tuple[int, int, int] | None:
    """The interpreter's version: Py_Version (3.11+), else the binary's name, else its text."""
    from .memory import ProcessMemory

    sym = elf.symbol("Py_Version")
    if sym is not None:
        mem = ProcessMemory(pid)
        try:
            packed = struct.unpack("<I", mem.read(sym + bias, 4))[0]
        except ProcessExited:
            raise
        except Exception:
            packed = 0
        if packed >> 24:
            return packed >> 24, (packed >> 16) & 0xFF, (packed >> 8) & 0xFF
    named = _version_from_name(path)
    if named is not None:
        return named[0], named[1], 0  # the reader asks sys.hexversion for the micro version
    return None
