"""The notebook front: `%load_ext spy_magic` (or `%load_ext spy_magic.notebook`)."""

from __future__ import annotations


def load_ipython_extension(ipython) -> None:
    from .magics import SpyMagics

    ipython.register_magics(SpyMagics)


def unload_ipython_extension(ipython) -> None:  # magics stay until the kernel restarts
    pass
