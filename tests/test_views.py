"""The static fallbacks a saved notebook shows: the PNG flame graph and the plain-text top list.

The PNG is decoded back to pixels and measured: widths must follow the sample shares and
colours the kind of code (warm for the user's, blue for the standard library).
"""

from __future__ import annotations

import io

import pytest

from spy_magic.engine.sample import ProcessLabel, Sample, Trace
from spy_magic.notebook.views import flame_png, top_text
from spy_magic.profile import Profile
from spy_magic.reader import Frame

RUNPY = Frame("_run_code", "<frozen runpy>", 88, 80)
MAIN = Frame("<module>", "/home/me/work.py", 20, 1)
SHARES = {"heavy": 6, "medium": 3, "light": 1}  # tenths of the samples


def _profile() -> Profile:
    samples = []
    for name, tenths in SHARES.items():
        leaf = Frame(name, "/home/me/work.py", 5, 4)
        for _ in range(tenths * 40):
            t = len(samples) * 0.01
            trace = Trace(1, 7, 1007, "MainThread", True, False, (leaf, MAIN, RUNPY),
                          (ProcessLabel(1, "python work.py"),))  # fmt: skip
            samples.append(Sample(t, [trace]))
    profile = Profile({"target": "In [4]"})
    profile.extend(samples)
    return profile


def _runs(values, minimum: int = 4) -> list[tuple[int, int]]:
    """[start, end) stretches of non-white pixels along a line, white gaps splitting them."""
    runs, start = [], None
    for i, pixel in enumerate([*values, (1.0, 1.0, 1.0)]):
        white = min(pixel[:3]) > 0.85  # boxes are parted by (anti-aliased) white lines
        if not white and start is None:
            start = i
        elif white and start is not None:
            if i - start >= minimum:
                runs.append((start, i))
            start = None
    return runs


def test_png_flame_graph_widths_follow_the_shares_and_colours_the_kind_of_code():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib import image

    pixels = image.imread(io.BytesIO(flame_png(_profile())), format="png")
    width = pixels.shape[1]
    # A column through the leftmost (heaviest) stack, bottom-up: runpy, <module>, heavy.
    column = width // 20
    rows = _runs(pixels[:, column, :3])
    rows = [r for r in rows if r[1] - r[0] >= 12]  # boxes, not the title's glyphs
    assert len(rows) == 3, rows
    root, module, leaf = sorted(rows, reverse=True)  # image y grows downwards
    red, _, blue = pixels[(root[0] + root[1]) // 2, column, :3]
    assert blue > red, "the standard library's frame is drawn blue"
    for row in (module, leaf):
        red, _, blue = pixels[(row[0] + row[1]) // 2, column, :3]
        assert red > blue, "the user's own frames are drawn warm"

    leaves = _runs(pixels[(leaf[0] + leaf[1]) // 2, :, :3], minimum=8)
    assert len(leaves) == 3, leaves
    total = sum(end - start for start, end in leaves)
    for (start, end), tenths in zip(leaves, SHARES.values()):
        assert abs((end - start) / total - tenths / 10) < 0.02, (leaves, SHARES)


def test_top_text_lists_own_shares():
    text = top_text(_profile())
    assert text.startswith("spy_magic: 400 samples"), text
    lines = {line.split()[-2]: line for line in text.splitlines()[2:]}
    assert float(lines["heavy"].split()[0]) == pytest.approx(60.0, abs=0.01)
    assert float(lines["light"].split()[0]) == pytest.approx(10.0, abs=0.01)
