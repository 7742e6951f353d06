"""How much the fleet benchmarks measure: a full run and a quick one."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FleetPlan"]


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """How much to measure."""

    #: A successful ask, fleet on and off: interleaved latency rounds.
    rounds: int
    samples: int
    chunk: int
    warmup: int
    #: Commands per call: seconds each subject is called, at ``rate`` calls/s.
    paced_seconds: float
    #: Propagation: outages with the fleet, and with independent breakers.
    repetitions: int
    independent_repetitions: int
    #: One flush: ticks measured of each kind.
    flush_ticks: int
    rate: float = 1000.0
    node_rate: float = 500.0
    dead_seconds: float = 1.5
    flush_keys: int = 1000

    @classmethod
    def full(cls) -> FleetPlan:
        return cls(
            rounds=15,
            samples=1000,
            chunk=100,
            warmup=500,
            paced_seconds=5.0,
            repetitions=20,
            independent_repetitions=3,
            flush_ticks=15,
        )

    @classmethod
    def quick(cls) -> FleetPlan:
        return cls(
            rounds=3,
            samples=300,
            chunk=100,
            warmup=200,
            paced_seconds=1.0,
            repetitions=3,
            independent_repetitions=1,
            flush_ticks=2,
        )

    def describe(self) -> str:
        return (
            f"ask latency {self.rounds} rounds x {self.samples} calls per path in chunks of"
            f" {self.chunk} after {self.warmup} warm-up calls; commands {self.paced_seconds:g} s"
            f" per subject at {self.rate:,.0f} calls/s; propagation {self.repetitions} outages"
            f" of {self.dead_seconds:g} s with the fleet and {self.independent_repetitions}"
            f" without, nodes at {self.node_rate:,.0f} calls/s; flush {self.flush_ticks} ticks"
            f" of each kind with {self.flush_keys:,} keys"
        )
