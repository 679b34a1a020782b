"""The binary recording: samples streamed to disk while they are taken, readable after a kill.

    MAGIC, version (u16), compression (u8), reserved (u8)        12 bytes, written at open
    frame*                                                         each: kind (1 byte: H/D/E),
                                                                   u32 length, u32 CRC-32, payload

- `H` (header, once, before the first data frame): JSON `{"format", "version", "compression",
  "records", "metadata"}`: what was known when sampling began (pid, command, rate, start time).
- `D` (data): the next piece of one compressed stream of jsonl records, exactly the ones a
  jsonl file holds (`SampleEncoder`: each distinct trace defined once by a `trace` record,
  samples refer to it by id; plus `rate_change` records as they happen). The compressor is
  flushed at the end of every frame, so each frame decompresses to whole records and the
  dictionary carries over from frame to frame (a steady program costs a few bytes a sample).
- `E` (end, once): JSON `{"samples", "metadata"}`: the sample count and the final metadata.

A frame is written every `flush_every` seconds (0.5) of samples, with one `write` call, so a
recorder killed at any moment leaves a file whose whole frames are all readable: everything
but the last half second. Compression is zstd where the interpreter has it (3.14+,
`compression.zstd`), else zlib; a zstd recording needs a 3.14+ interpreter to read.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import time
import warnings
import zlib
from typing import IO, Any, Union

from ..engine.sample import RateChange, Sample
from .exports import (
    JSONL_VERSION,
    SampleDecoder,
    SampleEncoder,
    _dumps,
    decode_rate_change,
    encode_rate_change,
)
from .model import Profile

try:  # Python 3.14+
    from compression import zstd as _zstd
except ImportError:  # pragma: no cover - depends on the interpreter
    _zstd = None

MAGIC = b"\x89SPYREC\n"  # 8 bytes: a high byte and a newline catch text-mode mangling
FORMAT = "spy_magic.recording"
VERSION = 1
COMPRESSIONS = ("none", "zlib", "zstd")  # their index is the byte in the file's head
HEAD = struct.Struct("<8sHBB")
FRAME = struct.Struct("<cII")  # kind, payload length, CRC-32 of the payload
HEADER, DATA, END = b"H", b"D", b"E"
MAX_FRAME = 1 << 30  # a length past this is damage, not a frame
FLUSH_EVERY = 0.5  # seconds between data frames
# Other tools' files that replay may be handed, by their first bytes.
FOREIGN_MAGICS = {
    b"HCAT": "a CPython 3.15 `profiling.sampling --binary` file: replay it with "
    "`python3.15 -m profiling.sampling replay FILE`",
}

PathOrBinaryFile = Union[str, "os.PathLike[str]", IO[bytes]]


class RecordingError(ValueError):
    """A recording that cannot be read to its end. `samples` were read before the problem
    (`profile` holds them, None when not even the header could be read)."""

    def __init__(self, reason: str, samples: int = 0, profile: Profile | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.samples = samples
        self.profile = profile


class RecordingTruncatedWarning(UserWarning):
    """The recording stops without its end frame (the recorder was killed or the file cut):
    every sample of its whole frames was read (`samples`)."""

    def __init__(self, message: str, samples: int) -> None:
        super().__init__(message)
        self.samples = samples


def zstd_available() -> bool:
    return _zstd is not None


def _resolve(compression: str) -> str:
    if compression == "auto":
        return "zstd" if _zstd is not None else "zlib"
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be auto or one of {COMPRESSIONS}, got {compression!r}")
    if compression == "zstd" and _zstd is None:
        raise ValueError("zstd needs Python 3.14+ (compression.zstd); use zlib")
    return compression


class _Compressor:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "zstd":
            self._z = _zstd.ZstdCompressor(level=3)
        elif kind == "zlib":
            self._z = zlib.compressobj(6)

    def chunk(self, data: bytes, final: bool = False) -> bytes:
        """`data` compressed and flushed: the stream so far decompresses to all of it."""
        if self.kind == "zstd":
            z = self._z
            mode = z.FLUSH_FRAME if final else z.FLUSH_BLOCK
            return z.compress(data) + z.flush(mode)
        if self.kind == "zlib":
            return self._z.compress(data) + self._z.flush(
                zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH
            )
        return data


class _Decompressor:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "zstd":
            if _zstd is None:
                raise RecordingError(
                    "this recording is zstd-compressed, which needs Python 3.14+ "
                    "(compression.zstd) to read; replay it with such an interpreter"
                )
            self._z = _zstd.ZstdDecompressor()
        elif kind == "zlib":
            self._z = zlib.decompressobj()

    def chunk(self, data: bytes) -> bytes:
        if self.kind == "zstd":
            if self._z.eof:  # a frame was finished (FLUSH_FRAME): the next starts anew
                self._z = _zstd.ZstdDecompressor()
            return self._z.decompress(data)
        if self.kind == "zlib":
            return self._z.decompress(data)
        return data


def _frame(kind: bytes, payload: bytes) -> bytes:
    return FRAME.pack(kind, len(payload), zlib.crc32(payload)) + payload


class RecordingWriter:
    """Writes samples to a binary recording as they come: a sampler `Collector`.

        with RecordingWriter("run.bin", {"pid": pid}) as writer:
            writer.attach(sampler)          # collector + the sampler's rate changes
            sampler.start(); sampler.join()

    `add` buffers encoded samples and writes a frame every `flush_every` seconds; `close`
    writes the rest and the end frame with the final metadata.
    """

    def __init__(
        self,
        path_or_file: PathOrBinaryFile,
        metadata: dict | None = None,
        *,
        compression: str = "auto",
        flush_every: float = FLUSH_EVERY,
    ) -> None:
        self.compression = _resolve(compression)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.flush_every = flush_every
        self.samples = 0
        self.closed = False
        if isinstance(path_or_file, (str, os.PathLike)):
            self._file: IO[bytes] = open(path_or_file, "wb")  # noqa: SIM115 - closed by close()
            self._owned = True
        else:
            self._file = path_or_file
            self._owned = False
        self._encoder = SampleEncoder()
        self._compressor = _Compressor(self.compression)
        self._pending: list[str] = []
        self._header_written = False
        self._last_flush = time.monotonic()
        self._sampler: Any = None
        self._write(HEAD.pack(MAGIC, VERSION, COMPRESSIONS.index(self.compression), 0))

    # -- feeding ---------------------------------------------------------------------------
    def attach(self, sampler: Any) -> None:
        """Collect `sampler`'s samples and rate changes, in order (add it before the sampler
        starts); the header then also gets the sampler's metadata as of its first sample."""
        self._sampler = sampler
        sampler.add_collector(self)

    def add(self, sample: Sample) -> None:
        if self.closed:
            return
        self._pending.extend(self._encoder.encode(sample))
        self.samples += 1
        if time.monotonic() - self._last_flush >= self.flush_every:
            self.flush()

    def add_rate_change(self, change: RateChange) -> None:
        if not self.closed:
            self._pending.append(encode_rate_change(change))

    def finish(self) -> None:
        """Sampling ended (the Collector protocol): write what is buffered. `close` writes
        the end frame, with the final metadata."""
        if not self.closed:
            self.flush()

    # -- writing ---------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    def _header(self) -> bytes:
        metadata = dict(self.metadata)
        if self._sampler is not None:
            metadata = {**self._sampler.metadata(), **metadata}
        header = {
            "format": FORMAT,
            "version": VERSION,
            "compression": self.compression,
            "records": {"format": "spy_magic.profile jsonl", "version": JSONL_VERSION},
            "metadata": metadata,
        }
        return _frame(HEADER, _dumps(header).encode("ascii"))

    def flush(self, final: bool = False) -> None:
        """Write what is buffered as one frame (the header first, the first time)."""
        out = b""
        if not self._header_written:
            out += self._header()
            self._header_written = True
        if self._pending or final:
            text = "".join(record + "\n" for record in self._pending)
            self._pending.clear()
            payload = self._compressor.chunk(text.encode("ascii"), final=final)
            if payload:
                out += _frame(DATA, payload)
        if out:
            self._write(out)  # whole frames at once: a kill leaves at most the last one cut
        self._last_flush = time.monotonic()

    def close(self, metadata: dict | None = None) -> None:
        """Write the rest and the end frame (`metadata`: the final metadata, e.g. the
        profile's). Safe to call twice."""
        if self.closed:
            return
        try:
            self.flush(final=True)
            end = {"samples": self.samples, "metadata": dict(metadata or self.metadata)}
            self._write(_frame(END, _dumps(end).encode("ascii")))
        finally:
            self.closed = True
            if self._owned:
                self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def to_recording(profile: Profile, *, compression: str = "auto") -> bytes:
    """A whole profile as one binary recording (what `write(..., "binary")` writes)."""
    out = io.BytesIO()
    writer = RecordingWriter(out, profile.metadata, compression=compression, flush_every=math.inf)
    for change in profile.rate_changes:
        writer.add_rate_change(change)
    for sample in profile.require_samples("the binary export (every sample, lossless)"):
        writer.add(sample)
    writer.close(profile.metadata)
    return out.getvalue()


# -- reading --------------------------------------------------------------------------------
def is_recording(head: bytes) -> bool:
    return head.startswith(MAGIC)


def _describe(head: bytes) -> str:
    for magic, what in FOREIGN_MAGICS.items():
        if head.startswith(magic):
            return f"not a spy_magic recording: it is {what}"
    if not head:
        return "not a spy_magic recording: the file is empty"
    return f"not a spy_magic recording: it starts with {head[:8]!r}, not {MAGIC!r}"


def read_recording(source: PathOrBinaryFile) -> Profile:
    """A Profile from a binary recording: a path or a binary file.

    A recording that stops short of its end frame (the recorder was killed, the file cut)
    gives back every sample before the break, with a RecordingTruncatedWarning saying how
    many. Anything else wrong (not a recording, a damaged frame, a newer version) raises
    RecordingError, which carries the samples read before the damage.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return _read(f)
    return _read(source)


def _read(f: IO[bytes]) -> Profile:
    head = f.read(HEAD.size)
    if (head and MAGIC.startswith(head)) or (head.startswith(MAGIC) and len(head) < HEAD.size):
        raise RecordingError(
            f"the recording is cut off inside its first {HEAD.size} bytes: no samples recovered"
        )
    if not head.startswith(MAGIC):
        raise RecordingError(_describe(head))
    _, version, compression_byte, _ = HEAD.unpack(head)
    if version > VERSION:
        raise RecordingError(
            f"recording format version {version} is newer than this spy_magic reads ({VERSION})"
        )
    if compression_byte >= len(COMPRESSIONS):
        raise RecordingError(f"unknown compression {compression_byte} in the file's head")
    decompressor = _Decompressor(COMPRESSIONS[compression_byte])
    decoder = SampleDecoder()
    profile: Profile | None = None
    offset = HEAD.size
    number = 0

    def damaged(reason: str) -> RecordingError:
        count = profile.sample_count if profile is not None else 0
        return RecordingError(f"{reason}; {count} samples were recovered before it", count, profile)

    while True:
        raw = f.read(FRAME.size)
        if not raw:
            break
        number += 1
        if len(raw) < FRAME.size:
            return _truncated(profile, offset, "inside a frame's head")
        kind, length, crc = FRAME.unpack(raw)
        if kind not in (HEADER, DATA, END) or length > MAX_FRAME:
            raise damaged(f"frame {number} at byte {offset} is damaged (no frame starts there)")
        payload = f.read(length)
        if len(payload) < length:
            return _truncated(profile, offset, f"inside frame {number} ({len(payload)} of "
                              f"{length} bytes)")  # fmt: skip
        if zlib.crc32(payload) != crc:
            raise damaged(f"frame {number} at byte {offset} is damaged (checksum mismatch)")
        at, offset = offset, offset + FRAME.size + length
        if kind == HEADER:
            if profile is not None:
                raise damaged(f"frame {number} at byte {at} is a second header")
            profile = _profile_from_header(payload)
            continue
        if profile is None:
            raise damaged(f"frame {number} at byte {at} comes before the header")
        if kind == END:
            end = json.loads(payload)
            if isinstance(end.get("metadata"), dict):
                profile.metadata.update(end["metadata"])
            if end.get("samples") != profile.sample_count:
                raise damaged(
                    f"the end frame counts {end.get('samples')} samples but the frames hold "
                    f"{profile.sample_count}"
                )
            return profile
        try:
            text = decompressor.chunk(payload).decode("ascii")
        except Exception as exc:  # zlib.error, ZstdError, UnicodeDecodeError
            raise damaged(f"frame {number} at byte {at} does not decompress ({exc})") from None
        for line in text.splitlines():
            try:
                _add_record(profile, decoder, json.loads(line))
            except (KeyError, TypeError, ValueError) as exc:
                raise damaged(f"frame {number} holds a bad record ({exc})") from None
    if profile is None:
        raise RecordingError(
            "the recording holds no samples: it stops before its header "
            "(the recorder ended before its first frame)"
        )
    return _truncated(profile, offset, "after a whole frame")


def _profile_from_header(payload: bytes) -> Profile:
    try:
        header = json.loads(payload)
        if header.get("format") != FORMAT:
            raise ValueError(f"format {header.get('format')!r}")
        metadata = header.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValueError("metadata is not an object")
    except (ValueError, AttributeError) as exc:
        raise RecordingError(f"the recording's header is not valid ({exc})") from None
    return Profile(metadata)


def _add_record(profile: Profile, decoder: SampleDecoder, record: dict) -> None:
    kind = record.get("type")
    if kind == "trace":
        decoder.define(record)
    elif kind == "sample":
        profile.add(decoder.decode(record))
    elif kind == "rate_change":
        profile.add_rate_change(decode_rate_change(record))
    else:
        raise ValueError(f"unknown record type {kind!r}")


def _truncated(profile: Profile | None, offset: int, where: str) -> Profile:
    if profile is None:
        raise RecordingError(
            f"the recording is cut off {where} at byte {offset}, before its header"
        )
    count = profile.sample_count
    warnings.warn(
        RecordingTruncatedWarning(
            f"the recording stops {where} at byte {offset} with no end frame (the recorder "
            f"was killed, or the file cut): {count} samples recovered, up to "
            f"{profile.duration:.2f} s",
            count,
        ),
        stacklevel=3,
    )
    return profile
