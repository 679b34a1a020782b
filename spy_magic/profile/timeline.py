"""The timeline: per thread, what ran when, in a bounded structure.

A fixed number of time buckets (`buckets`, 400) covers the recording; each bucket of each
thread counts its stacks. When a sample falls past the last bucket, the bucket width doubles
and neighbours merge pairwise (downsampling the old spans), so memory depends on the number
of buckets and distinct stacks, never on the recording's length: it can be fed sample by
sample as they arrive (`add`), by an aggregating profile that keeps no sample log, or filled
at the end from a profile's samples (`from_profile`).

Stacks are interned as nodes of one prefix tree (by function: name and file), so a stack is
one int and the JSON ships each distinct call path once. `to_json` gives, per thread and
bucket, the stacks seen and the dominant (most frequent) one, which the timeline draws as a
column of boxes (`js/timeline.js`)::

    {"format": "spy_magic.timeline", "version": 1,
     "start": 0.0, "width": 0.0125,      # seconds: the first bucket's start, bucket width
     "buckets": 400,                     # buckets spanned (the last holds the last sample)
     "samples": [...],                   # sampling moments per bucket (all threads)
     "nodes": {"parent": [...], "name": [...], "file": [...]},   # the dominant stacks' tree
     "hidden": 0,                        # threads left out (past MAX_THREADS, the quietest)
     "threads": [{"pid", "tid", "name",     # per bucket (dense, "buckets" long):
                  "count": [...],            # the thread's stacks (0: not seen)
                  "stack": [...],            # the dominant stack's node (-1: none)
                  "top": [...]}]}            # how many of the stacks it was

Names index the string table the JSON is made with (the flame views' own).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable

from ..engine.sample import Sample, Trace
from ..reader import Frame

if TYPE_CHECKING:
    from .model import Profile

FORMAT = "spy_magic.timeline"
VERSION = 1
BUCKETS = 400
MAX_DEPTH = 16  # levels of a dominant stack shipped: where the thread was, not every leaf
MAX_THREADS = 32  # lanes shipped, busiest first: a 1000-thread server shows its busy ones
FIRST_WIDTH = 0.001  # seconds: a bucket per ms until the recording outgrows BUCKETS ms
SAMPLES_PER_BUCKET = 3  # shipped buckets hold this many sampling moments on average (gaps rare)


class _Lane:
    __slots__ = ("buckets", "name", "pid", "tid")

    def __init__(self, pid: int, tid: int, name: str | None) -> None:
        self.pid, self.tid, self.name = pid, tid, name
        self.buckets: dict[int, dict[int, int]] = {}  # bucket -> {leaf node: stacks}


class Timeline:
    """Per-thread stack counts in `buckets` time buckets (see the module docstring)."""

    def __init__(self, buckets: int = BUCKETS, first_width: float = FIRST_WIDTH) -> None:
        if buckets < 2 or first_width <= 0:
            raise ValueError("a timeline needs at least 2 buckets of a positive width")
        self.size = buckets
        self.width = first_width
        self.start: float | None = None
        self.samples: Counter = Counter()  # sampling moments per bucket
        self.late_max: dict[int, float] = {}  # per bucket, its most late sample's lateness (s)
        self.lanes: dict[tuple[int, int], _Lane] = {}
        self._node: dict[tuple[int, str, str], int] = {}  # (parent, name, file) -> node
        self._parent: list[int] = []
        self._name: list[str] = []
        self._file: list[str] = []
        self._depth: list[int] = []
        self._stacks: dict[tuple, int] = {}  # a trace's frames -> leaf node (shared traces)

    @classmethod
    def from_profile(cls, profile: Profile, buckets: int = BUCKETS, **filters: Any) -> Timeline:
        """A timeline filled from a profile's samples (`filters` as `Profile.iter_traces`)."""
        timeline = cls(buckets)
        if not profile.samples:
            return timeline
        # Start at the width that fits the whole recording, sparing the merges on the way.
        timeline.width = max(FIRST_WIDTH, profile.duration / (buckets - 1) * 1.0001)
        last = None
        for _, sample, trace in profile.iter_traces(**filters):
            if sample is not last:
                timeline.tick(sample.timestamp, sample.late)
                last = sample
            timeline.add_trace(sample.timestamp, trace)
        return timeline

    def _bucket(self, timestamp: float) -> int:
        if self.start is None:
            self.start = timestamp
        index = int((timestamp - self.start) / self.width)
        while index >= self.size:
            self._merge()
            index = int((timestamp - self.start) / self.width)
        return max(index, 0)

    def _merge(self) -> None:
        """Double the width: buckets 2k and 2k+1 become bucket k."""
        self.width *= 2
        self.samples = _halve(self.samples)
        late_max: dict[int, float] = {}
        for index, late in self.late_max.items():
            if late > late_max.get(index // 2, 0.0):
                late_max[index // 2] = late
        self.late_max = late_max
        for lane in self.lanes.values():
            merged: dict[int, dict[int, int]] = {}
            for index, counts in lane.buckets.items():
                target = merged.get(index // 2)
                if target is None:
                    merged[index // 2] = counts
                else:
                    for leaf, n in counts.items():
                        target[leaf] = target.get(leaf, 0) + n
            lane.buckets = merged

    def tick(self, timestamp: float, late: float | None = None) -> int:
        """Count one sampling moment (whatever threads it saw), `late` seconds late; returns
        its bucket."""
        index = self._bucket(timestamp)  # first: it may merge, replacing `samples`
        self.samples[index] += 1
        if late and late > self.late_max.get(index, 0.0):
            self.late_max[index] = late
        return index

    def lateness_series(self) -> list[tuple[float, float]]:
        """(bucket start, its most late sample's lateness) for every bucket with a
        sampling moment, in time order: the lag plot's lateness over time, downsampled to
        at most `size` points however long the recording."""
        start = self.start or 0.0
        return [(start + i * self.width, self.late_max.get(i, 0.0)) for i in sorted(self.samples)]

    def add(self, sample: Sample) -> None:
        """One sample as it arrives: a collector."""
        self.count(sample.timestamp, [self.key_of(trace) for trace in sample.traces], sample.late)

    def add_trace(self, timestamp: float, trace: Trace) -> None:
        """Count one thread's stack at `timestamp` (its sampling moment counted apart, by
        `tick`)."""
        key = self.key_of(trace)
        if key is not None:
            self._count_in(self._bucket(timestamp), (key,))

    def key_of(self, trace: Trace) -> tuple[_Lane, int] | None:
        """Where a trace is counted: its thread's lane and its stack's leaf node (None: no
        frames, nothing to count). A caller that sees the same trace again (the Profile,
        per distinct stack) keeps the key and passes it to `count`, sparing the hashing of
        its frames: with a thousand threads, most of each sample is such repeats."""
        if not trace.frames:
            return None
        leaf = self._stacks.get(trace.frames)
        if leaf is None:
            leaf = -1
            for frame in reversed(trace.frames):
                key = (leaf, frame.name, frame.filename)
                node = self._node.get(key)
                if node is None:
                    node = self._node[key] = len(self._parent)
                    self._parent.append(leaf)
                    self._name.append(frame.name)
                    self._file.append(frame.filename)
                    self._depth.append(self._depth[leaf] + 1 if leaf >= 0 else 0)
                leaf = node
            self._stacks[trace.frames] = leaf
        lane = self.lanes.get((trace.pid, trace.thread_id))
        if lane is None:
            lane = self.lanes[(trace.pid, trace.thread_id)] = _Lane(
                trace.pid, trace.thread_id, trace.thread_name
            )
        elif trace.thread_name is not None:
            lane.name = trace.thread_name
        return lane, leaf

    def count(self, timestamp: float, keys: Iterable[tuple[_Lane, int] | None],
              late: float | None = None) -> None:  # fmt: skip
        """One sampling moment, `late` seconds late, and the stacks it saw, by their
        `key_of` keys."""
        self._count_in(self.tick(timestamp, late), keys)

    @staticmethod
    def _count_in(index: int, keys: Iterable[tuple[_Lane, int] | None]) -> None:
        for key in keys:
            if key is None:
                continue
            lane, leaf = key
            counts = lane.buckets.get(index)
            if counts is None:
                lane.buckets[index] = {leaf: 1}
            else:
                counts[leaf] = counts.get(leaf, 0) + 1

    def map_stacks(self, change: Callable[[Trace], Trace | None]) -> Timeline:
        """A copy with every counted stack replaced by `change(trace)` (None: dropped), as
        `Profile.map_traces` does to a profile without samples. `change` sees each distinct
        (thread, stack) once, as a Trace of the thread's ids and name whose frames carry the
        names and files the timeline keeps (line 0): what trimming a notebook cell needs."""
        out = Timeline(self.size, self.width)
        out.start = self.start
        out.samples = Counter(self.samples)
        out.late_max = dict(self.late_max)
        for lane in self.lanes.values():
            keys: dict[int, tuple[_Lane, int] | None] = {}
            for index, counts in lane.buckets.items():
                moved = [
                    (self._mapped_key(out, lane, leaf, change, keys), n)
                    for leaf, n in counts.items()
                ]
                for key, n in moved:
                    if key is None:
                        continue
                    new_lane, new_leaf = key
                    into = new_lane.buckets.setdefault(index, {})
                    into[new_leaf] = into.get(new_leaf, 0) + n
        return out

    def _mapped_key(self, out: Timeline, lane: _Lane, leaf: int, change, keys: dict):
        """`out`'s key for `lane`'s stack `leaf` once changed (memoised in `keys`)."""
        if leaf in keys:
            return keys[leaf]
        frames = []
        node = leaf
        while node >= 0:  # leaf to root: innermost first, as a Trace holds them
            frames.append(Frame(self._name[node], self._file[node], 0, 0))
            node = self._parent[node]
        trace = Trace(lane.pid, lane.tid, None, lane.name, False, None, tuple(frames))
        new = change(trace)
        key = keys[leaf] = None if new is None else out.key_of(new)
        return key

    def coarser(self, buckets: int) -> Timeline:
        """A copy spanning at most `buckets` buckets (neighbours merged, widths doubled),
        and wide enough that a bucket holds SAMPLES_PER_BUCKET sampling moments on average:
        a timeline fed live starts at 1 ms buckets, which at 100 Hz would be mostly gaps."""
        out = Timeline(self.size, self.width)
        out.start = self.start
        out.samples = Counter(self.samples)
        out.late_max = dict(self.late_max)
        for key, lane in self.lanes.items():
            copy = out.lanes[key] = _Lane(lane.pid, lane.tid, lane.name)
            copy.buckets = {i: dict(c) for i, c in lane.buckets.items()}
        out._parent, out._name, out._file, out._depth = (
            self._parent, self._name, self._file, self._depth)  # fmt: skip  # shared, read only
        total = sum(out.samples.values())
        while True:
            spanned = max(out.samples, default=-1) + 1
            if spanned <= 1 or (spanned <= buckets and total >= SAMPLES_PER_BUCKET * spanned):
                return out
            out._merge()

    def to_json(self, strings: Any, max_depth: int = MAX_DEPTH,
                max_threads: int = MAX_THREADS) -> dict[str, Any]:  # fmt: skip
        """The JSON the timeline draws (module docstring); `strings` interns a string to
        its index (a `flametree.StringTable`). Dominant stacks are cut to their outer
        `max_depth` frames; the `max_threads` threads with the most stacks are shipped
        (`"hidden"`: how many others were not)."""
        kept: dict[int, int] = {}  # node -> index in the shipped tree
        parent: list[int] = []
        names: list[int] = []
        files: list[int] = []

        def cut(node: int) -> int:
            while self._depth[node] >= max_depth:
                node = self._parent[node]
            return node

        def ship(node: int) -> int:
            chain = []
            while node >= 0 and node not in kept:
                chain.append(node)
                node = self._parent[node]
            for n in reversed(chain):
                kept[n] = len(parent)
                parent.append(kept[self._parent[n]] if self._parent[n] >= 0 else -1)
                names.append(strings(self._name[n]))
                files.append(strings(self._file[n]))
            return kept[chain[0]] if chain else kept[node]

        threads = []

        def weight(lane: _Lane) -> int:
            return sum(sum(c.values()) for c in lane.buckets.values())

        busiest = sorted(self.lanes.values(), key=lambda ln: (-weight(ln), ln.pid, ln.tid))
        shown = busiest[:max_threads]
        for lane in sorted(shown, key=lambda ln: (ln.pid, ln.tid)):
            spanned = max(self.samples, default=-1) + 1
            row: dict[str, list[int]] = {"count": [0] * spanned, "stack": [-1] * spanned,
                                         "top": [0] * spanned}  # fmt: skip
            for index in sorted(lane.buckets):
                counts = lane.buckets[index]
                # The dominant stack, as far as it is shipped: cut stacks that agree on
                # their outer frames count together.
                outer: Counter = Counter()
                for leaf, n in counts.items():
                    outer[cut(leaf)] += n
                node, top = max(outer.items(), key=lambda kv: (kv[1], -kv[0]))
                row["count"][index] = sum(counts.values())
                row["stack"][index] = ship(node)
                row["top"][index] = top
            threads.append({"pid": lane.pid, "tid": lane.tid, "name": lane.name or "", **row})
        spanned = max(self.samples, default=-1) + 1
        return {
            "format": FORMAT,
            "version": VERSION,
            "start": self.start or 0.0,
            "width": self.width,
            "buckets": spanned,
            "samples": [self.samples.get(i, 0) for i in range(spanned)],
            "nodes": {"parent": parent, "name": names, "file": files},
            "threads": threads,
            "hidden": len(self.lanes) - len(shown),
        }

    def to_state(self, strings: Callable[[str], int]) -> dict[str, Any]:
        """Everything this timeline holds, JSON-able (names interned by `strings`), for
        `from_state` on the other side of a pipe: unlike `to_json` (what is drawn), nothing
        is cut, so the restored timeline draws exactly what this one would."""
        return {
            "size": self.size, "width": self.width, "start": self.start,
            "samples": sorted(self.samples.items()),
            "late_max": sorted(self.late_max.items()),
            "parent": self._parent,
            "name": [strings(n) for n in self._name],
            "file": [strings(f) for f in self._file],
            "lanes": [
                [lane.pid, lane.tid, None if lane.name is None else strings(lane.name),
                 [[i, sorted(c.items())] for i, c in sorted(lane.buckets.items())]]
                for lane in self.lanes.values()
            ],
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any], strings: list[str]) -> Timeline:
        """The timeline `to_state` wrote (`strings`: its string table); ValueError,
        KeyError, IndexError or TypeError when `state` is not one."""
        out = cls(state["size"], state["width"])
        start = state["start"]
        if start is not None and type(start) not in (int, float):
            raise ValueError(f"timeline start {start!r}")
        out.start = start
        out.samples = Counter({int(i): int(n) for i, n in state["samples"]})
        out.late_max = {int(i): float(v) for i, v in state["late_max"]}
        parent = [int(p) for p in state["parent"]]
        names = [strings[n] for n in state["name"]]
        files = [strings[f] for f in state["file"]]
        if not len(parent) == len(names) == len(files):
            raise ValueError("timeline nodes of unequal columns")
        for node, up in enumerate(parent):
            if not -1 <= up < node:
                raise ValueError(f"timeline node {node}'s parent {up}")
            out._node[(up, names[node], files[node])] = node
            out._depth.append(out._depth[up] + 1 if up >= 0 else 0)
        out._parent, out._name, out._file = parent, names, files
        for pid, tid, name, buckets in state["lanes"]:
            lane = out.lanes[(pid, tid)] = _Lane(pid, tid, None if name is None else strings[name])
            for index, counts in buckets:
                counted = {int(leaf): int(n) for leaf, n in counts}
                if any(not 0 <= leaf < len(parent) for leaf in counted):
                    raise ValueError(f"timeline lane {tid}: a stack outside the tree")
                lane.buckets[int(index)] = counted
        return out


def _halve(counts: Counter) -> Counter:
    out: Counter = Counter()
    for index, n in counts.items():
        out[index // 2] += n
    return out


def timeline_json(profile: Profile, strings: Any, buckets: int = BUCKETS,
                  **filters: Iterable[int] | bool | None) -> dict[str, Any]:  # fmt: skip
    """A profile's timeline as JSON, its names in `strings` (a StringTable).

    The timeline the profile fed as samples arrived (every thread it kept); for a view
    that leaves threads out (`filters`), made again from the samples where it kept them."""
    selective = any(filters.get(k) for k in ("pids", "thread_ids", "gil_only")) or (
        filters.get("idle") is False
    )
    if profile.timeline is None or (selective and profile.keep_samples):
        timeline = Timeline.from_profile(profile, buckets, **filters)
    else:
        timeline = profile.timeline
    return timeline.coarser(buckets).to_json(strings)
