"""The kernel <-> helper protocol: the finished profile crosses as aggregates, not samples.

A profile recorded from a real process (samples kept: "the old way") is sent through the
protocol's encoding and decoded as the kernel would; every view the notebook shows must
come out the same from the decoded aggregates: counts, weights, top rows, the flame trees'
JSON, the whole report and its picture, the diff, the lag plot. Then the protocol's
refusals (another version, a broken or cut profile), and a real helper whose output is cut
in the middle of the profile message (the session says so and keeps its last summary).
"""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
import textwrap
import time

import notebook_kernels as nk  # tests/ is on sys.path under pytest
import pytest

from spy_magic.engine import RateChange, Sampler
from spy_magic.engine.sample import Sample, SampleError
from spy_magic.notebook import protocol
from spy_magic.profile import Profile
from spy_magic.profile.model import SamplesNotKept

CHILD = """\
import threading, time

def sleeper():
    while True:
        time.sleep(0.003)

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def left():
    spin(0.002)

def right():
    spin(0.001)
    left()

threading.Thread(target=sleeper, name="sleeper", daemon=True).start()
print("ready", flush=True)
while True:
    left()
    right()
"""


def _record(samples: int, source: str = CHILD) -> Profile:
    """A real recording of a two-thread child, `samples` long, with a rate change and a
    sample that met an error added: what a helper holds at the end of a cell."""
    child = subprocess.Popen([sys.executable, "-c", source], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        profile = Profile({"note": "x", "rate": 500.0, "sources": {"In [3]": "left()\n"}})
        with Sampler(child.pid, rate=500) as sampler:
            deadline = time.monotonic() + 30
            for sample in sampler:
                profile.add(sample)
                if profile.sample_count >= samples or time.monotonic() > deadline:
                    break
        last = profile.last_timestamp()
        error = SampleError(child.pid, 1, "TornStack", "moved")
        profile.add(Sample(last + 0.002, [], 0.0015, [error]))
        profile.add_rate_change(RateChange(last / 2, 500.0, 250.0, "the sampler could not keep up"))
    finally:
        child.kill()
        child.wait()
    return profile


@pytest.fixture(scope="module")
def recorded() -> Profile:
    profile = _record(400)
    assert profile.sample_count > 100 and len(profile.trace_stats()) >= 3
    return profile


def _through_the_pipe(profile: Profile, **options) -> tuple[str, Profile]:
    """The profile message as the helper writes it, and the Profile the kernel decodes."""
    wire = protocol.encode("profile", profile=protocol.encode_profile(profile, **options))
    assert "\n" not in wire
    message = protocol.decode(wire, protocol.HELPER_MESSAGES)
    return wire, protocol.decode_profile(message["profile"])


def test_the_kernel_gets_aggregates_and_every_view_draws_the_same(recorded):
    from spy_magic.notebook.lagplot import lag_png
    from spy_magic.notebook.views import profile_bundle, top_text
    from spy_magic.profile.exports import flame_views, to_collapsed
    from spy_magic.profile.pstats_export import to_pstats
    from spy_magic.profile.summary import summarize
    from spy_magic.profile.top import top_rows

    wire, back = _through_the_pipe(recorded)
    assert "samples" not in json.loads(wire)["profile"]  # no sample crossed
    assert back.keep_samples is False
    with pytest.raises(SamplesNotKept):
        back.samples  # noqa: B018
    # the numbers themselves
    assert back.sample_count == recorded.sample_count and back.trace_count == recorded.trace_count
    assert [(s.trace, s.count, s.weight) for s in back.trace_stats()] == [
        (s.trace, s.count, s.weight) for s in recorded.trace_stats()
    ]
    for by in ("line", "function"):
        assert back.functions(by=by) == recorded.functions(by=by)
        assert back.stack_counts(by=by, threads=True) == recorded.stack_counts(by=by, threads=True)
    assert top_rows(back, 50) == top_rows(recorded, 50)
    assert back.lateness() == recorded.lateness() and back.late_values() == recorded.late_values()
    assert back.error_counts() == recorded.error_counts() and back.errors == recorded.errors
    assert back.threads() == recorded.threads() and back.pids() == recorded.pids()
    assert back.rate_changes == recorded.rate_changes and back.metadata == recorded.metadata
    assert (back.duration, back.effective_rate) == (recorded.duration, recorded.effective_rate)
    assert summarize(back) == summarize(recorded)
    assert back == recorded  # equal aggregates (Profile.__eq__ without both sample logs)
    # the views, byte for byte
    for by in ("line", "function"):
        views = json.dumps(flame_views(back, by=by, timeline=120), sort_keys=True)
        assert views == json.dumps(flame_views(recorded, by=by, timeline=120), sort_keys=True)
    assert to_collapsed(back, threads=True) == to_collapsed(recorded, threads=True)
    # (marshal's bytes differ where objects are shared or not: compare what they hold)
    assert marshal.loads(to_pstats(back)) == marshal.loads(to_pstats(recorded))
    assert top_text(back) == top_text(recorded)
    assert profile_bundle(back, "In [3]") == profile_bundle(recorded, "In [3]")
    diff_back = profile_bundle(back, "In [3]", baseline=back.diff(recorded))
    assert diff_back == profile_bundle(recorded, "In [3]", baseline=recorded.diff(recorded))
    assert lag_png(back) == lag_png(recorded)  # lateness over time, its histogram, the gaps


def test_the_samples_cross_only_when_asked(recorded):
    """The -o formats that need every sample (NEEDS_SAMPLES): the kernel asks in "go"."""
    from spy_magic.profile.exports import to_speedscope

    wire, back = _through_the_pipe(recorded, samples=True)
    assert back.keep_samples and list(back.samples) == list(recorded.samples)
    assert to_speedscope(back) == to_speedscope(recorded)
    assert len(wire) > len(_through_the_pipe(recorded)[0])


def test_the_message_grows_with_the_stacks_not_the_samples():
    """Past the bounded summaries' exact phase (4096 late values, 4096 gaps), three times
    the samples of the same stacks make about the same message."""
    from spy_magic.engine.sample import Trace
    from spy_magic.reader import Frame

    frames = [Frame(f"f{i}", "w.py", i, i) for i in range(6)]
    traces = [Trace(1, 1, 1, "MainThread", True, False, tuple(frames[i:])) for i in range(4)]

    def synthetic(n: int) -> int:
        profile = Profile(keep_samples=False)
        for i in range(n):
            late = (i % 97) * 1e-5 if i % 3 else None
            profile.add(Sample(i * 0.001 + (i % 7) * 1e-4, [traces[i % 4]], late))
        return len(protocol.encode("profile", profile=protocol.encode_profile(profile)))

    small, large = synthetic(20_000), synthetic(60_000)
    assert large < 1.5 * small, (small, large)
    assert large < 200_000, large


def test_protocol_refuses_another_version_and_broken_messages(recorded):
    with pytest.raises(protocol.ProtocolError, match=r"protocol 1, this side 2: .*restart"):
        protocol.check_version({"type": "hello", "protocol": 1}, "the sampling helper")
    protocol.check_version({"type": "hello", "protocol": protocol.PROTOCOL_VERSION}, "x")
    with pytest.raises(protocol.ProtocolError, match="not a message"):
        protocol.decode('{"type": "sam', protocol.HELPER_MESSAGES)
    with pytest.raises(protocol.ProtocolError, match="unexpected message"):
        protocol.decode('{"type": "go"}', protocol.HELPER_MESSAGES)  # the kernel's, not ours
    good = protocol.encode_profile(recorded)

    def broken(**changes) -> dict:
        data = json.loads(json.dumps(good))
        data.update(changes)
        return data

    old_style = {"format": 1, "strings": [], "times": [0.0], "samples": [0]}  # protocol 1's
    for data, says in (
        (None, "not a spy_magic profile"),
        (old_style, "not a spy_magic profile: format 1"),
        (broken(version=99), "profile JSON version 99, this side reads 1"),
        (broken(counts=good["counts"][:-1]), "traces, .* counts"),
        (broken(counts=[-1] * len(good["counts"])), "trace count -1"),
        (broken(trace_count=good["trace_count"] + 1), "trace count"),
        (broken(pending=[-1]), "pending trace -1"),
        (broken(frames=good["frames"][:-1]), "4 numbers each"),
        (broken(strings=good["strings"][:1]), "string .* of 1"),
        (broken(lateness={"count": 3, "zeros": 0, "max": 0.1, "exact": [0.1]}), "lateness"),
        (broken(timeline={"size": 400}), "KeyError"),
        (broken(metadata=[]), "metadata must be an object"),
        ({k: v for k, v in good.items() if k != "weights"}, "KeyError: 'weights'"),
    ):
        with pytest.raises(protocol.ProtocolError, match="not an encoded profile: .*" + says):
            protocol.decode_profile(data)


def test_helper_refuses_a_kernel_of_another_protocol_version(tmp_path):
    """A helper told to go in another protocol version ends with an error saying so."""
    env = dict(os.environ, PYTHONPATH=str(nk.REPO))
    helper = subprocess.Popen(
        [sys.executable, "-m", "spy_magic.notebook.helper", "--pid", str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        hello = protocol.decode(helper.stdout.readline(), protocol.HELPER_MESSAGES)
        assert hello == {"type": "hello", "protocol": protocol.PROTOCOL_VERSION}
        helper.stdin.write(protocol.encode("go", protocol=1, context=None) + "\n")
        helper.stdin.flush()
        end = protocol.decode(helper.stdout.readline(), protocol.HELPER_MESSAGES)
        assert helper.wait(30) == 2
    finally:
        helper.kill()
        helper.wait()
    assert end["type"] == "end" and "protocol 1, this side 2" in end["error"], end


def cutting_python(folder) -> str:
    path = folder / "cutting-python"
    path.write_text(nk.CUTTING_PYTHON.format(python=sys.executable))
    path.chmod(0o755)
    return str(path)


def test_a_profile_message_cut_short_is_a_clear_error_and_the_summary_is_kept(tmp_path):
    from spy_magic.notebook.session import RemoteSession

    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        session = RemoteSession(child.pid, {"rate": 200}, python=cutting_python(tmp_path))
        session.start()
        deadline = time.monotonic() + 30
        while session.summary is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the first summary comes after about a second
        profile = session.stop()
        assert session.ended.wait(30)
    finally:
        child.kill()
        child.wait()
    assert session.error and "broke off in a message after" in session.error, session.error
    assert '{"type":"profile"' in session.error
    assert session.summary and session.summary["samples"] > 0  # what the live view last had
    assert profile.sample_count == 0 and profile.metadata.get("pid") == child.pid, profile.metadata


def test_a_garbled_profile_message_names_what_broke(tmp_path):
    """A profile message that parses but is no profile: the session's error says so."""
    from spy_magic.notebook.session import RemoteSession

    garbling = tmp_path / "garbling-python"
    garbling.write_text(textwrap.dedent(nk.CUTTING_PYTHON.format(python=sys.executable)).replace(
        "sys.stdout.write(line[: len(line) // 2])",
        "sys.stdout.write(line.replace('\"counts\":[', '\"counts\":[-7,', 1))",
    ))  # fmt: skip
    garbling.chmod(0o755)
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        session = RemoteSession(child.pid, {"rate": 200}, python=str(garbling)).start()
        time.sleep(0.3)
        session.stop()
        assert session.ended.wait(30)
    finally:
        child.kill()
        child.wait()
    assert session.error and "the finished profile could not be read" in session.error
    assert "not an encoded profile" in session.error, session.error
