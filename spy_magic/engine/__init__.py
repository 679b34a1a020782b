"""The sampling engine: when to sample, what to sample, and handing samples on."""

from .sample import ProcessLabel, RateChange, Sample, SampleError, Trace
from .sampler import Sampler, SamplerError
from .spy import ProcessSpy, attach
from .timer import DEFAULT_RATE, PoissonTimer, Tick

__all__ = [
    "DEFAULT_RATE",
    "PoissonTimer",
    "ProcessLabel",
    "ProcessSpy",
    "RateChange",
    "Sample",
    "SampleError",
    "Sampler",
    "SamplerError",
    "Tick",
    "Trace",
    "attach",
]
