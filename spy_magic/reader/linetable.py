"""Map a bytecode byte offset to a source line, the way CPython itself does.

A frame read out of another process gives us its code object's line table (raw bytes), its
``co_firstlineno`` and the offset of the instruction it is executing. This module turns that
into the line number the running interpreter would report as ``frame.f_lineno`` (and print in a
traceback). Three table formats exist across the supported versions:

``"lnotab"`` (3.8, 3.9; the bytes of ``co_lnotab``)
    Pairs of bytes ``(address increment, line increment)``: the first unsigned, the second a
    signed byte. Starting from address 0 and line ``co_firstlineno``, each pair moves the address
    on and then the line; an instruction's line is the line reached after applying every pair
    whose cumulative address is at most the instruction's offset. Large jumps are spread over
    several pairs (``(255, 0)`` for addresses, ``(0, ±127)`` for lines). The offset is
    ``f_lasti``, which in these versions already counts bytes.

``"linetable310"`` (3.10; the bytes of ``co_linetable``)
    Pairs ``(byte length, line delta)``, the first unsigned, the second a signed byte. Each pair
    covers the next ``length`` bytes of code; the delta is added to a running line that starts at
    ``co_firstlineno``, except that a delta of -128 means "no line" for that range (and leaves the
    running line alone). Pairs of length 0 only move the running line. ``f_lasti`` counts code
    units in 3.10, so the caller passes ``f_lasti * 2``.

``"locations"`` (3.11, 3.12, 3.13; the bytes of ``co_linetable``)
    A sequence of entries, each starting with a byte that has its top bit set: bits 3-6 hold a
    kind code, bits 0-2 the number of code units covered minus one. The rest of an entry (bytes
    with the top bit clear) depends on the kind:

    * 0-9 "short": one byte of column data, same line as before;
    * 10-12 "one line": two column bytes; the line moves on by ``kind - 10``;
    * 13 "no columns": a signed varint line delta;
    * 14 "long": a signed varint line delta, then three unsigned varints (end line delta,
      column + 1, end column + 1);
    * 15 "no location": nothing; the range has no line, and the running line stays put.

    Varints are little-endian groups of 6 bits, bit 6 (0x40) meaning "another group follows";
    a signed varint holds ``abs(value) << 1 | sign``. The caller passes the index of the current
    code unit times 2.

What :meth:`LineTable.line_at` returns outside the table's ranges mirrors ``PyCode_Addr2Line``:

* a negative offset (a frame that has not started yet: ``f_lasti == -1``) gives
  ``co_firstlineno`` in every format;
* for ``"lnotab"`` every offset at or past the last entry gets the last line reached (there is no
  "no line" in that format, and the table does not record the code's length);
* for ``"linetable310"`` and ``"locations"`` an offset inside a no-line range, or at or past the
  end of the covered code, gives ``None``: CPython's ``PyCode_Addr2Line`` returns -1 there and
  ``frame.f_lineno`` is ``None``.

The table may come from a torn read of a live process, so construction validates what can be
validated and raises :class:`ValueError` (and nothing else) when the bytes cannot be a table
of that kind. Decoding does a single pass over the table, so its cost is proportional to the
table's length; lookups are a binary search.
"""

from __future__ import annotations

import operator
from bisect import bisect_right

__all__ = ["KINDS", "LineTable", "kind_for_version"]

KINDS = ("lnotab", "linetable310", "locations")

# Location-table kind codes (bits 3-6 of an entry's first byte).
_ONE_LINE0 = 10
_ONE_LINE2 = 12
_NO_COLUMNS = 13
_LONG = 14
_NO_LOCATION = 15

# A varint longer than this many 6-bit groups cannot come from the compiler (CPython reads them
# into 32-bit ints); treat it as garbage.
_MAX_VARINT_GROUPS = 6


def kind_for_version(major: int, minor: int) -> str:
    """Return the line-table kind used by CPython ``major.minor`` (see versions.KNOWN).

    The table bytes live in ``co_lnotab`` for "lnotab" and in ``co_linetable`` otherwise.
    Raises ValueError for versions the reader does not know.
    """
    from .versions import KNOWN

    spec = KNOWN.get((major, minor))
    if spec is None:
        raise ValueError(f"no known line-table format for Python {major}.{minor}")
    return spec.line_table


class LineTable:
    """A decoded line table: ``line_at(byte_offset)`` gives the line CPython would report.

    ``kind`` is one of :data:`KINDS` (see :func:`kind_for_version`), ``table`` the raw bytes of
    ``co_lnotab`` / ``co_linetable``, ``firstlineno`` the code object's ``co_firstlineno``.
    Raises ValueError if the bytes are not a well-formed table of that kind.
    """

    __slots__ = ("_end", "_firstlineno", "_kind", "_lines", "_starts")

    def __init__(self, kind: str, table: bytes, firstlineno: int) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown line-table kind {kind!r}; expected one of {KINDS}")
        if not isinstance(table, (bytes, bytearray, memoryview)):
            raise ValueError(f"line table must be bytes, not {type(table).__name__}")
        try:
            first = operator.index(firstlineno)
        except TypeError:
            raise ValueError(f"first line must be an int, not {firstlineno!r}") from None
        data = bytes(table)
        self._kind = kind
        self._firstlineno = first
        # Ranges are kept as parallel lists: _starts[i] is where range i begins (ascending, the
        # first one 0), _lines[i] its line (None: no line); range i ends where i + 1 begins, and
        # the last one at _end (None: open-ended, which only "lnotab" is).
        if kind == "lnotab":
            self._starts, self._lines, self._end = _decode_lnotab(data, first)
        elif kind == "linetable310":
            self._starts, self._lines, self._end = _decode_linetable310(data, first)
        else:
            self._starts, self._lines, self._end = _decode_locations(data, first)

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def firstlineno(self) -> int:
        return self._firstlineno

    def line_at(self, byte_offset: int) -> int | None:
        """The line for the instruction at ``byte_offset``, or None where CPython has none.

        See the module docstring for the offsets outside the table.
        """
        if byte_offset < 0:
            return self._firstlineno
        end = self._end
        if end is not None and byte_offset >= end:
            return None
        return self._lines[bisect_right(self._starts, byte_offset) - 1]

    def ranges(self) -> list[tuple[int, int | None, int | None]]:
        """The decoded ranges as ``(start, end, line)``, end None for an open-ended last range.

        Adjacent ranges with the same line are (mostly) merged; for debugging and tests.
        """
        starts = self._starts
        ends: list[int | None] = [*starts[1:], self._end]
        return list(zip(starts, ends, self._lines))

    def __repr__(self) -> str:
        return (
            f"LineTable(kind={self._kind!r}, firstlineno={self._firstlineno}, "
            f"ranges={len(self._starts)})"
        )


# Each decoder returns (starts, lines, end) as described in LineTable.__init__; with an empty
# table, starts and lines are [0] and [the default line] and end says how far that reaches.


def _decode_lnotab(data: bytes, firstlineno: int):
    if len(data) % 2:
        raise ValueError(f"lnotab has odd length {len(data)}")
    starts = [0]
    lines: list[int | None] = [firstlineno]
    addr = 0
    line = firstlineno
    # A pair moves the address first and then the line; an offset takes every line increment
    # whose pair's cumulative address is <= the offset.
    for i in range(0, len(data), 2):
        addr += data[i]
        delta = data[i + 1]
        line += delta - 256 if delta >= 128 else delta
        if addr == starts[-1]:
            lines[-1] = line
        elif line == lines[-1]:
            continue
        else:
            starts.append(addr)
            lines.append(line)
    return starts, lines, None


def _decode_linetable310(data: bytes, firstlineno: int):
    if len(data) % 2:
        raise ValueError(f"3.10 line table has odd length {len(data)}")
    starts: list[int] = []
    lines: list[int | None] = []
    end = 0
    computed = firstlineno
    for i in range(0, len(data), 2):
        length = data[i]
        delta = data[i + 1]
        if delta == 128:  # -128 as a signed byte: this range has no line
            line = None
        else:
            computed += delta - 256 if delta > 128 else delta
            line = computed
        if length:
            _add_range(starts, lines, end, line)
            end += length
    return _finish(starts, lines, end)


def _decode_locations(data: bytes, firstlineno: int):
    n = len(data)
    starts: list[int] = []
    lines: list[int | None] = []
    end = 0
    computed = firstlineno
    pos = 0
    while pos < n:
        head = data[pos]
        if not head & 0x80:
            raise ValueError(f"location table: byte {pos} should start an entry but does not")
        code = (head >> 3) & 15
        pos += 1
        if code == _NO_LOCATION:
            line = None
        else:
            if code < _ONE_LINE0:  # short form: one column byte, same line
                _check_plain(data, pos, 1)
                pos += 1
            elif code <= _ONE_LINE2:  # one-line form: two column bytes
                _check_plain(data, pos, 2)
                computed += code - _ONE_LINE0
                pos += 2
            else:  # no-columns or long form: signed varint line delta first
                delta, pos = _read_varint(data, pos)
                computed += -(delta >> 1) if delta & 1 else delta >> 1
                if code == _LONG:  # end-line delta, column + 1, end column + 1
                    for _ in range(3):
                        _, pos = _read_varint(data, pos)
            line = computed
        _add_range(starts, lines, end, line)
        end += ((head & 7) + 1) * 2  # code units covered, as bytes
    return _finish(starts, lines, end)


def _check_plain(data: bytes, pos: int, count: int) -> None:
    """Check that ``count`` bytes at ``pos`` exist and do not look like an entry start."""
    if pos + count > len(data):
        raise ValueError("location table: entry runs past the end of the table")
    for k in range(pos, pos + count):
        if data[k] & 0x80:
            raise ValueError(f"location table: byte {k} starts an entry inside another")


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read an unsigned varint at ``pos``; return (value, position after it)."""
    n = len(data)
    value = 0
    shift = 0
    for _ in range(_MAX_VARINT_GROUPS):
        if pos >= n:
            raise ValueError("location table: varint runs past the end of the table")
        b = data[pos]
        if b & 0x80:
            raise ValueError(f"location table: byte {pos} starts an entry inside a varint")
        pos += 1
        value |= (b & 63) << shift
        if not b & 64:
            return value, pos
        shift += 6
    raise ValueError(f"location table: varint longer than {_MAX_VARINT_GROUPS} groups")


def _add_range(starts: list, lines: list, start: int, line: int | None) -> None:
    """Append a non-empty range beginning at ``start`` (merging it into an equal-lined one)."""
    if not lines or lines[-1] != line:
        starts.append(start)
        lines.append(line)


def _finish(starts: list, lines: list, end: int):
    if not starts:  # empty table: nothing covered, every offset >= 0 has no line
        return [0], [None], 0
    return starts, lines, end
