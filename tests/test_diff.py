"""The diff flame graph: `Profile.diff` on known counts, and `record`/`replay --baseline` on
real processes, with the bad baselines (another program, cut, garbage) said clearly and
nothing recorded lost."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
from conftest import TARGETS

from spy_magic.engine.sample import Sample, Trace
from spy_magic.profile import Profile, read_recording
from spy_magic.profile.diff import NOISE_Z, DiffError, noise_bound
from spy_magic.profile.exports import to_html, write
from spy_magic.profile.recording import DATA, FRAME, HEAD
from spy_magic.reader import Frame

PYTHON = sys.executable
SPY = [PYTHON, "-m", "spy_magic"]
WORK = TARGETS / "diff_work.py"
APP = "/app/work.py"


def run(args, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([*SPY, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def profile_of(counts: dict[str, int], filename: str = APP, command=None) -> Profile:
    """A profile whose stacks are main -> NAME, `counts[NAME]` of each, spread in time."""
    meta = {"rate": 100.0}
    if command:
        meta["command"] = command
    p = Profile(meta)
    main = Frame("main", filename, 1, 1)
    stacks = [name for name, n in counts.items() for _ in range(n)]
    for i, name in enumerate(stacks):
        leaf = Frame(name, filename, 10, 10)
        p.add(Sample(i * 0.01, [Trace(1, 1, 1, "MainThread", True, False, (leaf, main))]))
    return p


def change_of(diff, name):
    return next(c for c in diff.changes if c.name == name)


def test_shares_are_normalised_by_sample_counts_and_noise_is_the_binomial_bound():
    base = profile_of({"a": 500, "b": 300, "c": 200})
    new = profile_of({"a": 1000, "b": 1200, "c": 400 - 1})  # twice as long; b grew
    diff = new.diff(base)
    b, a = change_of(diff, "b"), change_of(diff, "a")
    assert diff.base_total == 1000 and diff.new_total == 2599
    assert b.base_share == pytest.approx(0.3) and b.new_share == pytest.approx(1200 / 2599)
    pooled = (300 + 1200) / (1000 + 2599)
    sigma = math.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 2599))
    assert b.noise == pytest.approx(NOISE_Z * sigma)
    assert b.significant and b.change > 0.15
    assert a.significant and a.change < 0
    c = change_of(diff, "c")  # 20 % -> 15.4 %: 4.6 points, beyond a ~4.4-point bound
    assert c.noise == pytest.approx(noise_bound(200, 1000, 399, 2599))
    # the same program twice as long, same split: nothing beyond noise, nothing moved
    same = profile_of({"a": 1000, "b": 600, "c": 400}).diff(base)
    assert same.moved == pytest.approx(0) and not same.significant()
    assert same.noise_fraction == 1.0
    assert "0.0% of the time moved" in same.summary()


def test_a_small_change_is_within_noise_and_drawn_neutral():
    base = profile_of({"a": 120, "b": 80})
    new = profile_of({"a": 110, "b": 90})  # 5 points on 200 samples: well within noise
    diff = new.diff(base)
    assert not diff.significant() and diff.noise_fraction == 1.0
    payload = diff.payload([""])
    assert payload["format"] == "spy_magic.diff" and payload["summary"] == diff.summary()
    page = to_html(new, baseline=diff)
    assert "within noise" in page and "100.0% of that change is within sampling noise" in page


def test_a_baseline_of_another_program_is_an_error_or_a_warning():
    base = profile_of({"a": 50}, filename="/other/prog.py", command=["python", "prog.py"])
    new = profile_of({"a": 50}, command=["python", "work.py"])
    with pytest.raises(
        DiffError,
        match=r"shares no function.*different program "
        r"\(baseline: prog.py, this: work.py\)",
    ):
        new.diff(base)
    # sharing a little (a library function), another script: diffed, with warnings
    shared = profile_of({"a": 50, "lib": 5}, command=["python", "prog.py"])
    mine = profile_of({"b": 50, "lib": 5}, command=["python", "work.py"])
    lib = Frame("lib", "/usr/lib/python3.11/json/decoder.py", 3, 3)
    for p in (shared, mine):
        p.add(Sample(9.0, [Trace(1, 1, 1, "MainThread", True, False, (lib,))]))
    diff = mine.diff(shared)
    assert any("the baseline ran prog.py, this profile work.py" in w for w in diff.warnings)
    assert any("is it the same program?" in w for w in diff.warnings)
    with pytest.raises(DiffError, match="baseline holds no stacks"):
        mine.diff(Profile())


# -- the command line, on real processes -------------------------------------------------------
@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Two binary recordings of diff_work.py: 8:1:1 (the baseline) and 1:1:8."""
    where = tmp_path_factory.mktemp("diff")
    paths = {}
    for split in ("8:1:1", "1:1:8"):
        path = where / f"{split.replace(':', '-')}.bin"
        result = run(["record", "-f", "binary", "-o", path, "--rate", "300", "--", PYTHON,
                      WORK, "--split", split, "--repeat", "8", "--loop", "0.3"])  # fmt: skip
        assert result.returncode == 0, result.stderr
        paths[split] = path
    return paths


def diff_payload(page: str) -> dict:
    data = json.loads(re.search(r'class="sfg-data">(.*?)</script>', page, re.S).group(1))
    diff = data["diff"]
    strings = data["strings"]
    return {strings[n]: (b, a, noise) for n, b, a, noise in
            zip(diff["name"], diff["base_share"], diff["new_share"], diff["noise"])}  # fmt: skip


def test_record_against_a_baseline_colours_the_known_change(recordings, tmp_path):
    out = tmp_path / "new.html"
    result = run(["record", "-o", out, "--rate", "300", "--baseline", recordings["8:1:1"], "--",
                  PYTHON, WORK, "--split", "1:1:8", "--repeat", "8", "--loop", "0.3"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "of the time moved between functions" in result.stderr
    shares = diff_payload(out.read_text())
    x_base, x_new, x_noise = shares["function_x"]
    z_base, z_new, z_noise = shares["function_z"]
    # 210 ms of every 337 ms loop moved from function_x to function_z: 8 times less and more
    # (the interpreter's start and a busy machine's late wake-ups dilute both shares)
    assert x_new < x_base / 2 and x_base - x_new > max(0.1, 3 * x_noise)
    assert z_new > 2 * z_base and z_new - z_base > max(0.1, 3 * z_noise)


def test_replay_against_a_baseline_and_a_cut_baseline_recovers_what_it_can(recordings, tmp_path):
    out = tmp_path / "replayed.html"
    result = run(["replay", recordings["1:1:8"], "-o", out, "--baseline", recordings["8:1:1"]])
    assert result.returncode == 0, result.stderr
    whole = diff_payload(out.read_text())
    assert whole["function_z"][1] > 2 * whole["function_z"][0]
    # the baseline cut in the middle: the samples before the cut are compared, and said so
    data = recordings["8:1:1"].read_bytes()
    frames, offset = [], HEAD.size  # (kind, start, end) of each frame
    while offset < len(data):
        kind, length, _crc = FRAME.unpack_from(data, offset)
        frames.append((kind, offset, offset + FRAME.size + length))
        offset = frames[-1][2]
    middle = [f for f in frames if f[0] == DATA][len(frames) // 2 - 1]
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[: (middle[1] + middle[2]) // 2])  # inside a data frame
    with pytest.warns(UserWarning):
        recovered = read_recording(cut).sample_count
    assert recovered > 0
    result = run(["replay", recordings["1:1:8"], "-o", out, "--baseline", cut])
    assert result.returncode == 0, result.stderr
    assert f"--baseline {cut}: the recording stops" in result.stderr
    assert f"{recovered} samples recovered" in result.stderr
    assert f"comparing against the {recovered} baseline samples recovered" in result.stderr
    cut_z = diff_payload(out.read_text())["function_z"]
    assert cut_z[1] == whole["function_z"][1] and cut_z[0] != whole["function_z"][0]


def test_a_baseline_that_is_no_recording_fails_before_anything_runs(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00garbage" * 20)
    out = tmp_path / "never.html"
    marker = tmp_path / "ran"
    result = run(["record", "-o", out, "--baseline", junk, "--", PYTHON, "-c",
                  f"open({str(marker)!r}, 'w').close()"])  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"--baseline {junk}" in result.stderr and "error" in result.stderr
    assert not marker.exists() and not out.exists()  # the command never ran
    result = run(["record", "-f", "collapsed", "--baseline", junk, "--", PYTHON, "-c", "0"])
    assert result.returncode == 2 and "use -f html" in result.stderr


def test_a_baseline_of_another_program_keeps_the_recording(recordings, tmp_path):
    other = tmp_path / "other.jsonl"
    write(profile_of({"elsewhere": 40}, filename="/srv/other.py",
                     command=["python", "other.py"]), other, "jsonl")  # fmt: skip
    out = tmp_path / "mine.html"
    result = run(["replay", recordings["1:1:8"], "-o", out, "--baseline", other])
    assert result.returncode == 1, result.stderr
    assert "shares no function with this profile" in result.stderr
    assert "writing the profile without a diff" in result.stderr
    page = out.read_text()  # the profile itself, whole, without diff colours
    assert '"diff"' not in page and "function_z" in page
