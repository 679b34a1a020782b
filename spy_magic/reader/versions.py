"""The one version model: every CPython the reader knows, one entry each.

What differs between versions comes in two kinds:
- struct offsets, sizes and C constants: generated from each build's headers into
  `layouts.LAYOUTS` (by tools/gen_layouts.py), keyed by build name ("3.14", "3.14t"), and on
  3.13+ overridden at run time by the target's own `_Py_DebugOffsets`;
- how the data is shaped (which frame walker, line-table format, where the GIL is kept,
  whether references are tagged), which no offset can say: the `PythonVersion` fields below.

Adding a version (3.16, say) means: its headers for tools/gen_layouts.py (one `VERSIONS` entry
there), one `PythonVersion` entry in `KNOWN`, and one interpreter in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .layouts import LAYOUTS


@dataclass(frozen=True)
class PythonVersion:
    """How one CPython minor version lays out what the reader reads, beyond its offsets."""

    minor: tuple[int, int]
    # "objects": PyFrameObjects linked by f_back (<= 3.10); "chunks": _PyInterpreterFrames in
    # per-thread data-stack chunks (3.11+).
    frames: str
    # "lnotab" (<= 3.9), "linetable310", "locations" (3.11+): see linetable.py.
    line_table: str
    # 3.10 counts f_lasti in code units (2 bytes) and keeps the traced line in f_lineno.
    lasti_in_code_units: bool = False
    # 3.11/3.12 reach the current frame through tstate->cframe; 3.13+ hold it in the tstate.
    cframe: bool = False
    # <= 3.11: the GIL is in the runtime state; 3.12+: per interpreter.
    gil_in_interpreter: bool = False
    # 3.13+: _PyRuntime starts with _Py_DebugOffsets, which the reader trusts over its table.
    debug_offsets: bool = False
    # 3.13+ has a free-threaded build (Py_GIL_DISABLED), a separate layout.
    free_threaded_build: bool = False
    # Where an instance's attributes live (objects.py, for thread names): "dict" (<= 3.10,
    # a __dict__), "values311" (values pointer before the object), "dorv312" (a tagged
    # dict-or-values word), "managed313" (managed dict pointer, or inline values).
    instance_dicts: str = "dict"
    # (3.14+ frames hold _PyStackRefs, whose tag bits come from the table's Py_TAG_BITS.)

    @property
    def text(self) -> str:
        return f"{self.minor[0]}.{self.minor[1]}"

    def build(self, free_threaded: bool) -> str:
        """The LAYOUTS key for this version's standard or free-threaded build."""
        return self.text + ("t" if free_threaded else "")


# 3.13's shapes hold for 3.14 and 3.15 too (their offsets, in the tables, differ).
_V313 = PythonVersion(
    (3, 13),
    "chunks",
    "locations",
    gil_in_interpreter=True,
    debug_offsets=True,
    free_threaded_build=True,
    instance_dicts="managed313",
)
KNOWN: dict[tuple[int, int], PythonVersion] = {
    v.minor: v
    for v in (
        PythonVersion((3, 8), "objects", "lnotab"),
        PythonVersion((3, 9), "objects", "lnotab"),
        PythonVersion((3, 10), "objects", "linetable310", lasti_in_code_units=True),
        PythonVersion((3, 11), "chunks", "locations", cframe=True, instance_dicts="values311"),
        PythonVersion(
            (3, 12),
            "chunks",
            "locations",
            cframe=True,
            gil_in_interpreter=True,
            instance_dicts="dorv312",
        ),
        _V313,
        replace(_V313, minor=(3, 14)),
        replace(_V313, minor=(3, 15)),
    )
}
OLDEST = min(KNOWN)
NEWEST = max(KNOWN)
RANGE_TEXT = f"{OLDEST[0]}.{OLDEST[1]}–{NEWEST[0]}.{NEWEST[1]}"


class UnknownBuild(LookupError):
    """The reader has no model of this build; the message says why, for the user."""


def lookup(minor: tuple[int, int], free_threaded: bool = False) -> tuple[PythonVersion, dict]:
    """The model of a version and a fresh copy of its build's offset table.

    Raises UnknownBuild, saying why, for a version outside the known range, or a
    free-threaded build whose layout is not known.
    """
    spec = KNOWN.get(tuple(minor[:2]))
    name = f"{minor[0]}.{minor[1]}" + ("t" if free_threaded else "")
    if spec is None:
        if tuple(minor[:2]) > NEWEST:
            raise UnknownBuild(
                f"it is newer than this reader knows (it reads CPython {RANGE_TEXT}); "
                "a newer spy_magic may read it"
            )
        raise UnknownBuild(f"it is too old (spy_magic reads CPython {RANGE_TEXT})")
    if free_threaded and not spec.free_threaded_build:
        raise UnknownBuild(f"CPython {spec.text} has no free-threaded build")
    table = LAYOUTS.get(spec.build(free_threaded))
    if table is None:
        raise UnknownBuild(f"the layout of a {name} build is not known to this reader")
    return spec, dict(table)
