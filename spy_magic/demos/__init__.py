"""Workloads bundled with spy_magic, with known ground truth, for demos and tests."""

from pathlib import Path

DEMO_DIR = Path(__file__).parent


def demo_path(name: str) -> Path:
    """Path of a bundled demo script, e.g. demo_path("slow_script")."""
    path = DEMO_DIR / f"{name}.py"
    if not path.exists():
        raise FileNotFoundError(f"no bundled demo named {name!r}")
    return path
