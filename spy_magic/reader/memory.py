"""Reading another process's memory without stopping it.

`process_vm_readv` copies from the target straight into our buffers, one syscall for many
regions (a scatter read); `/proc/PID/mem` is the fallback where that syscall is missing.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Sequence

from .errors import AccessDenied, MemoryReadError, NoSuchProcess, ProcessExited


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_process_vm_readv = getattr(_libc, "process_vm_readv", None)
if _process_vm_readv is not None:
    _process_vm_readv.restype = ctypes.c_ssize_t
    _process_vm_readv.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,  # const struct iovec *local_iov
        ctypes.c_ulong,
        ctypes.c_void_p,  # const struct iovec *remote_iov
        ctypes.c_ulong,
        ctypes.c_ulong,
    ]

_U64 = struct.Struct("<Q")
_iovec_structs: dict[int, struct.Struct] = {}


def _iovec_struct(count: int) -> struct.Struct:
    """A Struct packing `count` iovecs (base, length) at once: far cheaper than ctypes fields."""
    st = _iovec_structs.get(count)
    if st is None:
        st = _iovec_structs[count] = struct.Struct("<" + "QQ" * count)
    return st


_IOV_MAX = 1024


class Scatter:
    """A scatter read prepared once and run many times (see `ProcessMemory.read_scatter`):
    the iovec arrays and the buffer are built once, not per read. More spans than the kernel
    takes in one call (IOV_MAX) are split into batches of it, one syscall each."""

    __slots__ = ("batches", "buffer", "count", "spans", "total")

    def __init__(self, spans: Sequence[tuple[int, int]]) -> None:
        self.spans = list(spans)
        self.total = sum(size for _, size in spans)
        self.count = len(spans)
        self.buffer = ctypes.create_string_buffer(max(self.total, 1))
        base = ctypes.addressof(self.buffer)
        # (local iovec, remote iovecs, their count, buffer offset where the batch starts,
        # bytes in the batch)
        self.batches: list[tuple[_IOVec, ctypes.Array, int, int, int]] = []
        offset = 0
        for first in range(0, self.count, _IOV_MAX):
            batch = self.spans[first : first + _IOV_MAX]
            size = sum(length for _, length in batch)
            remote = ctypes.create_string_buffer(16 * len(batch))
            _iovec_struct(len(batch)).pack_into(remote, 0, *[v for span in batch for v in span])
            self.batches.append((_IOVec(base + offset, size), remote, len(batch), offset, size))
            offset += size


class ProcessMemory:
    """Read-only view of a live process's address space; counts the syscalls it makes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.syscalls = 0
        self._mem_fd: int | None = None
        self._use_vm_readv = _process_vm_readv is not None
        self._one_local = _IOVec()
        self._one_remote = _IOVec()

    # -- errors ---------------------------------------------------------------------------
    def _raise_for(self, err: int, address: int, size: int) -> None:
        if err == errno.ESRCH:
            raise ProcessExited(self.pid)
        if err in (errno.EPERM, errno.EACCES):
            raise AccessDenied(self.pid, "process_vm_readv refused")
        raise MemoryReadError(address, size, os.strerror(err))

    # -- single reads ---------------------------------------------------------------------
    def read(self, address: int, size: int) -> bytes:
        """Copy `size` bytes at `address`; raises unless every byte could be read."""
        if size <= 0:
            return b""
        if not self._use_vm_readv:
            return self._pread(address, size)
        buf = ctypes.create_string_buffer(size)
        local, remote = self._one_local, self._one_remote
        local.iov_base = ctypes.addressof(buf)
        local.iov_len = size
        remote.iov_base = address
        remote.iov_len = size
        self.syscalls += 1
        got = _process_vm_readv(self.pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if got == size:
            return buf.raw
        if got < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSYS:
                self._use_vm_readv = False
                return self._pread(address, size)
            self._raise_for(err, address, size)
        raise MemoryReadError(address, size, f"short read ({got} of {size} bytes)")

    def read_u64(self, address: int) -> int:
        return _U64.unpack(self.read(address, 8))[0]

    def read_many(self, regions: Sequence[tuple[int, int]]) -> list[bytes | None]:
        """Read many regions in as few syscalls as possible (one per 1024 regions).

        A region that cannot be read fully comes back as None; the others are still returned,
        because a scatter read stops at the first bad region and the rest are retried.
        """
        out: list[bytes | None] = [None] * len(regions)
        if not self._use_vm_readv:
            for i, (addr, size) in enumerate(regions):
                try:
                    out[i] = self._pread(addr, size)
                except MemoryReadError:
                    out[i] = None
            return out
        start = 0
        n = len(regions)
        while start < n:
            stop = min(n, start + _IOV_MAX)
            batch = regions[start:stop]
            count = len(batch)
            total = 0
            flat = []
            for addr, size in batch:
                flat.append(addr)
                flat.append(size)
                total += size
            buf = ctypes.create_string_buffer(max(total, 1))
            remote = ctypes.create_string_buffer(16 * count)
            _iovec_struct(count).pack_into(remote, 0, *flat)
            local = _IOVec(ctypes.addressof(buf), total)
            self.syscalls += 1
            got = _process_vm_readv(self.pid, ctypes.byref(local), 1, remote, count, 0)
            if got < 0:
                err = ctypes.get_errno()
                if err == errno.EFAULT:
                    got = 0
                elif err == errno.ENOSYS:
                    self._use_vm_readv = False
                    out[start:] = self.read_many(regions[start:])
                    return out
                else:
                    self._raise_for(err, batch[0][0], batch[0][1])
            raw = buf.raw
            pos = 0
            failed_at = None
            for j, (_addr, size) in enumerate(batch):
                if pos + size <= got:
                    out[start + j] = raw[pos : pos + size]
                    pos += size
                else:
                    failed_at = start + j
                    break
            # A bad (or partially read) region is skipped; the read carries on after it.
            start = stop if failed_at is None else failed_at + 1
        return out

    def read_spans(self, spans: Sequence[tuple[int, int]]) -> tuple[bytes, int]:
        """Read spans back to back into one buffer, in one syscall.

        Returns the buffer and how many bytes arrived: the kernel stops at the first span it
        cannot read, and never splits a span, so every span that ends within that count is
        complete.
        """
        return self.read_scatter(Scatter(spans))

    def read_scatter(self, scatter: Scatter) -> tuple[bytes, int]:
        """`read_spans` for a prepared scatter read: the buffer and how many bytes arrived."""
        got = self._fill(scatter)
        if got is None:
            return self._read_scatter_slowly(scatter)
        return scatter.buffer.raw, got

    def read_scatter_split(self, scatter: Scatter, head: int) -> tuple[bytes, bytes, int]:
        """`read_scatter`, its buffer given back as two strings cut at `head`: one copy of
        each part, not a copy of the whole and then of its parts (with a thousand threads
        the buffer is megabytes)."""
        got = self._fill(scatter)
        if got is None:
            raw, got = self._read_scatter_slowly(scatter)
            return raw[:head], raw[head:], got
        base = ctypes.addressof(scatter.buffer)
        head = min(head, scatter.total)
        return (ctypes.string_at(base, head),
                ctypes.string_at(base + head, scatter.total - head), got)  # fmt: skip

    def _fill(self, scatter: Scatter) -> int | None:
        """Run the scatter read into its buffer: how many bytes arrived (None: no
        process_vm_readv here, read it with `_read_scatter_slowly`)."""
        if not self._use_vm_readv:
            return None
        got = 0
        for local, remote, count, offset, size in scatter.batches:
            self.syscalls += 1
            done = _process_vm_readv(self.pid, ctypes.byref(local), 1, remote, count, 0)
            if done < 0:
                err = ctypes.get_errno()
                if err == errno.ENOSYS:
                    self._use_vm_readv = False
                    return None
                if err not in (errno.EFAULT, errno.ENOMEM):
                    self._raise_for(err, scatter.spans[0][0], scatter.spans[0][1])
                done = 0
            got = offset + done
            if done < size:
                break  # the kernel stopped at a span it could not read: so does the count
        return got

    def _read_scatter_slowly(self, scatter: Scatter) -> tuple[bytes, int]:
        parts = self.read_many(scatter.spans)
        got = 0
        for part in parts:
            if part is None:
                break
            got += len(part)
        return b"".join(p or bytes(s) for p, (_, s) in zip(parts, scatter.spans)), got

    # -- fallback -------------------------------------------------------------------------
    def _pread(self, address: int, size: int) -> bytes:
        if self._mem_fd is None:
            try:
                self._mem_fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY)
            except FileNotFoundError:
                raise NoSuchProcess(self.pid) from None
            except PermissionError:
                raise AccessDenied(self.pid, "cannot open /proc/PID/mem") from None
        self.syscalls += 1
        try:
            data = os.pread(self._mem_fd, size, address)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise ProcessExited(self.pid) from None
            raise MemoryReadError(address, size, exc.strerror or "") from None
        if len(data) != size:
            if not os.path.exists(f"/proc/{self.pid}"):
                raise ProcessExited(self.pid)
            raise MemoryReadError(address, size, f"short read ({len(data)} of {size} bytes)")
        return data

    def close(self) -> None:
        if self._mem_fd is not None:
            os.close(self._mem_fd)
            self._mem_fd = None
