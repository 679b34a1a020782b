"""spy_magic: a sampling profiler for Python that lives in Jupyter."""

__version__ = "0.1.0"
