"""The body of the report's section on fleet-wide circuits: four tables with the issue's targets."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .cells import Target, ratio, targets_cell, us, x
from .fleet_calls import FLEET_OFF, FLEET_ON, PYBREAKER_REDIS, REGISTRIES, Commands
from .fleet_flush import FlushCost
from .fleet_node import propagation_config
from .fleet_propagation import NODES, Propagation, Repetition, finite
from .latency import Latency

__all__ = ["FleetFigures", "fleet_section"]

#: The fleet's flush period in every fleet benchmark (RedisFleet's default).
PUBLISH_INTERVAL = 0.1


@dataclass(frozen=True, slots=True)
class FleetFigures:
    redis_version: str
    plan: str
    latencies: Mapping[str, Latency]
    ours: Commands
    theirs: Commands
    propagation: Propagation
    flush: Sequence[FlushCost]
    seconds: float


def _ms(seconds: float) -> str:
    if seconds == float("inf"):
        return "never"
    return f"{seconds * 1000:,.1f}"


def _latency_table(latencies: Mapping[str, Latency]) -> list[str]:
    base = latencies[FLEET_OFF]
    on = latencies[FLEET_ON]
    targets = {FLEET_ON: [Target("p50 <= 1.1x no fleet", on.p50_us / base.p50_us, 1.1)]}
    lines = [
        "| Path | p50 µs | p99 µs | p50 ÷ no fleet | p99 ÷ no fleet | Target (issue) | Result |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for name, figure in latencies.items():
        labels, verdicts = targets_cell(targets.get(name, []))
        lines.append(
            f"| {name} | {us(figure.p50_us)} | {us(figure.p99_us)}"
            f" | {x(figure.p50_us / base.p50_us)} | {x(figure.p99_us / base.p99_us)}"
            f" | {labels} | {verdicts} |"
        )
    return lines


def _by_name(commands: Commands) -> str:
    counts = sorted(commands.by_name.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{name} {count:,}" for name, count in counts) or "none"


def _commands_table(
    ours: Commands, theirs: Commands, latencies: Mapping[str, Latency]
) -> list[str]:
    target = Target("(a) sent <= 0.01 per call", ours.per_call(ours.sent), 0.01)
    labels, verdicts = targets_cell([target])
    lines = [
        "| Subject (1 node, 1 key, paced caller) | calls | calls/s | (a) commands sent / call"
        " | (b) commands Redis counted / call | round trips / call | p50 µs paced"
        " | p50 µs back-to-back | Target (issue) | Result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    rows = (
        ("ours: fleet on, publish_interval=0.1", ours, latencies[FLEET_ON], labels, verdicts),
        ("pybreaker: `CircuitRedisStorage`", theirs, latencies[PYBREAKER_REDIS], "", ""),
    )
    for name, figure, latency, label, verdict in rows:
        lines.append(
            f"| {name} | {figure.calls:,} | {figure.per_second:,.0f}"
            f" | {figure.per_call(figure.sent):.4f} | {figure.per_call(figure.counted):.4f}"
            f" | {figure.per_call(figure.round_trips):.4f} | {us(figure.p50_us)}"
            f" | {us(latency.p50_us)} | {label} | {verdict} |"
        )
    return lines


def _commands_notes(ours: Commands, theirs: Commands) -> list[str]:
    plain = ours.sent - ours.scripts
    return [
        f"- What Redis counted (`INFO commandstats`), ours: {_by_name(ours)}.",
        f"- What Redis counted, pybreaker: {_by_name(theirs)}.",
        "- (a) is what our clients sent: the script calls Redis counted"
        f" ({ours.scripts:,} EVALSHA, one FLUSH per"
        f" key per tick) plus the plain commands the fleet's store sent ({plain:,}, counted on"
        " the client: `Store.write`, e.g. the SADD that lists a new key). The commands a script"
        " runs inside Redis (TIME, HMGET, HINCRBY, ZADD, PEXPIRE, ...) are counted by"
        " `commandstats` under their own names although no client sent them: (b) counts them"
        " too, (a) does not. pybreaker runs no scripts and pipelines nothing, so for it (a),"
        " (b) and round trips are the same count. Round trips are counted on our client (one"
        " per pipeline)."
        " Each subject ran alone against the server (the other one stopped), with `CONFIG"
        " RESETSTAT` just before its paced calls and `INFO commandstats` just after (the"
        " benchmark's own CONFIG and INFO are left out). Ours sends per tick, not per call:"
        " (a) is about (ticks/s) ÷ (calls/s), and a tick comes `publish_interval` after the"
        " previous one ended, so slightly fewer than 10 a second.",
        "- p50 paced: the calls of the paced run above, each timed (between two calls the"
        ' machine idles, and a thread hand-off costs more on an idle machine: see "How to'
        ' read this"); p50 back-to-back: the table above (interleaved, the same run), the'
        " figures to compare.",
    ]


def _percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank, as ``latency.percentile`` (inf sorts last); nan without values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _doomed(reps: Sequence[Repetition]) -> tuple[float, float]:
    """Mean doomed calls per outage and their share of the calls made while it lasted."""
    doomed = sum(r.doomed for r in reps)
    calls = sum(r.calls for r in reps)
    return doomed / max(1, len(reps)), 100 * doomed / calls if calls else 0.0


def _propagation_table(figure: Propagation) -> list[str]:
    spans = [r.propagation for r in figure.fleet if r.propagation is not None]
    measured = finite(spans)
    missed = len(spans) - len(measured)
    p50 = _percentile(spans, 0.50)
    p99 = _percentile(spans, 0.99)
    opened = finite([r.opened_after for r in figure.fleet])
    target = Target("p99 <= 100 ms", p99 * 1000, 100.0)
    labels, verdicts = targets_cell([target])
    with_fleet, with_fleet_share = _doomed(figure.fleet)
    alone, alone_share = _doomed(figure.independent)
    saved = 100 * (1 - ratio(with_fleet, alone)) if alone else 0.0
    n, m = len(figure.fleet), len(figure.independent)
    return [
        "| Figure | Value | Target (issue) | Result |",
        "|---|---:|---|---|",
        f"| p50: fleet circuit opened → last of {NODES} nodes short-circuits its next call"
        f" ({n} outages) | {_ms(p50)} ms | | |",
        f"| p99 of the same{' (the worst outage: fewer than 100)' if n < 100 else ''}"
        f" | {_ms(p99)} ms | {labels} | {verdicts} |",
        f"| outages where a node never short-circuited | {missed} of {n} | | |",
        f"| the fleet circuit opened after the kill (p50) | {_ms(_percentile(opened, 0.5))} ms"
        " | | |",
        f"| calls that reached the dead dependency per outage, fleet ({n} outages)"
        f" | {with_fleet:,.0f} ({with_fleet_share:.1f}% of calls) | | |",
        f"| the same, {NODES} independent breakers, no fleet ({m} outages)"
        f" | {alone:,.0f} ({alone_share:.1f}% of calls) | | |",
        f"| doomed calls saved by the fleet | {saved:.1f}% | | |",
    ]


def _propagation_notes(figure: Propagation) -> list[str]:
    window = propagation_config(figure.rate).rolling_window
    return [
        f"- {NODES} processes (multiprocessing spawn), each a `CommandRegistry` calling one key"
        f" about {figure.rate:,.0f} times a second (measured: {figure.node_rate:,.0f}/s per"
        f" node), with `RedisFleet(publish_interval={PUBLISH_INTERVAL:g})` or, for the"
        " independent breakers, no fleet. The key: a rolling window of"
        f" {window:g} s, `error_percent_threshold=50`, `sleep_window=0.5`, and"
        f" `request_volume_threshold={figure.volume_threshold:,}`: twice what one node calls"
        f" in a window, half what the {NODES} call together. So no node can open the circuit"
        " on its own counts and the fleet (which sums them) can: the case a fleet is for,"
        " traffic spread over replicas. Independent breakers with this config never open,"
        " so every call of theirs during the outage reaches the dead dependency.",
        f"- Each outage: the calls succeed for {window + 0.2:g} s (the window fills), the"
        f" parent sets the shared flag that kills the dependency for {figure.dead_seconds:g}"
        " s, then clears it and waits until every node answers normally again. The fleet"
        " circuit's opening instant is the `at` of the open state the fleet broadcasts (Redis"
        " `TIME`, ms); each node notes the wall-clock instant its first short-circuited call"
        " was answered; the difference uses the one clock of this machine. It includes the"
        f" wait for the node's next call (up to {1000 / figure.rate:g} ms at this rate)."
        " With the fleet, the calls that reach the dead dependency are those before the fleet"
        " circuit opens (its window must reach 50% errors) plus one probe per sleep window"
        " for the whole fleet.",
    ]


def _flush_table(costs: Sequence[FlushCost]) -> list[str]:
    lines = [
        "| Tick (1 node) | keys | ticks | p50 ms | max ms | Redis round trip p50 ms"
        " | Redis running the scripts p50 ms | µs per key | p50 ÷ publish_interval"
        " | failed ticks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cost in costs:
        lines.append(
            f"| {cost.name} | {cost.keys:,} | {len(cost.ticks)} | {cost.p50_ms:,.1f}"
            f" | {cost.max_ms:,.1f} | {cost.round_trip_p50_ms:,.1f}"
            f" | {cost.server_p50_ms:,.1f} | {cost.per_key_us:,.1f}"
            f" | {x(cost.p50_ms / 1000 / PUBLISH_INTERVAL)} | {cost.failed} |"
        )
    return lines


def _flush_notes(costs: Sequence[FlushCost]) -> list[str]:
    flush = costs[0]
    return [
        f"- {flush.keys:,} keys used on one node, each asked once more before every tick, so"
        " every key has new counts and is flushed. The fleet actor's tick (`FleetActor._tick`,"
        " what runs every `publish_interval`) is called directly on the benchmark's thread,"
        " timed whole: reading each key's counts under its gate lock, building the FLUSH"
        " arguments, the one pipelined round trip to Redis, checking each reply and"
        " adopting the fleet's state. The round trip is `Store.run` timed alone (it includes"
        " redis-py packing and parsing); Redis's own time is the scripts' `usec` in"
        " `INFO commandstats`. Garbage collected before each tick. The issue sets no target"
        " for this figure: the next tick starts `publish_interval` after a tick ends, so a"
        " tick longer than the interval stretches the fleet's cadence; and Redis, single"
        " threaded, is busy for the scripts' time on every tick of every node, so its"
        " µs per key bounds the busy keys x nodes x ticks a second one Redis can serve.",
        "- The second row: the same tick when every key also sends its dashboard snapshot"
        " (`port.metrics()` rendered as JSON, written inside FLUSH), as each key does once"
        " per `snapshot_interval` (1 s by default; all the keys used since the same tick"
        " send theirs in the same tick).",
    ]


def fleet_section(figures: FleetFigures) -> list[str]:
    """The section's body (under its heading)."""
    ours, theirs = figures.ours, figures.theirs
    return [
        f"Against a redis-server ({figures.redis_version}) the benchmark started on a free"
        " loopback port for this run and stopped after it; every fleet uses"
        f" `publish_interval={PUBLISH_INTERVAL:g}`. Plan: {figures.plan}. This part took"
        f" {figures.seconds:.1f} s.",
        "",
        "### A successful ask, fleet on and off",
        "",
        *_latency_table(figures.latencies),
        "",
        "The paths are interleaved in one process and one run, as in the latency table"
        " above; the registries with a fleet flush to Redis meanwhile (their ticks, on their own"
        " threads, share the machine with every registry). Each path asks"
        f" {REGISTRIES} registries of its own in turn: the scheduler tends to keep a thread on"
        " the core it first put it on, and a hand-off across cores costs more than on one, so"
        " with one registry per path two identical paths measured up to 25% apart on this"
        " machine. The A/A row is the first path again on other registries"
        " without a fleet: how far two identical paths drift apart in this run, the noise"
        " floor of the ratio. pybreaker's `breaker.call` with"
        " `CircuitRedisStorage` is for comparison: it reads and writes Redis on every call.",
        "",
        f"### Redis commands per call, at {ours.per_second:,.0f} calls/s",
        "",
        *_commands_table(ours, theirs, figures.latencies),
        "",
        *_commands_notes(ours, theirs),
        "",
        f"### Open propagation across {NODES} processes",
        "",
        *_propagation_table(figures.propagation),
        "",
        *_propagation_notes(figures.propagation),
        "",
        f"### Cost of one flush, {figures.flush[0].keys:,} keys on one node",
        "",
        *_flush_table(figures.flush),
        "",
        *_flush_notes(figures.flush),
    ]
