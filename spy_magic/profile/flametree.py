"""The flame-graph tree: folded stacks per thread turned into the compact JSON the JS reads.

`build_tree(stack_counts_by_thread)` takes, for each sampled thread, the counts of its
root-first stacks of frame labels (the labels `Profile.stack_counts` makes:
`name (filename:line)`, or `name (filename)` when aggregated by function) and returns one
JSON-able dict. Stacks are folded into trees here and nowhere else.

Why per-thread trees and no merged one: the graph's process and thread pickers and its
grouping by process or thread need each thread's tree, and the graph (`js/flamegraph.js`)
sums the trees of the threads picked without a round trip to Python (nodes with the same
parent and frame are one). A merged tree shipped beside them would add up to the size of
the whole tree again for a page with several threads (and be the thread's own tree with
one), and the sum would still be needed for every other pick. The static picture of all
threads (the notebook's PNG) is that same sum of the same payload, `merge_threads`, not a
folding of its own, so it shows what the live graph shows before anything is picked.

Format (version 1)::

    {
      "format": "spy_magic.flametree",
      "version": 1,
      "total": 12345,              # samples over all threads (one per thread stack)
      "min_fraction": 0.0005,      # the pruning threshold used (fraction of "total")
      "pruned": 17,                # samples lumped into "(other)" nodes, all threads
      "strings": ["", "main", "/app/run.py", ...],   # names and files; 0 is ""
      "processes": {"4242": "python train.py"},      # optional: pid (str) -> label
      "threads": [
        {
          "pid": 4242, "tid": 139871, "name": "MainThread", "total": 12000,
          "nodes": {                 # flat arrays, one entry per node, same length
            "parent": [-1, 0, 1, ...],   # index of the parent node; -1 for node 0
            "name":   [0, 1, 5, ...],    # index into "strings"
            "file":   [0, 2, 2, ...],    # index into "strings" ("" = none)
            "line":   [0, 10, 42, ...],  # 0 = unknown / aggregated by function
            "self":   [0, 3, 7, ...],    # samples with this node as the innermost frame
            "total":  [12000, 9000, ...] # samples in this node's subtree (self + children)
            "opcode": [0, 0, 9, ...]     # optional (sampled with opcodes): index into
          }                              # "strings" of "CALL 70;LOAD_ATTR 30", the
                                         # instructions of the samples ending there and
                                         # their counts (opcodes_text); 0 = none
        }, ...
      ]
    }

Node 0 of each thread is the thread's root: name and file "", total = the thread's samples,
self = samples with an empty stack. Nodes are in depth-first pre-order (a parent always
comes before its children; siblings by decreasing total, then name), so one forward pass
rebuilds the tree. Within a thread, two nodes with the same parent never share (name, file,
line).

Pruning: a node whose total is below `min_fraction * total` (the grand total, all threads)
is folded, with its subtree, into one `(other)` child of its parent (name "(other)", file
"", line 0, self = total = the folded samples; the last of its siblings), so an embedded
tree keeps at most about `depth / min_fraction` nodes whatever the profile's length. The
default, 0.05%, is about half a pixel of a 1000-px-wide graph, which the JS would not draw
at full zoom-out anyway. `min_fraction=0` keeps every node.

By function (`by="function"`): lines are dropped before merging, so the calls of one
function from one call path are one node whatever line each sample was on (line 0 in the
arrays); the same input (labels by line) gives both trees.

Both views and the exact per-function counts ship together as one payload
(`build_views`, format "spy_magic.flameviews" version 1)::

    {
      "format": "spy_magic.flameviews", "version": 1,
      "by": "line",                  # the view shown first ("line" or "function")
      "strings": [...],              # one string table for everything below
      "views": {"line": TREE, "function": TREE},   # flame trees as above, minus "strings"
      "functions": {                 # per function (name, file), exact (not pruned), each
        "name": [...], "file": [...],    # stack counted once however often it recurses;
        "self": [...], "total": [...]    # only those over the pruning threshold
      },
      "seconds_per_sample": 0.0101   # optional: the time one sample of a thread stands for
    }

Label parsing (`parse_label`): the file part is the last parenthesised group that closes
the label, matched by balancing parentheses from the end, so names holding spaces,
parentheses or colons (`<lambda>`, `f (x)`, `ns::op`) and files holding parentheses
(`/data (old)/a.py`) both survive; `:N` at the end of that group is the line. A label with
no such group (`pid 42`, a bare name) is all name. Frames may also be given directly as
`(name, filename, line)` tuples.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Union

FORMAT = "spy_magic.flametree"
VERSION = 1
VIEWS_FORMAT = "spy_magic.flameviews"
VIEWS_VERSION = 1
BY_CHOICES = ("line", "function")
OTHER = "(other)"
# A last label `<opcode NAME>` (exports.thread_stack_counts with opcodes) is no frame: it
# is counted on its parent, whose node then has an "opcode" text (see opcodes_text).
OPCODE_PREFIX = "<opcode "
DEFAULT_MIN_FRACTION = 0.0005

FrameSpec = Union[str, Sequence[Any]]
ThreadKey = tuple  # (pid, thread_id, thread_name)

_LINE = re.compile(r":(-?\d+)\Z")
# Parenthesised tails that are part of a synthetic root's name, not a file: "(123)",
# "(pid 123)" as in `thread "name" (123)` and `python x.py (pid 123)`.
_NOT_A_FILE = re.compile(r"\A(?:pid )?\d+\Z")


def parse_label(label: str) -> tuple[str, str, int]:
    """`name (filename:line)` → (name, filename, line); line 0 when absent.

    >>> parse_label("f (x) (/a (1).py:12)")
    ('f (x)', '/a (1).py', 12)
    """
    if not label.endswith(")"):
        return label, "", 0
    depth = 0
    start = -1
    for i in range(len(label) - 1, -1, -1):
        ch = label[i]
        if ch == ")":
            depth += 1
        elif ch == "(":
            depth -= 1
            if depth == 0:
                start = i
                break
    if start <= 0 or label[start - 1] != " ":
        # Unbalanced (a file or name with a lone parenthesis): the last " (" is the split.
        start = label.rfind(" (") + 1
        if start <= 0:
            return label, "", 0
    name = label[: start - 1]
    inner = label[start + 1 : -1]
    if not name or _NOT_A_FILE.match(inner):
        return label, "", 0
    match = _LINE.search(inner)
    if match:
        return name, inner[: match.start()], int(match.group(1))
    return name, inner, 0


def _frame_of(spec: FrameSpec) -> tuple[str, str, int]:
    if isinstance(spec, str):
        return parse_label(spec)
    name, filename, *rest = spec
    line = rest[0] if rest else 0
    return str(name), str(filename or ""), int(line or 0)


class _Node:
    __slots__ = ("children", "opcodes", "self", "total")

    def __init__(self) -> None:
        self.children: dict[tuple[str, str, int], _Node] = {}
        self.self = 0
        self.total = 0
        self.opcodes: dict[str, int] | None = None  # innermost instruction -> samples


def opcode_label(name: str) -> str:
    """The frame label that ends a stack sampled with its innermost instruction."""
    return f"{OPCODE_PREFIX}{name}>"


def opcodes_text(counts: Mapping[str, int]) -> str:
    """ "CALL 70;LOAD_ATTR 30": a node's instructions and their samples, most first (the
    JS sums them over the threads it merges and shows shares in the tooltip)."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ";".join(f"{name} {count}" for name, count in ranked)


class StringTable:
    """Strings to indices, for trees that share one table (index 0 is "")."""

    def __init__(self) -> None:
        self.table: list[str] = [""]
        self.index: dict[str, int] = {"": 0}

    def __call__(self, value: str) -> int:
        i = self.index.get(value)
        if i is None:
            i = self.index[value] = len(self.table)
            self.table.append(value)
        return i


def _thread_key(key: Hashable) -> tuple[int, int, str]:
    if isinstance(key, (tuple, list)):
        pid, tid, *rest = key
        name = rest[0] if rest else None
    else:
        pid, tid, name = 0, key, None
    return int(pid), int(tid), "" if name is None else str(name)


def build_tree(
    stack_counts_by_thread: Mapping[ThreadKey, Mapping[Sequence[FrameSpec], int]],
    *,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    process_names: Mapping[int, str] | None = None,
    by: str = "line",
    strings: StringTable | None = None,
) -> dict[str, Any]:
    """Per-thread flame trees in the module's JSON format (see the module docstring).

    `stack_counts_by_thread` maps `(pid, thread_id, thread_name)` to `{stack: count}`, each
    stack a root-first tuple of frame labels (or `(name, filename, line)` tuples).
    `process_names` optionally labels pids. Threads with no samples are left out.
    `by="function"` merges the lines of a function (see the module docstring); `strings`
    shares one string table between trees (the tree's "strings" is then that table's).
    """
    if min_fraction < 0:
        raise ValueError(f"min_fraction must be >= 0, got {min_fraction!r}")
    if by not in BY_CHOICES:
        raise ValueError(f"by must be one of {BY_CHOICES}, got {by!r}")
    by_function = by == "function"
    parsed: dict[Any, tuple[str, str, int]] = {}
    roots: list[tuple[tuple[int, int, str], _Node]] = []
    grand_total = 0
    for key, counts in stack_counts_by_thread.items():
        root = _Node()
        for stack, count in counts.items():
            if count <= 0:
                continue
            count = int(count)
            node = root
            node.total += count
            opcode = None
            last = stack[-1] if stack else None
            if isinstance(last, str) and last.startswith(OPCODE_PREFIX) and last.endswith(">"):
                opcode = last[len(OPCODE_PREFIX) : -1]
                stack = stack[:-1]
            for spec in stack:
                frame = parsed.get(spec)
                if frame is None:
                    frame = _frame_of(spec)
                    if by_function:
                        frame = (frame[0], frame[1], 0)
                    parsed[spec] = frame
                child = node.children.get(frame)
                if child is None:
                    child = node.children[frame] = _Node()
                child.total += count
                node = child
            node.self += count
            if opcode is not None:
                if node.opcodes is None:
                    node.opcodes = {}
                node.opcodes[opcode] = node.opcodes.get(opcode, 0) + count
        if root.total:
            roots.append((_thread_key(key), root))
            grand_total += root.total

    threshold = min_fraction * grand_total
    if strings is None:
        strings = StringTable()
    pruned = 0
    threads = []
    for (pid, tid, tname), root in sorted(roots, key=lambda r: (r[0][0], -r[1].total, r[0][1])):
        parent: list[int] = []
        names: list[int] = []
        files: list[int] = []
        lines: list[int] = []
        selfs: list[int] = []
        totals: list[int] = []
        ops: list[int] = []
        columns = (parent, names, files, lines, selfs, totals)

        # Iterative pre-order walk: deep recursive stacks must not hit Python's limit.
        work: list[tuple[int, tuple[str, str, int] | None, _Node]] = [(-1, None, root)]
        while work:
            p, frame, node = work.pop()
            index = len(parent)
            if frame is None:
                row: tuple[int, ...] = (p, 0, 0, 0, node.self, node.total)
            else:
                name, filename, line = frame
                row = (p, strings(name), strings(filename), line, node.self, node.total)
            for column, value in zip(columns, row):
                column.append(value)
            ops.append(strings(opcodes_text(node.opcodes)) if node.opcodes else 0)
            kept = []
            folded = 0
            for child_frame, child in node.children.items():
                if child.total < threshold:
                    folded += child.total
                else:
                    kept.append((child_frame, child))
            kept.sort(key=lambda item: (-item[1].total, item[0]))
            # Pushed in reverse so that they pop (and are numbered) heaviest first; the
            # "(other)" node goes last, after every kept sibling.
            if folded:
                pruned += folded
                leaf = _Node()
                leaf.self = leaf.total = folded
                work.append((index, (OTHER, "", 0), leaf))
            for child_frame, child in reversed(kept):
                work.append((index, child_frame, child))
        nodes = {
            "parent": parent,
            "name": names,
            "file": files,
            "line": lines,
            "self": selfs,
            "total": totals,
        }
        if any(ops):
            nodes["opcode"] = ops  # index into "strings" of opcodes_text; 0 = none
        threads.append({"pid": pid, "tid": tid, "name": tname, "total": root.total, "nodes": nodes})

    tree: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "total": grand_total,
        "min_fraction": min_fraction,
        "pruned": pruned,
        "strings": strings.table,
        "threads": threads,
    }
    if process_names:
        tree["processes"] = {str(pid): str(label) for pid, label in process_names.items()}
    return tree


def build_views(
    stack_counts_by_thread: Mapping[ThreadKey, Mapping[Sequence[FrameSpec], int]],
    functions: Sequence[tuple[str, str, int, int]],
    *,
    by: str = "line",
    min_fraction: float = DEFAULT_MIN_FRACTION,
    process_names: Mapping[int, str] | None = None,
    seconds_per_sample: float | None = None,
) -> dict[str, Any]:
    """Both flame trees of one profile, by line and by function, and its function table.

    `stack_counts_by_thread` is `build_tree`'s input (labels by line); `functions` gives
    `(name, filename, self, total)` per function, exact (the profile's own aggregate);
    those under the pruning threshold are left out, like the nodes they would describe.
    `by` is the view shown first.
    """
    if by not in BY_CHOICES:
        raise ValueError(f"by must be one of {BY_CHOICES}, got {by!r}")
    strings = StringTable()
    views = {}
    for view in BY_CHOICES:
        tree = build_tree(stack_counts_by_thread, min_fraction=min_fraction,
                          process_names=process_names, by=view, strings=strings)  # fmt: skip
        del tree["strings"]
        views[view] = tree
    threshold = min_fraction * views["line"]["total"]
    kept = [f for f in functions if f[3] > 0 and f[3] >= threshold]
    data: dict[str, Any] = {
        "format": VIEWS_FORMAT,
        "version": VIEWS_VERSION,
        "by": by,
        "strings": strings.table,
        "views": views,
        "functions": {
            "name": [strings(str(f[0])) for f in kept],
            "file": [strings(str(f[1] or "")) for f in kept],
            "self": [int(f[2]) for f in kept],
            "total": [int(f[3]) for f in kept],
        },
    }
    if seconds_per_sample:
        data["seconds_per_sample"] = float(seconds_per_sample)
    return data


def merge_threads(
    tree: Mapping[str, Any], strings: Sequence[str] | None = None
) -> dict[str, list[int]]:
    """All threads of `tree` summed into one tree: what the flame graph draws when no
    process or thread is picked and threads are merged (its `buildTree` sums the picked
    threads' trees the same way: nodes with the same parent and (name, file, line) are
    one). The columns of a thread's "nodes" (no "opcode"); node 0 the root of every
    thread, then pre-order, children by decreasing total then name, as the graph lays them
    out. `strings` is the tree's string table when it has none of its own (a view of
    `build_views`)."""
    table = tree["strings"] if strings is None else strings
    index: dict[tuple[int, int, int, int], int] = {}
    parent, names, files, lines, selfs, totals = [-1], [0], [0], [0], [0], [0]
    for thread in tree["threads"]:
        nodes = thread["nodes"]
        mapped = [0] * len(nodes["parent"])
        selfs[0] += nodes["self"][0]
        totals[0] += nodes["total"][0]
        rows = zip(nodes["parent"], nodes["name"], nodes["file"], nodes["line"], nodes["self"],
                   nodes["total"])  # fmt: skip
        next(rows)
        for j, (p, name, filename, line, own, total) in enumerate(rows, 1):
            key = (mapped[p], name, filename, line)
            merged = index.get(key)
            if merged is None:
                merged = index[key] = len(parent)
                for column, value in zip((parent, names, files, lines, selfs, totals),
                                         (key[0], name, filename, line, 0, 0)):  # fmt: skip
                    column.append(value)
            mapped[j] = merged
            selfs[merged] += own
            totals[merged] += total
    children: list[list[int]] = [[] for _ in parent]
    for i in range(1, len(parent)):
        children[parent[i]].append(i)
    order, work = [], [0]
    while work:
        i = work.pop()
        order.append(i)
        kids = sorted(children[i], key=lambda k: (-totals[k], table[names[k]]))
        work.extend(reversed(kids))
    renumber = {old: new for new, old in enumerate(order)}
    return {
        "parent": [renumber[parent[i]] if i else -1 for i in order],
        "name": [names[i] for i in order],
        "file": [files[i] for i in order],
        "line": [lines[i] for i in order],
        "self": [selfs[i] for i in order],
        "total": [totals[i] for i in order],
    }


def node_count(tree: Mapping[str, Any]) -> int:
    """How many nodes the tree holds over all threads (thread roots included)."""
    return sum(len(t["nodes"]["parent"]) for t in tree["threads"])
