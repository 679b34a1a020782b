"""The sampling engine: when to sample, what to sample, and handing samples on."""

from .collector import Collector, as_collector
from .inprocess import InProcessSampler
from .sample import ProcessLabel, RateChange, Sample, SampleError, Trace
from .sampler import BaseSampler, Sampler
from .spy import ProcessSpy, attach
from .timer import DEFAULT_RATE, MAX_RATE, PoissonTimer, Tick

__all__ = [
    "DEFAULT_RATE",
    "MAX_RATE",
    "BaseSampler",
    "Collector",
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
    "as_collector",
    "attach",
]
