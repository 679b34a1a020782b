"""Reading a recording back, whatever it is (a binary recording or a jsonl profile), for
`replay` and for `--baseline`; and making the baseline's diff, with its warnings."""

from __future__ import annotations

import sys
import warnings

from ..profile import Profile
from ..profile.diff import DiffError, ProfileDiff
from ..profile.exports import read_jsonl
from ..profile.recording import MAGIC, RecordingError, read_recording


def load(path: str) -> tuple[Profile | None, list[str], str | None]:
    """(profile, warnings, error): the profile is what could be read, None if nothing."""
    with open(path, "rb") as f:
        head = f.read(64)
    jsonl = head.lstrip().startswith(b"{")  # a jsonl profile starts with its JSON header
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            profile: Profile | None = read_jsonl(path) if jsonl else read_recording(path)
            error = None
        except RecordingError as exc:
            profile, error = exc.profile, str(exc)
            if not head.startswith(MAGIC[:1]) and profile is None:
                error += " (nor a jsonl profile)"
        except ValueError as exc:  # read_jsonl keeps nothing of a file it cannot read
            profile, error = None, f"{exc}; no samples recovered"
    return profile, [str(w.message) for w in caught], error


def load_baseline(path: str) -> Profile | None:
    """The baseline profile at `path`, with what was wrong with it said on stderr; None
    (after the error) when nothing usable could be read. A damaged or cut file gives the
    samples before the damage, and says how many."""
    try:
        profile, notes, error = load(path)
    except OSError as exc:
        print(f"spy_magic: error: cannot read --baseline {path}: {exc.strerror}", file=sys.stderr)
        return None
    for note in notes:
        print(f"spy_magic: warning: --baseline {path}: {note}", file=sys.stderr)
    usable = profile is not None and profile.sample_count > 0
    if error is not None:
        kind = "warning" if usable else "error"
        print(f"spy_magic: {kind}: --baseline {path}: {error}", file=sys.stderr)
    if usable and (error is not None or notes):
        print(f"spy_magic: comparing against the {profile.sample_count} baseline samples "
              "recovered", file=sys.stderr)  # fmt: skip
    elif not usable and error is None:
        print(f"spy_magic: error: --baseline {path} holds no samples", file=sys.stderr)
    return profile if usable else None


def baseline_diff(profile: Profile, baseline: Profile, path: str) -> ProfileDiff | None:
    """`profile` against `baseline`, its warnings said on stderr; None (after the error)
    when they cannot be compared (a different program)."""
    try:
        diff = profile.diff(baseline)
    except DiffError as exc:
        print(f"spy_magic: error: --baseline {path}: {exc}; writing the profile without a diff",
              file=sys.stderr)  # fmt: skip
        return None
    for note in diff.warnings:
        print(f"spy_magic: warning: --baseline {path}: {note}", file=sys.stderr)
    print(f"spy_magic: against {path}: {diff.summary()}", file=sys.stderr)
    return diff
