"""The benchmark's report: tables with the issue's targets beside the figures, as Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .latency import Latency
from .overload import Overload, Pressure
from .throughput import Throughput

__all__ = [
    "BARE_ASK",
    "BARE_FUNCTION",
    "HAND_ROLLED",
    "IDEAL_PER_SECOND",
    "OURS_REJECTED",
    "OURS_SHORT_CIRCUIT",
    "OURS_SUCCESS",
    "OURS_THROUGHPUT",
    "OVERLOAD_CALLERS",
    "OVERLOAD_CROWD",
    "OVERLOAD_CROWD_QUIET",
    "OVERLOAD_SOLO",
    "OVERLOAD_SOLO_QUIET",
    "POOL_ALONE",
    "REJECTED_SERVED",
    "REJECTED_UNSERVED",
    "RSS_GROWTH_LIMIT_KIB",
    "RunInfo",
    "Target",
    "render",
]

BARE_FUNCTION = "bare function call"
BARE_ASK = "bare pykka ask (ThreadingActor echo)"
HAND_ROLLED = "hand-rolled: ThreadPoolExecutor(10) + pybreaker + result(timeout) + fallback"
OURS_SUCCESS = "ours: `registry.ask`, success"
OURS_SHORT_CIRCUIT = "ours: `registry.ask`, short-circuit (force_open, fallback)"
OURS_REJECTED = "ours: `registry.ask`, rejected (bulkhead full, fallback)"
#: The throughput variant without any breaker (context for the hand-rolled figure).
POOL_ALONE = "ThreadPoolExecutor(10) alone, no breaker (context only)"
OURS_THROUGHPUT = "ours: `registry.ask`, max_concurrent_requests=10"

#: 10 callers against a dependency that takes 10 ms: at best 1,000 calls/s.
IDEAL_PER_SECOND = 1000.0

#: Overload: this many caller threads against a key whose bulkhead is full.
OVERLOAD_CALLERS = 200
OVERLOAD_CROWD = f"{OVERLOAD_CALLERS} callers, `command.rejected` logged"
OVERLOAD_SOLO = "1 caller, `command.rejected` logged"
OVERLOAD_CROWD_QUIET = f"{OVERLOAD_CALLERS} callers, `command.rejected` filtered out"
OVERLOAD_SOLO_QUIET = "1 caller, `command.rejected` filtered out"
#: What an overload answer should be (anything else counts as "not rejected").
REJECTED_SERVED = "THREAD_POOL_REJECTED, fallback served"
REJECTED_UNSERVED = "THREAD_POOL_REJECTED, fallback not served"
#: The issue's "a few milliseconds", as a multiple of one caller's p99 measured alongside.
OVERLOAD_P99_LIMIT = 20.0
#: How much the resident set may grow from the first overload phase to the last.
RSS_GROWTH_LIMIT_KIB = 5 * 1024


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the issue: ``reached`` must be <= ``limit`` (or >= with ``at_least``)."""

    label: str
    reached: float
    limit: float
    at_least: bool = False

    @property
    def passed(self) -> bool:
        return self.reached >= self.limit if self.at_least else self.reached <= self.limit

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "MISS"


@dataclass(frozen=True, slots=True)
class RunInfo:
    date: str
    python: str
    pykka: str
    pybreaker: str
    structlog: str
    cores: int
    platform: str
    mode: str
    latency_plan: str
    throughput_plan: str
    timer_overhead_ns: int
    pybreaker_note: str
    #: What the "10 ms" dependency really took per call during the throughput slices.
    dependency_mean_ms: float = 0.0
    dependency_p99_ms: float = 0.0
    seconds: float = 0.0
    overload_plan: str = ""
    #: The bulkhead each overload key has: the calls in flight it must hold at, exactly.
    overload_slots: int = 10
    #: ``sys.getswitchinterval()``: how long a busy thread may keep the GIL from the others.
    switch_interval_ms: float = 5.0


def _us(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _x(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}x"
    return f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x"


def _span(us: float) -> str:
    """Microseconds from 0.1 to 1,000,000 in a table cell."""
    return f"{us:,.0f}" if us >= 1000 else _us(us)


def _targets_cell(targets: Sequence[Target]) -> tuple[str, str]:
    if not targets:
        return "", ""
    labels = "; ".join(t.label for t in targets)
    verdicts = "; ".join(f"**{t.verdict}**" for t in targets)
    return labels, verdicts


def latency_targets(latencies: Mapping[str, Latency]) -> dict[str, list[Target]]:
    ask = latencies[BARE_ASK]
    ours = latencies[OURS_SUCCESS]
    short = latencies[OURS_SHORT_CIRCUIT]
    return {
        OURS_SUCCESS: [
            Target("p50 <= 2x ask", ours.p50_us / ask.p50_us, 2.0),
            Target("p99 <= 3x ask", ours.p99_us / ask.p99_us, 3.0),
        ],
        OURS_SHORT_CIRCUIT: [Target("p50 <= 1x ask", short.p50_us / ask.p50_us, 1.0)],
    }


def throughput_targets(throughputs: Mapping[str, Throughput]) -> list[Target]:
    ours = throughputs[OURS_THROUGHPUT].per_second
    theirs = throughputs[HAND_ROLLED].per_second
    return [
        Target(">= 90% of ideal", 100 * ours / IDEAL_PER_SECOND, 90.0, at_least=True),
        Target(">= 5x hand-rolled", ours / theirs if theirs else float("inf"), 5.0, at_least=True),
    ]


def _latency_table(latencies: Mapping[str, Latency]) -> list[str]:
    ask = latencies[BARE_ASK]
    targets = latency_targets(latencies)
    lines = [
        "| Path | p50 µs | p99 µs | p50 ÷ ask | p99 ÷ ask | Target (issue) | Result |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for name, figure in latencies.items():
        labels, verdicts = _targets_cell(targets.get(name, []))
        lines.append(
            f"| {name} | {_us(figure.p50_us)} | {_us(figure.p99_us)}"
            f" | {_x(figure.p50_us / ask.p50_us)} | {_x(figure.p99_us / ask.p99_us)}"
            f" | {labels} | {verdicts} |"
        )
    return lines


def _throughput_table(throughputs: Mapping[str, Throughput]) -> list[str]:
    theirs = throughputs[HAND_ROLLED].per_second
    labels, verdicts = _targets_cell(throughput_targets(throughputs))
    lines = [
        "| Variant (10 callers, 10 ms dependency) | calls/s | % of ideal 1,000/s"
        " | ÷ hand-rolled | fallbacks | Target (issue) | Result |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for name, figure in throughputs.items():
        mine = (labels, verdicts) if name == OURS_THROUGHPUT else ("", "")
        ratio = _x(figure.per_second / theirs) if theirs else "n/a"
        share = 100 * figure.per_second / IDEAL_PER_SECOND
        lines.append(
            f"| {name} | {figure.per_second:,.0f} | {share:.1f}%"
            f" | {ratio} | {figure.fallbacks} | {mine[0]} | {mine[1]} |"
        )
    return lines


def _ceiling_note(info: RunInfo, throughputs: Mapping[str, Throughput]) -> list[str]:
    if info.dependency_mean_ms <= 0:
        return []
    ceiling = 10 * 1000 / info.dependency_mean_ms
    ours = throughputs[OURS_THROUGHPUT].per_second
    return [
        f"- The dependency's `time.sleep(0.01)` itself took {info.dependency_mean_ms:.2f} ms on"
        f" average (p99 {info.dependency_p99_ms:.2f} ms) during the throughput slices, so 10"
        f" callers could reach at most {ceiling:,.0f} calls/s with zero overhead; ours reached"
        f" {100 * ours / ceiling:.1f}% of that ceiling (the target is against the nominal 1,000)."
    ]


def rejected(pressure: Pressure) -> int:
    """Answers that were bulkhead rejections (whether or not their fallback was served)."""
    outcomes = pressure.outcomes
    return outcomes.get(REJECTED_SERVED, 0) + outcomes.get(REJECTED_UNSERVED, 0)


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom > 0 else float("inf")


_IN_FLIGHT = "in flight"
_RSS = "rss"


def overload_targets(
    info: RunInfo, latencies: Mapping[str, Latency], overload: Overload
) -> dict[str, list[Target]]:
    crowd = overload.pressures[OVERLOAD_CROWD]
    ask = latencies[BARE_ASK]
    slots = info.overload_slots
    drift = max(max(p.gauge_max - slots, slots - p.gauge_min) for p in overload.pressures.values())
    return {
        OVERLOAD_CROWD: [
            Target(
                f"p99 <= {OVERLOAD_P99_LIMIT:g}x ask p50 (a few ms)",
                _ratio(crowd.p99_us, ask.p50_us),
                OVERLOAD_P99_LIMIT,
            )
        ],
        _IN_FLIGHT: [Target(f"exactly {slots} throughout: nothing queued", drift, 0)],
        _RSS: [Target("growth <= 5 MiB", overload.rss_growth_kib, RSS_GROWTH_LIMIT_KIB)],
    }


def _overload_table(
    latencies: Mapping[str, Latency], overload: Overload, targets: Mapping[str, list[Target]]
) -> list[str]:
    ask = latencies[BARE_ASK]
    alone = {
        OVERLOAD_CROWD: overload.pressures[OVERLOAD_SOLO],
        OVERLOAD_CROWD_QUIET: overload.pressures[OVERLOAD_SOLO_QUIET],
    }
    lines = [
        "| Load (full bulkhead) | rejected asks/s | p50 µs | p99 µs | p99.9 µs | max µs"
        " | p99 ÷ 1 caller's p99 | p99 ÷ ask p50 | rejected | not rejected"
        " | Target (issue) | Result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, p in overload.pressures.items():
        labels, verdicts = _targets_cell(targets.get(name, []))
        solo = alone.get(name, p)
        lines.append(
            f"| {name} | {p.per_second:,.0f} | {_span(p.p50_us)} | {_span(p.p99_us)}"
            f" | {_span(p.p999_us)} | {_span(p.max_us)} | {_x(_ratio(p.p99_us, solo.p99_us))}"
            f" | {_x(_ratio(p.p99_us, ask.p50_us))} | {rejected(p):,} | {p.asks - rejected(p):,}"
            f" | {labels} | {verdicts} |"
        )
    return lines


def _overload_checks(overload: Overload, targets: Mapping[str, list[Target]]) -> list[str]:
    pressures = overload.pressures.values()
    low = min(p.gauge_min for p in pressures)
    high = max(p.gauge_max for p in pressures)
    readings = sum(p.gauge_readings for p in pressures)
    rss = overload.rss_kib
    flight_labels, flight_verdicts = _targets_cell(targets[_IN_FLIGHT])
    rss_labels, rss_verdicts = _targets_cell(targets[_RSS])
    return [
        "| Check | Reached | Target (issue) | Result |",
        "|---|---|---|---|",
        "| Calls in flight on each key (`health(key).in_flight`), read every 20 ms during"
        f" every run and after it | {low} to {high} over {readings:,} readings"
        f" | {flight_labels} | {flight_verdicts} |",
        f"| Resident set growth, end of phase 1 to end of phase {overload.phases}"
        f" ({overload.rss_source}) | {overload.rss_growth_kib:+,} KiB ({rss[1]:,} →"
        f" {rss[-1]:,} KiB; {rss[0]:,} KiB after the warm-up) | {rss_labels}"
        f" | {rss_verdicts} |",
    ]


def _per_ask(p: Pressure) -> float:
    """Wall time per answered ask, in µs, all callers together (1 ÷ asks/s)."""
    return _ratio(1e6, p.per_second)


def _written_note(logged: Sequence[Pressure], quiet: Sequence[Pressure]) -> list[str]:
    """How much the logged key's runs wrote (to /dev/null), against the filtered key's."""
    if any(p.written is None for p in (*logged, *quiet)):
        return []
    wrote = sum(p.written or 0 for p in logged)
    asks = sum(p.asks for p in logged)
    seconds = sum(p.seconds for p in logged)
    per_ask = _ratio(wrote, asks)
    lines = (
        "about one rendered line per rejection"
        if per_ask >= 20
        else "far fewer rendered lines than rejections (the library throttles"
        " `command.rejected` and reports how many it held back)"
    )
    return [
        f"- Written by the process during the logged key's runs (`/proc/self/io` wchar, all"
        f" to /dev/null): {wrote:,} bytes in {seconds:.1f} s, {per_ask:.2f} per rejected ask:"
        f" {lines}; during the filtered key's runs: {sum(p.written or 0 for p in quiet):,}"
        " bytes."
    ]


def _overload_notes(
    info: RunInfo, latencies: Mapping[str, Latency], overload: Overload
) -> list[str]:
    crowd = overload.pressures[OVERLOAD_CROWD]
    solo = overload.pressures[OVERLOAD_SOLO]
    quiet_crowd = overload.pressures[OVERLOAD_CROWD_QUIET]
    quiet_solo = overload.pressures[OVERLOAD_SOLO_QUIET]
    ask = latencies[BARE_ASK]
    limit_ms = OVERLOAD_P99_LIMIT * ask.p50_us / 1000
    needed = 1e3 * crowd.callers / limit_ms
    notes = [
        f"- The target: {OVERLOAD_P99_LIMIT:g}x this run's bare pykka ask p50"
        f" ({_us(ask.p50_us)} µs, from the latency table) is {limit_ms:.1f} ms. By Little's"
        f" law, {crowd.callers} callers that never pause, answered {crowd.per_second:,.0f}"
        f" times a second, wait {crowd.fair_share_us / 1000:.1f} ms per ask on average"
        f" ({quiet_crowd.fair_share_us / 1000:.1f} ms for the filtered key). For even the"
        f" mean to fit in {limit_ms:.1f} ms, {needed:,.0f} rejections a second would be"
        f" needed, {_us(_ratio(1e6, needed))} µs of GIL time each; one caller alone gets"
        f" {solo.per_second:,.0f} a second ({quiet_solo.per_second:,.0f} for the filtered"
        f" key). The p99 under {crowd.callers} callers is"
        f" {_x(_ratio(crowd.p99_us, crowd.fair_share_us))} that mean: a few more rounds of"
        f" the GIL (switch interval {info.switch_interval_ms:g} ms), no caller starved. So the"
        " MISS says the interpreter cannot serve 200 never-pausing threads within a few"
        " milliseconds each; the figures below say what the rejection itself costs.",
        f"- Wall time per rejection, all callers together (1 ÷ asks/s):"
        f" {_us(_per_ask(crowd))} µs under {crowd.callers} callers against"
        f" {_us(_per_ask(solo))} µs for one caller alone"
        f" ({_x(_ratio(_per_ask(crowd), _per_ask(solo)))}); for the filtered key"
        f" {_us(_per_ask(quiet_crowd))} µs against {_us(_per_ask(quiet_solo))} µs"
        f" ({_x(_ratio(_per_ask(quiet_crowd), _per_ask(quiet_solo)))}). The difference is"
        f" {crowd.callers} threads handing the GIL and the key's locks to each other.",
        f"- What logging `command.rejected` costs, side by side: one caller's p50 is"
        f" {_us(solo.p50_us)} µs logged and {_us(quiet_solo.p50_us)} µs filtered out"
        f" ({solo.p50_us - quiet_solo.p50_us:+.2f} µs), p99 {_us(solo.p99_us)} against"
        f" {_us(quiet_solo.p99_us)} µs; under {crowd.callers} callers"
        f" {crowd.per_second:,.0f} rejections a second logged against"
        f" {quiet_crowd.per_second:,.0f} filtered out.",
        *_written_note((crowd, solo), (quiet_crowd, quiet_solo)),
    ]
    unserved = sum(p.outcomes.get(REJECTED_UNSERVED, 0) for p in overload.pressures.values())
    if unserved:
        total = sum(map(rejected, overload.pressures.values()))
        alone = sum(
            p.outcomes.get(REJECTED_UNSERVED, 0)
            for p in overload.pressures.values()
            if p.callers == 1
        )
        notes.append(
            f"- {unserved:,} of {total:,} rejections ({100 * unserved / total:.1f}%) were"
            " answered FALLBACK_REJECTION instead of the fallback's value (`ask` would raise"
            " `FallbackFailedError` for them): the key's 10 fallback slots"
            " (`fallback_max_concurrent`) were all taken. The fallback is a constant; but the"
            " slots are a `threading.BoundedSemaphore`, whose `acquire` and `release` both take"
            " an internal lock, and under many threads callers queue for that lock inside"
            f" `release()` while still holding their slot ({alone:,} of them with one"
            " caller alone)."
        )
    others = {
        label: count
        for p in overload.pressures.values()
        for label, count in p.outcomes.items()
        if label not in (REJECTED_SERVED, REJECTED_UNSERVED)
    }
    if others:
        listed = "; ".join(f"{label}: {count:,}" for label, count in sorted(others.items()))
        notes.append(f"- Answers that were not rejections: {listed}.")
    untimed = sum(p.asks - p.timed for p in overload.pressures.values())
    if untimed:
        notes.append(
            f"- {untimed:,} asks outran the sample buffer: counted, but only the latest asks"
            " of their run are in the percentiles."
        )
    return notes


def _overload_section(
    info: RunInfo, latencies: Mapping[str, Latency], overload: Overload
) -> list[str]:
    targets = overload_targets(info, latencies, overload)
    slots = info.overload_slots
    return [
        f"## Overload: {OVERLOAD_CALLERS} callers against a full bulkhead",
        "",
        f"Two keys with `max_concurrent_requests={slots}` have every slot held by a call"
        " waiting in `run` on an event set at the end (timeout 60 s, so none times out;"
        " `request_volume_threshold` out of reach, so the circuit stays closed although every"
        " rejection counts as an error: each ask is a bulkhead rejection, THREAD_POOL_REJECTED,"
        " answered on the caller's thread with the fallback's constant). Then"
        f" {OVERLOAD_CALLERS} caller threads ask one key with `registry.ask_reply` in a closed"
        " loop, each asking again as soon as it is answered, and in the same phases one caller"
        " alone asks the same full key. Every ask is timed with `time.perf_counter_ns`; every"
        ' answer is checked ("not rejected" counts any that was not a THREAD_POOL_REJECTED).'
        " A figure is the median over phases of that run's percentile; max is over all runs;"
        " asks/s counts every phase. The second key is the same, but its logger was built with"
        " warnings filtered out, so it never renders `command.rejected`: the two side by side"
        " give what logging rejections costs.",
        "",
        f"With {OVERLOAD_CALLERS} threads on {info.cores} cores a rejected ask's latency is"
        " mostly waiting for the GIL: CPython runs one thread's Python code at a time, and a"
        f" busy thread lets go of it every {info.switch_interval_ms:g} ms or when it blocks."
        f" {OVERLOAD_CALLERS} threads that never pause keep nearly all of them queued for it,"
        " so the mean wait per ask is the number of callers divided by the rejections per"
        " second (Little's law), whatever the library does. The issue's target, a p99 within"
        f" a few milliseconds, is written as at most {OVERLOAD_P99_LIMIT:g}x the bare pykka"
        " ask's p50 of the latency table (the yardstick of every ratio here); with callers"
        " that never pause it measures the interpreter's scheduling more than the library"
        ' (see the notes). The ratio to one caller alone ("÷ 1 caller\'s p99") is what'
        f" {OVERLOAD_CALLERS} threads add to the same rejection. What the library controls"
        " shows beside it: the wall time per rejection, that nothing queues (the calls in"
        " flight stay at the bulkhead's size) and that memory stays flat across phases.",
        "",
        *_overload_table(latencies, overload, targets),
        "",
        *_overload_checks(overload, targets),
        "",
        *_overload_notes(info, latencies, overload),
        "- structlog, as for the rest of the bench: `make_filtering_bound_logger(logging"
        ".WARNING)`, default processors (`ConsoleRenderer`), `PrintLoggerFactory` writing to"
        " /dev/null, so every `command.rejected` line the library emits is rendered; the"
        " filtered key's logger was built under `make_filtering_bound_logger(logging.ERROR)`,"
        f" otherwise the same. The overload part took {overload.seconds:.1f} s, garbage"
        " collector on.",
    ]


def render(
    info: RunInfo,
    latencies: Mapping[str, Latency],
    throughputs: Mapping[str, Throughput],
    overload: Overload,
) -> str:
    """The whole report as Markdown."""
    lines = [
        "# Performance",
        "",
        "Generated by `make bench` (`python -m benchmarks`); every figure below comes from one"
        " run.",
        "",
        f"- Date: {info.date}",
        f"- Python {info.python}, pykka {info.pykka}, pybreaker {info.pybreaker},"
        f" structlog {info.structlog}",
        f"- Machine: {info.cores} cores, {info.platform}",
        f"- Mode: {info.mode}; the run took {info.seconds:.1f} s",
        f"- Latency: {info.latency_plan}",
        f"- Throughput: {info.throughput_plan}",
        f"- Overload: {info.overload_plan}",
        "",
        "## How to read this",
        "",
        "The machine is shared and noisy, so absolute microseconds move from run to run; the"
        ' ratios to the bare pykka ask measured in the same run (columns "÷ ask") are the'
        " figures to compare. Each latency is the median, over interleaved rounds, of that"
        " round's p50 or p99 of single blocking calls from one caller thread (garbage collector"
        " off during the rounds, time taken with `time.perf_counter_ns`; each sample includes"
        f" about {info.timer_overhead_ns} ns of timing overhead, which is most of the bare"
        " function call's figure). A bare pykka ask is one round trip to an actor thread, the"
        " least any actor-based isolation can cost. The throughput rows count calls answered"
        " with the dependency's value per second, with 10 caller threads against a dependency"
        ' that sleeps 10 ms: at most 1,000 calls/s. "Target" is the issue\'s target for that'
        " row; PASS or MISS is what this run reached, unadjusted.",
        "",
        "A thread hand-off costs several times more when the machine is idle than when it is"
        " busy (an idle core first has to wake up): on this 2-core machine a bare pykka ask"
        " measured about 30-45 µs with another process keeping the cores busy and 120-150 µs"
        " with the machine idle. So the absolute figures below swing with the machine's load;"
        " the ratios, measured side by side, hold.",
        "",
        "## Latency of one call",
        "",
        *_latency_table(latencies),
        "",
        "## Throughput against a 10 ms dependency",
        "",
        *_throughput_table(throughputs),
        "",
        *_overload_section(info, latencies, overload),
        "",
        "## Notes",
        "",
        f"- {info.pybreaker_note}",
        *_ceiling_note(info, throughputs),
        "- The hand-rolled version submits `breaker.call(dependency, payload)` to the pool and"
        " waits with `future.result(timeout=1.0)` inside try/except that returns the fallback;"
        ' the "no breaker" row is the same pool without pybreaker, to show what the breaker'
        " itself costs under concurrency.",
        "- Our short-circuit and rejection paths are answered on the caller's thread (no actor"
        " hop). structlog is configured with `make_filtering_bound_logger(logging.WARNING)`"
        " writing to /dev/null, so debug events cost nothing but the rejection path's"
        " `command.rejected` warning is rendered (default processors) whenever the library"
        " emits it (it throttles that warning: see the overload notes).",
        "",
    ]
    return "\n".join(lines)
