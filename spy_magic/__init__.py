"""spy_magic: a sampling profiler for Python that lives in Jupyter."""

__version__ = "0.1.0"


def load_ipython_extension(ipython) -> None:
    """`%load_ext spy_magic`: registers %%spy, %spy_attach, %spy_stop, %spy_dump."""
    from .notebook import load_ipython_extension as load

    load(ipython)
