"""The flame tree format (flametree.py) and the offline page (html.py), in pure Python."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from spy_magic.profile import flametree
from spy_magic.profile import html as fhtml
from spy_magic.profile.flametree import (
    OTHER,
    build_tree,
    build_views,
    merge_threads,
    node_count,
    parse_label,
)
from spy_magic.profile.summary import fmt_pct, fmt_seconds

# -- labels ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("main (/app/run.py:12)", ("main", "/app/run.py", 12)),
        ("main (/app/run.py)", ("main", "/app/run.py", 0)),
        ("<module> (<string>:1)", ("<module>", "<string>", 1)),
        ("<lambda> (/a.py:3)", ("<lambda>", "/a.py", 3)),
        ("Foo.bar.<locals>.baz (/a.py:7)", ("Foo.bar.<locals>.baz", "/a.py", 7)),
        # names with spaces, parentheses, colons
        ("f (x) (/a.py:3)", ("f (x)", "/a.py", 3)),
        ("do thing (fast) now (/a.py:9)", ("do thing (fast) now", "/a.py", 9)),
        ("ns::op (/a.py:4)", ("ns::op", "/a.py", 4)),
        ("a:b: (c) (/x.py)", ("a:b: (c)", "/x.py", 0)),
        ("weird)(name (/a.py:2)", ("weird)(name", "/a.py", 2)),
        # files with parentheses, spaces, colons
        ("f (/data (old)/a.py:5)", ("f", "/data (old)/a.py", 5)),
        ("f (x) (/my files/b (2).py:6)", ("f (x)", "/my files/b (2).py", 6)),
        ("f (C:\\proj\\a.py:8)", ("f", "C:\\proj\\a.py", 8)),
        ("f (<frozen importlib._bootstrap>:1007)", ("f", "<frozen importlib._bootstrap>", 1007)),
        ("f (/a(.py:3)", ("f", "/a(.py", 3)),
        ("f (/a.py:-1)", ("f", "/a.py", -1)),
        ("f (/a.py:x1)", ("f", "/a.py:x1", 0)),
        # no file part at all
        ("bare", ("bare", "", 0)),
        ("idle", ("idle", "", 0)),
        ("pid 4242", ("pid 4242", "", 0)),
        ("python x.py (pid 42)", ("python x.py (pid 42)", "", 0)),
        ('thread "Main Thread" (1234)', ('thread "Main Thread" (1234)', "", 0)),
        ("(x)", ("(x)", "", 0)),
        ("", ("", "", 0)),
    ],
)
def test_parse_label(label, expected):
    assert parse_label(label) == expected


def test_parse_label_round_trips_model_labels():
    names = ["f", "f (x)", "a::b", "<lambda>", "x: y", "(paren)", "k (1) (2)"]
    files = ["/a.py", "/d (1)/e.py", "<string>", "/x:y/z.py", "/sp ace/f.py"]
    for name in names:
        for filename in files:
            for line in (0, 1, 123):
                label = f"{name} ({filename}:{line})" if line else f"{name} ({filename})"
                assert parse_label(label) == (name, filename, line), label


# -- trees -----------------------------------------------------------------------------------

MAIN = (1, 10, "MainThread")
WORKER = (1, 11, "worker")
OTHER_PROC = (2, 20, "MainThread")


def _sample_input() -> dict:
    return {
        MAIN: {
            ("main (/a.py:1)", "work (/a.py:5)", "leaf (/b.py:9)"): 50,
            ("main (/a.py:1)", "work (/a.py:5)"): 10,
            ("main (/a.py:1)", "work (/a.py:6)", "leaf (/b.py:9)"): 20,
            ("main (/a.py:1)", "f (x) (/a.py:30)"): 15,
            ("main (/a.py:1)",): 4,
            (): 1,
        },
        WORKER: {
            ("run (/usr/lib/python3.11/threading.py:1)", "loop (/w.py:2)"): 30,
            ("run (/usr/lib/python3.11/threading.py:1)", "tiny (/w.py:3)"): 1,
        },
        OTHER_PROC: {("main (/a.py:1)", "leaf (/b.py:9)"): 7},
    }


def _nodes(thread: dict, tree: dict) -> list[dict]:
    n = thread["nodes"]
    s = tree["strings"]
    return [
        {
            "parent": n["parent"][i],
            "name": s[n["name"][i]],
            "file": s[n["file"][i]],
            "line": n["line"][i],
            "self": n["self"][i],
            "total": n["total"][i],
        }
        for i in range(len(n["parent"]))
    ]


def _paths(thread: dict, tree: dict) -> dict[tuple, dict]:
    """Every node by its path of (name, file, line) from the thread root."""
    nodes = _nodes(thread, tree)
    paths: list[tuple] = []
    out = {}
    for i, node in enumerate(nodes):
        key = (node["name"], node["file"], node["line"])
        here = () if i == 0 else (*paths[node["parent"]], key)
        paths.append(here)
        out[here] = node
    return out


def _check_invariants(tree: dict) -> None:
    assert tree["format"] == "spy_magic.flametree" and tree["version"] == 1
    assert tree["strings"][0] == ""
    assert len(set(tree["strings"])) == len(tree["strings"])
    assert tree["total"] == sum(t["total"] for t in tree["threads"])
    for thread in tree["threads"]:
        arrays = thread["nodes"]
        lengths = {len(a) for a in arrays.values()}
        assert len(lengths) == 1
        nodes = _nodes(thread, tree)
        assert nodes[0]["parent"] == -1 and nodes[0]["name"] == "" and nodes[0]["file"] == ""
        assert nodes[0]["total"] == thread["total"]
        child_sum = Counter()
        siblings: dict[int, list] = {}
        for i, node in enumerate(nodes[1:], 1):
            assert 0 <= node["parent"] < i  # pre-order: parents first
            child_sum[node["parent"]] += node["total"]
            siblings.setdefault(node["parent"], []).append(i)
            assert node["total"] > 0
        for i, node in enumerate(nodes):
            assert node["total"] == node["self"] + child_sum[i]
        for kids in siblings.values():
            keys = [(nodes[k]["name"], nodes[k]["file"], nodes[k]["line"]) for k in kids]
            assert len(set(keys)) == len(keys)
            real = [nodes[k]["total"] for k in kids if nodes[k]["name"] != OTHER]
            assert real == sorted(real, reverse=True)
        # Depth-first: a node's subtree is contiguous right after it.
        end = list(range(1, len(nodes) + 1))
        for i in range(len(nodes) - 1, 0, -1):
            p = nodes[i]["parent"]
            end[p] = max(end[p], end[i])
        for i, node in enumerate(nodes[1:], 1):
            p = node["parent"]
            assert p < i < end[p]
    json.loads(json.dumps(tree))


def test_totals_and_structure():
    tree = build_tree(_sample_input(), min_fraction=0)
    _check_invariants(tree)
    assert tree["total"] == 100 + 31 + 7
    assert tree["pruned"] == 0
    assert OTHER not in tree["strings"]
    main, worker, other = tree["threads"]
    assert (main["pid"], main["tid"], main["name"], main["total"]) == (1, 10, "MainThread", 100)
    assert (worker["pid"], worker["tid"], worker["name"], worker["total"]) == (1, 11, "worker", 31)
    assert (other["pid"], other["tid"], other["total"]) == (2, 20, 7)

    p = _paths(main, tree)
    m = ("main", "/a.py", 1)
    assert p[()]["self"] == 1 and p[()]["total"] == 100
    assert p[(m,)]["total"] == 99 and p[(m,)]["self"] == 4
    w5 = (*(m,), ("work", "/a.py", 5))
    assert p[w5]["total"] == 60 and p[w5]["self"] == 10
    assert p[(*w5, ("leaf", "/b.py", 9))]["total"] == 50
    w6 = (m, ("work", "/a.py", 6))  # another line of the same function: its own node
    assert p[w6]["total"] == 20
    assert p[(m, ("f (x)", "/a.py", 30))]["total"] == 15
    assert len(p) == 7
    # Heaviest child first.
    nodes = _nodes(main, tree)
    assert [n["name"] for n in nodes[:4]] == ["", "main", "work", "leaf"]


def test_per_thread_trees_are_separate():
    tree = build_tree(_sample_input(), min_fraction=0)
    _, worker, other = tree["threads"]
    assert {n["name"] for n in _nodes(worker, tree)} == {"", "run", "loop", "tiny"}
    assert set(_paths(other, tree)) == {
        (),
        (("main", "/a.py", 1),),
        (("main", "/a.py", 1), ("leaf", "/b.py", 9)),
    }
    # Strings are shared between threads.
    assert tree["strings"].count("main") == 1


def test_thread_order_and_empty_threads():
    data = _sample_input()
    data[(1, 12, "idle")] = {("x (/a.py:1)",): 0}
    data[(0, 5, None)] = {("x (/a.py:1)",): 2}
    tree = build_tree(data, min_fraction=0)
    keys = [(t["pid"], t["tid"], t["name"]) for t in tree["threads"]]
    # By pid, then heaviest thread first; the empty thread is left out; None name -> "".
    assert keys == [(0, 5, ""), (1, 10, "MainThread"), (1, 11, "worker"), (2, 20, "MainThread")]


def test_pruning_folds_small_subtrees_into_other():
    tree = build_tree(_sample_input(), min_fraction=0.05)  # threshold 6.9 samples
    _check_invariants(tree)
    assert tree["total"] == 138
    assert tree["min_fraction"] == 0.05
    worker = _paths(tree["threads"][1], tree)
    run = ("run", "/usr/lib/python3.11/threading.py", 1)
    assert worker[(run, ("loop", "/w.py", 2))]["total"] == 30
    assert (run, ("tiny", "/w.py", 3)) not in worker
    other = worker[(run, (OTHER, "", 0))]
    assert other["self"] == other["total"] == 1
    # The (other) node comes after its kept siblings.
    nodes = _nodes(tree["threads"][1], tree)
    assert [n["name"] for n in nodes] == ["", "run", "loop", OTHER]
    assert tree["pruned"] == 1
    # Totals are untouched by pruning.
    unpruned = build_tree(_sample_input(), min_fraction=0)
    assert [t["total"] for t in tree["threads"]] == [t["total"] for t in unpruned["threads"]]


def test_pruning_whole_subtrees_and_sizes():
    data = {MAIN: {}}
    for i in range(2000):
        data[MAIN][("root (/a.py:1)", f"f{i} (/a.py:{i + 2})", "g (/b.py:1)")] = 1
    data[MAIN][("root (/a.py:1)", "hot (/a.py:1)", "g (/b.py:1)")] = 8000
    full = build_tree(data, min_fraction=0)
    assert node_count(full) == 1 + 1 + 2 * 2001
    pruned = build_tree(data, min_fraction=0.001)
    _check_invariants(pruned)
    assert node_count(pruned) == 5  # thread root, root, hot, g, (other)
    p = _paths(pruned["threads"][0], pruned)
    assert p[(("root", "/a.py", 1), (OTHER, "", 0))]["total"] == 2000
    assert pruned["pruned"] == 2000
    assert len(json.dumps(pruned)) < len(json.dumps(full)) / 20


def test_merge_threads_sums_the_threads_trees():
    """Unpruned, the sum of the threads' trees is the tree of all their stacks folded at
    once; pruned, it keeps each thread's "(other)" (the graph draws the same sum)."""
    merged_input: Counter = Counter()
    for counts in _sample_input().values():
        merged_input.update(counts)
    for by in ("line", "function"):
        tree = build_tree(_sample_input(), min_fraction=0, by=by)
        one = build_tree({MAIN: merged_input}, min_fraction=0, by=by)
        merged = {"pid": 0, "tid": 0, "name": "", "nodes": merge_threads(tree)}
        assert _nodes(merged, tree) == _nodes(one["threads"][0], one)
    pruned = build_tree(_sample_input(), min_fraction=0.05)
    p = _paths({"nodes": merge_threads(pruned)}, pruned)
    run = ("run", "/usr/lib/python3.11/threading.py", 1)
    assert p[(run, (OTHER, "", 0))]["total"] == 1
    assert p[()]["total"] == 138 and p[()]["self"] == 1
    # Children heaviest first, then by name, as the graph lays them out.
    nodes = _nodes({"nodes": merge_threads(pruned)}, pruned)
    assert [n["name"] for n in nodes if n["parent"] == 0] == ["main", "run"]


def test_default_min_fraction_and_bad_values():
    tree = build_tree(_sample_input())
    assert tree["min_fraction"] == flametree.DEFAULT_MIN_FRACTION
    with pytest.raises(ValueError):
        build_tree(_sample_input(), min_fraction=-0.1)


def test_function_labels_and_tuple_frames():
    data = {
        MAIN: {
            ("main (/a.py)", "f (x) (/a.py)"): 3,
            (("main", "/a.py", 0), ("f (x)", "/a.py", None)): 2,
        }
    }
    tree = build_tree(data, min_fraction=0)
    p = _paths(tree["threads"][0], tree)
    assert p[(("main", "/a.py", 0), ("f (x)", "/a.py", 0))]["total"] == 5
    assert len(p) == 3


def test_deep_stacks_do_not_recurse():
    stack = tuple(f"f{i % 7} (/deep.py:{i})" for i in range(5000))
    tree = build_tree({MAIN: {stack: 3}}, min_fraction=0)
    assert node_count(tree) == 5001
    assert tree["threads"][0]["nodes"]["total"][-1] == 3


def test_by_function_merges_the_lines_of_a_function():
    """`work` runs on lines 5 and 6 of /a.py under `main`: by line two boxes (60 + 20), by
    function one box holding both (80), its children merged too; nothing is lost."""
    by_line = build_tree(_sample_input(), min_fraction=0)
    tree = build_tree(_sample_input(), min_fraction=0, by="function")
    _check_invariants(tree)
    main = _paths(tree["threads"][0], tree)
    m = ("main", "/a.py", 0)
    work = (m, ("work", "/a.py", 0))
    assert main[work]["total"] == 80 and main[work]["self"] == 10
    assert main[(*work, ("leaf", "/b.py", 0))]["total"] == 70
    assert [p for p in main if p and p[-1][0] == "work"] == [work]
    assert all(key[2] == 0 for path in main for key in path)
    assert [t["total"] for t in tree["threads"]] == [t["total"] for t in by_line["threads"]]
    assert node_count(tree) < node_count(by_line)


def test_by_must_be_line_or_function():
    with pytest.raises(ValueError, match="by must be one of"):
        build_tree(_sample_input(), by="file")
    with pytest.raises(ValueError, match="by must be one of"):
        build_views(_sample_input(), [], by="lines")


# (name, file, self, total) as Profile.functions(by="function") counts them for _sample_input.
FUNCTIONS = [
    ("leaf", "/b.py", 77, 77),
    ("loop", "/w.py", 30, 30),
    ("f (x)", "/a.py", 15, 15),
    ("work", "/a.py", 10, 80),
    ("main", "/a.py", 4, 106),
    ("tiny", "/w.py", 1, 1),
    ("run", "/usr/lib/python3.11/threading.py", 0, 31),
]


def test_views_hold_both_trees_over_one_string_table_and_the_function_table():
    views = build_views(_sample_input(), FUNCTIONS, by="function", min_fraction=0.05,
                        seconds_per_sample=0.01)  # fmt: skip
    assert views["format"] == "spy_magic.flameviews" and views["version"] == 1
    assert views["by"] == "function" and views["seconds_per_sample"] == 0.01
    strings = views["strings"]
    assert len(set(strings)) == len(strings) and strings[0] == ""
    for by in ("line", "function"):
        tree = {**views["views"][by], "strings": strings}
        _check_invariants(tree)
        alone = build_tree(_sample_input(), min_fraction=0.05, by=by)
        for shared, own in zip(tree["threads"], alone["threads"]):
            assert _paths(shared, tree) == _paths(own, alone)
    # Functions under the pruning threshold (6.9 of 138 samples) are left out, like their
    # nodes; the rest keep their exact counts, in the given order.
    fns = views["functions"]
    kept = [(strings[n], strings[f], s, t) for n, f, s, t in
            zip(fns["name"], fns["file"], fns["self"], fns["total"])]  # fmt: skip
    assert kept == [f for f in FUNCTIONS if f[3] >= 6.9]
    json.loads(json.dumps(views))
    assert "seconds_per_sample" not in build_views(_sample_input(), FUNCTIONS)


def _views() -> dict:
    return build_views(_sample_input(), FUNCTIONS, min_fraction=0, seconds_per_sample=0.02)


def test_functions_table_shows_every_share_with_its_seconds():
    table = fhtml.functions_table(_views())
    rows = re.findall(r"<tr><td class=\"sfg-fn\"[^>]*>(.*?)</td>.*?</tr>", table)
    assert [html_unescape(r) for r in rows] == [f[0] for f in FUNCTIONS]
    work = re.search(r"<tr><td class=\"sfg-fn\"[^>]*>work</td>(.*?)</tr>", table).group(1)
    cells = re.findall(r'<span class="sfg-pct">(.*?)</span> <span class="sfg-sec">(.*?)</span>',
                       work)  # fmt: skip
    assert cells == [(fmt_pct(10 / 138), fmt_seconds(0.2)), (fmt_pct(80 / 138), fmt_seconds(1.6))]
    assert cells == [("7.2%", "200 ms"), ("58.0%", "1.60 s")]
    assert "all 3 threads" in table
    assert fhtml.functions_table(build_tree(_sample_input())) == ""  # a bare tree: no table


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (0.00042, "0.42 ms"), (0.0042, "4.2 ms"), (0.042, "42 ms"), (0.42, "420 ms"),
     (4.2, "4.20 s"), (42, "42.0 s"), (420, "420 s")],
)  # fmt: skip
def test_fmt_seconds(seconds, text):
    assert fmt_seconds(seconds) == text


def test_report_fragment_shows_the_profile_without_a_script():
    """The notebook fragment: header, verdict, table and the picture are plain HTML (what an
    untrusted notebook or GitHub shows); the data and the script follow, and nothing in it
    is fetched, nor styled or named so that a notebook would treat it as its own heading."""
    views = _views()
    fragment = fhtml.render_report(
        views, title="In [3]", metadata={"samples": 138, "duration": 1.38, "rate": 100,
                                         "asked_rate": 1000}, verdict="rate lowered",
        kept_up=False, fallback_png=b"\x89PNG fake",
    )  # fmt: skip
    assert fragment.startswith('<div class="sfg-report"><style>')
    assert fragment.endswith("</script></div>")
    assert "100 Hz of 1,000 Hz asked" in fragment
    assert '<div class="sfg-verdict sfg-verdict-warn">rate lowered</div>' in fragment
    assert '<img class="sfg-fallback"' in fragment and "data:image/png;base64," in fragment
    assert fragment.index("sfg-fallback") < fragment.index("sfg-table") < fragment.index("<script")
    assert not re.search(r"<(h1|h2|dl|iframe)\b", fragment)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", fragment)
    assert fragment.count("<script") == 3
    blob = re.search(r'<script type="application/json" class="sfg-data">(.*?)</script>',
                     fragment, re.S).group(1)  # fmt: skip
    assert json.loads(blob) == json.loads(json.dumps(views))
    page = fhtml.render_html(views, title="x", verdict="kept up")
    assert "sfg-table" in page and "kept up" in page and "<img" not in page


def test_processes_names():
    tree = build_tree(_sample_input(), process_names={1: "python a.py", 2: "worker"})
    assert tree["processes"] == {"1": "python a.py", "2": "worker"}
    assert "processes" not in build_tree(_sample_input())


# -- the page --------------------------------------------------------------------------------


def test_packaged_assets_are_the_js_sources():
    """static/ links to js/ (one copy to edit); an installed package holds the files."""
    repo_js = Path(__file__).resolve().parent.parent / "js"
    for name in fhtml.ASSETS:
        shipped = fhtml.STATIC_DIR / name
        if shipped.is_symlink():
            assert shipped.resolve() == (repo_js / name).resolve()
        assert shipped.read_bytes() == (repo_js / name).read_bytes()


def test_classic_script_drops_the_exports():
    js = fhtml.asset("flamegraph.js")
    assert re.search(r"^export ", js, re.M)
    classic = fhtml.classic_script(js)
    assert not re.search(r"^\s*(export|import)\b", classic, re.M)
    assert "window.SpyFlameGraph = api" in classic
    with pytest.raises(ValueError):
        fhtml.classic_script("var x = 1;\nexport default x;\n")


def test_render_html_is_self_contained_and_escaped():
    data = {
        MAIN: {
            ("main (/a.py:1)", "evil</script><script>alert(1)</script> (/x.py:1)"): 5,
            ("main (/a.py:1)", "uni \u2028 \U0001f525 (/x.py:2)"): 1,
        }
    }
    tree = build_tree(data, min_fraction=0)
    page = fhtml.render_html(
        tree,
        title="<b>My</b> & run",
        metadata={"duration": 2.5, "rate": 100, "command": ["python", "a.py"], "note": None},
    )
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>&lt;b&gt;My&lt;/b&gt; &amp; run</title>" in page
    # Nothing is loaded from anywhere.
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", page, re.I)
    assert "@import" not in page and "url(http" not in page
    # Exactly the three script elements we wrote; the data cannot close one early.
    assert page.count("<script") == 3
    assert page.lower().count("</script") == 3
    blob = re.search(
        r'<script type="application/json" class="sfg-data">(.*?)</script>', page, re.S
    ).group(1)
    assert json.loads(blob) == json.loads(json.dumps(tree))
    assert "\u2028" not in page
    # The header.
    assert "Samples" in page and ">6<" in page
    assert "2.50 s" in page and "100 Hz" in page and "python a.py" in page
    assert "Note" not in page
    # The JS and CSS are inlined.
    assert "SpyFlameGraph.render(" in page and ".sfg-toolbar" in page


def test_header_items():
    tree = {"total": 1000, "threads": [{"pid": 1}, {"pid": 2}, {"pid": 2}]}
    items = dict(fhtml.header_items(tree, {"rate": 200}))
    assert items == {
        "Samples": "1,000",
        "Duration": "5.00 s",
        "Rate": "200 Hz",
        "Threads": "3",
        "Processes": "2",
    }
    items = dict(fhtml.header_items(tree, {"samples": 50, "duration": 90, "target_pid": 7}))
    assert items["Samples"] == "50" and items["Duration"] == "1 min 30 s"
    assert items["Rate"] == "0.56 Hz" and items["Target pid"] == "7"
    items = dict(fhtml.header_items({"total": 3, "threads": []}, {}))
    assert items["Duration"] == "—" and items["Rate"] == "—"
    assert dict(fhtml.header_items(tree, {"duration": 0.25}))["Duration"] == "250 ms"
    assert dict(fhtml.header_items(tree, {"duration": 7322}))["Duration"] == "2 h 2 min"


def test_asset_names_are_checked():
    with pytest.raises(ValueError):
        fhtml.asset("../pyproject.toml")
