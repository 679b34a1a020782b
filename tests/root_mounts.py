"""Making files visible to chrooted targets: the repository and the temp dir bind-mounted into
a root at the same paths, shared by every test process on the machine (the last holder
unmounts). Used by conftest's rooted interpreters and the notebook kernels' rooted kernel.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import subprocess
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# The bind mounts are shared by every process that uses a root at the same time (two pytest
# sessions, a script importing this module): each registers itself as a holder, and the last
# holder to let go unmounts them. The bookkeeping lives under MOUNT_STATE (on /run, a tmpfs: it
# goes with a reboot, as the mounts do), one directory per root, under an flock.
MOUNT_STATE = "/run/spy_magic-root-mounts" if os.path.isdir("/run") else tempfile.gettempdir()
_HELD_ROOTS: set[str] = set()  # roots this process holds
_ROOTS_DONE: set[str] = set()  # roots whose default paths this process already made visible


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _is_mount_point(path: str) -> bool:
    """Whether `path` is a mount point (os.path.ismount misses a bind within one filesystem)."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == path:
                return True
    return False


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _holder_name(pid: int) -> str:
    return f"{pid}-{_start_time(pid)}"  # the start time: a reused pid is another holder


def _holder_alive(name: str) -> bool:
    pid, _, started = name.partition("-")
    return pid.isdigit() and _start_time(int(pid)) == started


@contextlib.contextmanager
def _mount_state(root: str):
    """The root's bookkeeping directory, locked against other processes."""
    import fcntl

    state = os.path.join(MOUNT_STATE, root.strip("/").replace("/", "_"))
    os.makedirs(os.path.join(state, "holders"), exist_ok=True)
    fd = os.open(os.path.join(state, "lock"), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield state
    finally:
        os.close(fd)  # releases the lock


def _recorded_mounts(state: str) -> list[str]:
    try:
        with open(os.path.join(state, "mounts")) as f:
            return [line for line in f.read().splitlines() if line]
    except FileNotFoundError:
        return []


def ensure_visible_in_root(root: str, paths=None) -> list[str]:
    """Make each directory of `paths` (default: the repository and tempfile.gettempdir()) show
    at the same path inside the chroot `root`, by bind-mounting it there.

    Idempotent: a path already visible there (the same directory: an earlier call's mount,
    another process's, or the bind of a parent directory) is left as it is; a bind of exactly
    that path that nobody recorded (left by a killed process) is adopted. This process
    becomes a holder of the root's mounts; they are unmounted when the last holder lets go
    (release_root_mounts: at the end of the pytest session, through the autouse
    `_root_mounts` fixture, or when the process exits). Mounts this did not make (the root's
    /proc and /dev) are never touched. Needs root (mount). Returns the mount points made by
    this call. Raises ValueError for a path that contains the root or lies inside it, and
    RuntimeError when mount fails.
    """
    root = os.path.realpath(root)
    if paths is None and root in _ROOTS_DONE:
        return []
    wanted = [REPO, tempfile.gettempdir()] if paths is None else list(paths)
    # Outermost first, and nothing under a path that is bound already (it comes along).
    dirs: list[str] = []
    for d in sorted({os.path.realpath(str(p)) for p in wanted}):
        if d == "/" or d == root or d.startswith(root + "/") or root.startswith(d + "/"):
            raise ValueError(f"cannot bind {d} into {root}: one contains the other")
        if not any(d.startswith(outer + "/") for outer in dirs):
            dirs.append(d)
    made = []
    with _mount_state(root) as state:
        Path(state, "holders", _holder_name(os.getpid())).touch()
        _HELD_ROOTS.add(root)
        recorded = _recorded_mounts(state)
        for d in dirs:
            target = os.path.join(root, d.lstrip("/"))
            if _same_file(d, target):
                if _is_mount_point(target) and target not in recorded:
                    # our bind left behind by a process that never let go: adopted, so the
                    # last holder unmounts it
                    with open(os.path.join(state, "mounts"), "a") as f:
                        f.write(target + "\n")
                continue
            if _is_mount_point(target):
                warnings.warn(f"{target} is a mount point, but not of {d}: left alone",
                              stacklevel=2)  # fmt: skip
                continue
            os.makedirs(target, exist_ok=True)
            out = subprocess.run(["mount", "--bind", d, target], capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"mount --bind {d} {target} failed: {out.stderr.strip()}")
            with open(os.path.join(state, "mounts"), "a") as f:
                f.write(target + "\n")
            made.append(target)
    if paths is None:
        _ROOTS_DONE.add(root)
    return made


def release_root_mounts() -> None:
    """Let go of the roots this process holds; the last live holder of a root unmounts what
    ensure_visible_in_root mounted in it (innermost first)."""
    for root in sorted(_HELD_ROOTS):
        with _mount_state(root) as state:
            holders = os.path.join(state, "holders")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(holders, _holder_name(os.getpid())))
            alive = False
            for name in os.listdir(holders):
                if _holder_alive(name):
                    alive = True
                else:  # a holder that died without letting go (killed, say)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(holders, name))
            if alive:
                continue
            left = []
            for target in reversed(_recorded_mounts(state)):
                if not _is_mount_point(target):
                    continue
                out = subprocess.run(["umount", target], capture_output=True, text=True)
                if out.returncode != 0:  # busy (a stray process still in there): detach lazily
                    lazy = subprocess.run(["umount", "-l", target], capture_output=True, text=True)
                    if lazy.returncode != 0:
                        left.append(target)
                        warnings.warn(f"could not unmount {target}: {out.stderr.strip()} / "
                                      f"{lazy.stderr.strip()}", stacklevel=2)  # fmt: skip
            with open(os.path.join(state, "mounts"), "w") as f:
                f.writelines(t + "\n" for t in reversed(left))
    _HELD_ROOTS.clear()
    _ROOTS_DONE.clear()


atexit.register(release_root_mounts)  # a script that imports this module, or a session cut short
