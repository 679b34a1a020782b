"""What the sampler hands its output to: a `Collector`, called on the processing thread.

A new output (a file streamed while sampling, a live table, an aggregate) is one class with
these three methods, given to `BaseSampler.add_collector`; nothing else needs an edit. The
calls come in order, from one thread: every sample and every rate change as they happened,
then `finish` once sampling has ended (also after a failed start: then with no sample).
"""

from __future__ import annotations

from typing import Callable, Protocol, Union, runtime_checkable

from .sample import RateChange, Sample


@runtime_checkable
class Collector(Protocol):
    """Receives a sampler's output on its processing thread (see the module docstring)."""

    def add(self, sample: Sample) -> None:
        """One sample, in timestamp order."""

    def add_rate_change(self, change: RateChange) -> None:
        """The sampler changed its rate (load adaptation), between the samples around it."""

    def finish(self) -> None:
        """Sampling ended: no more calls follow."""


SampleCallback = Callable[[Sample], None]
CollectorLike = Union[Collector, SampleCallback]


class CallbackCollector:
    """A bare `callback(sample)` as a Collector: rate changes and the end are not its concern
    (the sampler's `rate_changes` still lists them)."""

    __slots__ = ("add",)

    def __init__(self, callback: SampleCallback) -> None:
        self.add = callback

    def add_rate_change(self, change: RateChange) -> None:
        pass

    def finish(self) -> None:
        pass


def as_collector(collector: CollectorLike) -> Collector:
    """`collector` itself when it has the three methods, else a callable wrapped."""
    if isinstance(collector, Collector):
        return collector
    if callable(collector):
        return CallbackCollector(collector)
    raise TypeError(
        f"a collector has add(sample), add_rate_change(change) and finish(), or is a "
        f"callable taking a sample; got {type(collector).__name__}"
    )
