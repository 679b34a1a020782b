"""The sampling engine: when to sample, what to sample, and handing samples on."""

from .inprocess import InProcessSampler
from .sample import ProcessLabel, RateChange, Sample, SampleError, Trace
from .sampler import BaseSampler, Sampler
from .spy import ProcessSpy, attach
from .timer import DEFAULT_RATE, MAX_RATE, PoissonTimer, Tick

__all__ = [
    "DEFAULT_RATE",
    "MAX_RATE",
    "BaseSampler",
    "InProcessSampler",
    "PoissonTimer",
    "ProcessLabel",
    "ProcessSpy",
    "RateChange",
    "Sample",
    "SampleError",
    "Sampler",
    "Tick",
    "Trace",
    "attach",
]
