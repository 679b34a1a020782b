"""The static fallbacks a saved notebook shows: the PNG flame graph and the plain-text top list.

The PNG is decoded back to pixels and measured: widths must follow the sample shares and
colours the kind of code (warm for the user's, blue for the standard library).
"""

from __future__ import annotations

import base64
import io
import json
import re

import pytest

from spy_magic.engine.sample import ProcessLabel, RateChange, Sample, Trace
from spy_magic.notebook.views import _frame_colour, flame_boxes, flame_png, profile_bundle, top_text
from spy_magic.profile import Profile
from spy_magic.profile.flametree import OTHER
from spy_magic.profile.summary import summarize
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


def _drawn_rectangles(monkeypatch) -> list[tuple]:
    """Every box matplotlib is asked to draw, as (level, start, width, colour)."""
    import matplotlib.patches

    drawn = []

    class Recording(matplotlib.patches.Rectangle):
        def __init__(self, xy, width, height, **kwargs):
            if "facecolor" in kwargs:  # ours; matplotlib's own (the axes' background) have none
                drawn.append((xy[1], xy[0], width, kwargs["facecolor"]))
            super().__init__(xy, width, height, **kwargs)

    monkeypatch.setattr(matplotlib.patches, "Rectangle", Recording)
    return drawn


def test_the_png_draws_the_tree_the_report_ships(monkeypatch):
    """The bundle's PNG is the by-function tree inside its own HTML, all threads summed
    (`flame_boxes`; a browser test holds that to what the graph draws), not a folding of
    its own: two threads with a tail of rare functions, pruned per thread, give "(other)"
    boxes that only that tree has."""
    pytest.importorskip("matplotlib")
    drawn = _drawn_rectangles(monkeypatch)
    samples = []
    # 2000 samples: frames under 4 (0.2 %) are pruned. "split" has 3 in each thread, so
    # the threads' trees lump it into "(other)" where folding all stacks at once would not.
    names = ["split"] * 6 + [f"rare{i % 251}" for i in range(494)] + ["heavy"] * 1500
    for i, name in enumerate(names):
        leaf = Frame(name, "/home/me/work.py", 5, 4)
        trace = Trace(1, 7 + i % 2, 1007 + i % 2, f"T{i % 2}", True, False, (leaf, MAIN, RUNPY))
        samples.append(Sample(i * 0.01, [trace]))
    profile = Profile({"target": "In [5]"})
    profile.extend(samples)
    bundle = profile_bundle(profile, "In [5]")
    data = re.search(r'<script type="application/json" class="sfg-data">(.*?)</script>',
                     bundle["text/html"]).group(1)  # fmt: skip
    boxes = flame_boxes(json.loads(data))
    assert [(level, x, width) for level, x, width, _ in drawn] == [b[:3] for b in boxes]
    others = [b for b in boxes if b[3] == OTHER]
    assert others and sum(b[2] for b in others) > 0
    assert {colour for *_, colour in drawn if colour == _frame_colour(OTHER, "")}
    assert {b[3] for b in boxes} >= {"heavy", "<module>", "_run_code"}
    assert "split" not in {b[3] for b in boxes}


def test_top_text_lists_own_shares():
    text = top_text(_profile())
    assert text.startswith("spy_magic: 400 samples"), text
    lines = {line.split()[-2]: line for line in text.splitlines()[2:]}
    assert float(lines["heavy"].split()[0]) == pytest.approx(60.0, abs=0.01)
    assert float(lines["light"].split()[0]) == pytest.approx(10.0, abs=0.01)


# --- the summary every header shows, and the notebook bundle ------------------------------------


def _timed_profile(gaps: list[float], late: float | None = None, **metadata) -> Profile:
    """A one-thread profile with samples at the given gaps (each `late` s late if given)."""
    leaf = Frame("heavy", "/home/me/work.py", 5, 4)
    profile = Profile({"target": "In [4]", **metadata})
    t = 0.0
    for gap in [0.0, *gaps]:
        t += gap
        trace = Trace(1, 7, 1007, "MainThread", True, False, (leaf, MAIN), ())
        profile.add(Sample(t, [trace], late=late))
    return profile


def test_summary_says_the_rate_was_lowered_in_plain_words():
    profile = _timed_profile([0.004] * 99, rate=1000)
    profile.add_rate_change(RateChange(0.1, 1000, 500, "a sample costs 900 µs"))
    profile.add_rate_change(RateChange(0.2, 500, 250, "a sample costs 900 µs"))
    summary = summarize(profile)
    assert summary.verdict == "rate lowered 1000 → 250 Hz: the sampler could not keep up"
    assert not summary.kept_up
    profile.add_rate_change(RateChange(0.3, 250, 375, "sampling keeps up again"))
    assert summarize(profile).verdict == (
        "rate lowered 1000 → 250 Hz: the sampler could not keep up (back up to 375 Hz later)"
    )


def test_summary_numbers_and_other_verdicts():
    kept = summarize(_timed_profile([0.01] * 100, late=None, rate=100, python_version="3.12"))
    assert (kept.samples, kept.stacks, kept.threads, kept.asked_rate) == (101, 101, 1, 100)
    assert kept.duration == pytest.approx(1.0)
    assert kept.achieved_rate == pytest.approx(100)
    # A thread seen in every sample adds up to the duration the header shows.
    assert kept.seconds(kept.stacks) == pytest.approx(kept.duration)
    assert kept.kept_up and kept.verdict == "kept up: p99 lateness 0.00 ms at 100 Hz"
    meta = kept.header_metadata({"python_version": "3.12", "target": "In [4]"})
    assert meta["asked_rate"] == 100 and meta["python"] == "3.12" and meta["target"] == "In [4]"

    late = summarize(_timed_profile([0.03] * 50, late=0.025, rate=100, dropped_stale=3))
    assert late.verdict == ("late: p99 25 ms behind a 10 ms schedule, 3 samples skipped: the "
                            "machine was too busy for the rate asked")  # fmt: skip
    assert not late.kept_up
    one = summarize(_timed_profile([0.03] * 50, late=0.025, rate=100, dropped_stale=1))
    assert ", 1 sample skipped:" in one.verdict
    few = summarize(_timed_profile([0.02] * 100, rate=100))
    assert few.verdict == "fewer samples than asked: 50 Hz of 100 Hz" and not few.kept_up
    empty = summarize(Profile({"rate": 100}))
    assert empty.verdict == "no samples: the code ended before the first one was due"
    assert empty.seconds_per_sample == 0 and empty.stacks == 0


def test_bundle_is_static_and_opens_on_the_view_asked():
    """No widget view (a reopened notebook could not show one); the report carries the
    summary, the verdict and the table, and `--function` picks the first view."""
    profile = _profile()
    profile.metadata.update(rate=100)
    bundle = profile_bundle(profile, "In [4]")
    assert set(bundle) == {"text/plain", "text/html", "image/png"}
    report = bundle["text/html"]
    assert report.startswith('<div class="sfg-report">')
    verdict = summarize(profile).verdict
    assert verdict in report and verdict in bundle["text/plain"]
    data = json.loads(re.search(r'class="sfg-data">(.*?)</script>', report, re.S).group(1))
    assert data["by"] == "line" and set(data["views"]) == {"line", "function"}
    assert data["seconds_per_sample"] == pytest.approx(summarize(profile).seconds_per_sample)
    names = [data["strings"][i] for i in data["functions"]["name"]]
    assert names == ["heavy", "medium", "light", "<module>", "_run_code"]
    assert f'src="data:image/png;base64,{bundle["image/png"]}"' in report  # one picture
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    by_function = profile_bundle(profile, "In [4]", by="function")["text/html"]
    assert json.loads(re.search(r'class="sfg-data">(.*?)</script>', by_function,
                                re.S).group(1))["by"] == "function"  # fmt: skip


def _call_tree_profile(samples: int, threads: int, seed: int = 3) -> Profile:
    """A program's shape: a call tree (cell code calling into packages and the standard
    library, 4 to 20 deep, 1 to 4 callees a function, about 400 paths) sampled along it."""
    import random

    rng = random.Random(seed)
    user = [Frame(f"step_{i}", "In [9]", 3 + i, 1) for i in range(15)]
    libs = [Frame(f"call_{i}", f"/venv/lib/python3.12/site-packages/pkg{i % 5}/core.py",
                  40 + i, 30) for i in range(35)]  # fmt: skip
    stdlib = [Frame(f"std_{i}", f"/usr/lib/python3.12/mod{i % 6}.py", 100 + i, 90)
              for i in range(20)]  # fmt: skip
    root = Frame("<module>", "In [9]", 1, 1)

    def callees(depth: int) -> list:
        pool = user if depth < 4 else libs + stdlib
        return rng.sample(pool, rng.randint(1, 4))

    paths = []

    def grow(path: tuple, depth: int) -> None:
        if len(paths) >= 400 or (depth >= 4 and (depth >= 20 or rng.random() < 0.25)):
            paths.append(path)
            return
        for frame in callees(depth):
            grow((frame, *path), depth + 1)

    grow((root,), 1)
    weights = [rng.random() ** 3 for _ in paths]
    profile = Profile({"rate": 100})
    for n in range(samples):
        picks = rng.choices(paths, weights, k=threads)
        traces = [Trace(1, t + 1, t + 1, f"T{t}", True, False, stack, ())
                  for t, stack in enumerate(picks)]  # fmt: skip
        profile.add(Sample(n * 0.01, traces))
    return profile


def _stored_size(bundle: dict) -> int:
    """Bytes of the output as nbformat writes it (JSON, text split into lines)."""
    stored = {k: v if k == "image/png" else v.splitlines(keepends=True) for k, v in bundle.items()}
    return len(json.dumps({"output_type": "display_data", "data": stored, "metadata": {}}))


def test_a_typical_profile_adds_at_most_200_kb_to_the_notebook():
    """30 s at 100 Hz of a program 4 to 20 calls deep, in one thread (the cell's) and in
    three; the embedded trees are pruned at 0.2 %, so length does not grow them."""
    for threads in (1, 3):
        profile = _call_tree_profile(3000, threads)
        size = _stored_size(profile_bundle(profile, "In [9]"))
        assert size <= 200_000, (threads, size)
