"""The source text of the files a profile's frames point at, read while the target runs.

The line heat map shows each line's share beside its code. The code must be the target's:
read through `/proc/PID/root` (the target's own root, so a container's or chroot's files,
not ours that happen to share a path) and, for a relative name, `/proc/PID/cwd`, while the
process still exists. `SourceCollector` is a sampler collector doing that once per file as
samples arrive; its `sources` go into the profile's metadata (`"sources"`: file name → text,
or the lines the heat map shows; the reason a file has none in `"sources_missing"`), so jsonl
and binary recordings carry them to a later `replay --format heatmap`.
"""

from __future__ import annotations

import os
import tokenize
from io import BytesIO
from typing import TYPE_CHECKING, Any

from ..engine.sample import Sample

if TYPE_CHECKING:
    from .model import Profile

MAX_FILE_BYTES = 2 << 20  # a larger "source" is no source file anyone reads line by line
MAX_TOTAL_BYTES = 16 << 20  # all files together: the metadata travels with the profile


def _decode(data: bytes) -> str:
    try:
        encoding, _ = tokenize.detect_encoding(BytesIO(data).readline)
    except SyntaxError:
        encoding = "utf-8"
    return data.decode(encoding, errors="replace")


def read_source(pid: int | None, filename: str) -> tuple[str | None, str | None]:
    """(text, None), or (None, why not): `filename` as process `pid` sees it.

    Without a pid, or once the process is gone, nothing is read: a file of the same name
    here may be another one (another root, or edited since)."""
    if not filename or filename.startswith("<"):
        return None, "no source file (generated code)"
    if pid is None:
        return None, "not read while the target ran"
    base = f"/proc/{pid}/root" if os.path.isabs(filename) else f"/proc/{pid}/cwd"
    path = os.path.join(base, filename.lstrip("/")) if os.path.isabs(filename) else (
        os.path.join(base, filename))  # fmt: skip
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None, "no such file in the target's root" if os.path.exists(
            f"/proc/{pid}") else "the target ended before its files were read"  # fmt: skip
    except OSError as exc:
        return None, f"cannot read it: {exc.strerror}"
    if len(data) > MAX_FILE_BYTES:
        return None, f"larger than {MAX_FILE_BYTES >> 20} MB"
    return _decode(data), None


_TRACES_REMEMBERED = 50_000


class SourceCollector:
    """A sampler collector: reads each file a sampled frame names, once, while the target
    still runs. `sources`/`missing` are the metadata entries (see the module docstring)."""

    def __init__(self) -> None:
        self.sources: dict[str, str] = {}
        self.missing: dict[str, str] = {}
        self._seen: set[str] = set()
        self._bytes = 0
        # The engine shares one Trace object per repeated stack: one already looked at costs
        # one lookup, not one per frame. Kept alive here, so an id is never another's.
        self._traces: dict[int, object] = {}

    def __call__(self, sample: Sample) -> None:
        seen = self._seen
        traces = self._traces
        for trace in sample.traces:
            if traces.get(id(trace)) is trace:
                continue
            if len(traces) >= _TRACES_REMEMBERED:
                traces.clear()
            traces[id(trace)] = trace
            for frame in trace.frames:
                name = frame.filename
                if name not in seen:
                    seen.add(name)
                    self._read(trace.pid, name)

    def _read(self, pid: int, filename: str) -> None:
        if self._bytes >= MAX_TOTAL_BYTES:
            self.missing[filename] = f"past the {MAX_TOTAL_BYTES >> 20} MB kept for sources"
            return
        text, why = read_source(pid, filename)
        if text is None:
            self.missing[filename] = why or "not available"
        else:
            self.sources[filename] = text
            self._bytes += len(text)

    def metadata(self, profile: Profile | None = None) -> dict:
        """What goes into the profile's metadata: every source read, or given the finished
        `profile` only what its heat map shows (`heatmap.kept_source`), so a recording
        carries a few KB of source, not whole standard-library modules."""
        sources: dict[str, Any] = dict(self.sources)
        if profile is not None:
            from .heatmap import kept_source

            sources = kept_source(profile, self.sources)
        missing = {f: why for f, why in self.missing.items()
                   if profile is None or f not in self.sources}  # fmt: skip
        return {"sources": sources, "sources_missing": missing}
