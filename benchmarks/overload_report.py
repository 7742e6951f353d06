"""The overload section of the report: our rejections beside a hand-rolled bulkhead's and a
null call's, under the same caller threads, with the issue's targets."""

from __future__ import annotations

from collections.abc import Mapping

from .cells import Target, ratio, span, targets_cell, us, x
from .overload import Overload, Pressure

__all__ = [
    "CONSTANT_RETURNED",
    "FALLBACK_REJECTED",
    "OVERLOAD_CALLERS",
    "OVERLOAD_CROWD",
    "OVERLOAD_CROWD_HAND",
    "OVERLOAD_CROWD_NULL",
    "OVERLOAD_CROWD_QUIET",
    "OVERLOAD_CROWD_WIDE",
    "OVERLOAD_P99_LIMIT",
    "OVERLOAD_SOLO",
    "OVERLOAD_SOLO_HAND",
    "OVERLOAD_SOLO_QUIET",
    "REJECTED_SERVED",
    "RSS_GROWTH_LIMIT_KIB",
    "overload_section",
    "overload_targets",
]

#: This many caller threads against a full bulkhead.
OVERLOAD_CALLERS = 200
OVERLOAD_CROWD = f"ours: {OVERLOAD_CALLERS} callers, `command.rejected` logged (defaults)"
OVERLOAD_CROWD_HAND = f"hand-rolled bulkhead: {OVERLOAD_CALLERS} callers"
OVERLOAD_CROWD_NULL = f"null call (returns a constant): {OVERLOAD_CALLERS} callers"
OVERLOAD_CROWD_QUIET = f"ours: {OVERLOAD_CALLERS} callers, `command.rejected` filtered out"
OVERLOAD_CROWD_WIDE = (
    f"ours: {OVERLOAD_CALLERS} callers, logged, `fallback_max_concurrent={OVERLOAD_CALLERS}`"
)
OVERLOAD_SOLO = "ours: 1 caller, `command.rejected` logged (defaults)"
OVERLOAD_SOLO_HAND = "hand-rolled bulkhead: 1 caller"
OVERLOAD_SOLO_QUIET = "ours: 1 caller, `command.rejected` filtered out"

#: What an answer was. A rejection answered with the fallback's value (ours or hand-rolled)
#: and the null call's constant are what each load should answer; ours may also refuse the
#: fallback for want of a fallback slot. Any other label counts as "other".
REJECTED_SERVED = "rejected, fallback served"
FALLBACK_REJECTED = "THREAD_POOL_REJECTED, FALLBACK_REJECTION"
CONSTANT_RETURNED = "constant returned"

#: Our rejection's p99 under the crowd, as a multiple of the hand-rolled bulkhead's.
OVERLOAD_P99_LIMIT = 2.0
#: How much the resident set may grow from the first overload phase to the last.
RSS_GROWTH_LIMIT_KIB = 5 * 1024

#: Each load's yardstick: the hand-rolled bulkhead under as many callers.
_HAND_ROLLED = {OVERLOAD_CALLERS: OVERLOAD_CROWD_HAND, 1: OVERLOAD_SOLO_HAND}
#: Loads without a fallback bulkhead (FALLBACK_REJECTION does not apply).
_BASELINES = frozenset({OVERLOAD_CROWD_HAND, OVERLOAD_SOLO_HAND, OVERLOAD_CROWD_NULL})
_IN_FLIGHT = "in flight"
_RSS = "rss"


def expected(p: Pressure) -> int:
    return p.outcomes.get(REJECTED_SERVED, 0) + p.outcomes.get(CONSTANT_RETURNED, 0)


def fallback_rejected(p: Pressure) -> int:
    return p.outcomes.get(FALLBACK_REJECTED, 0)


def _share(p: Pressure) -> float:
    """Percent of the answers that were FALLBACK_REJECTION."""
    return 100 * ratio(fallback_rejected(p), p.asks) if p.asks else 0.0


def overload_targets(overload: Overload, slots: int) -> dict[str, list[Target]]:
    pressures = overload.pressures
    crowd, hand = pressures[OVERLOAD_CROWD], pressures[OVERLOAD_CROWD_HAND]
    gauged = [p for p in pressures.values() if p.gauge_min is not None]
    drift = max(
        (max((p.gauge_max or 0) - slots, slots - (p.gauge_min or 0)) for p in gauged),
        default=0,
    )
    return {
        OVERLOAD_CROWD: [
            Target(
                f"p99 <= {OVERLOAD_P99_LIMIT:g}x hand-rolled bulkhead's p99",
                ratio(crowd.p99_us, hand.p99_us),
                OVERLOAD_P99_LIMIT,
            )
        ],
        _IN_FLIGHT: [Target(f"exactly {slots} throughout: nothing queued", drift, 0)],
        _RSS: [Target("growth <= 5 MiB", overload.rss_growth_kib, RSS_GROWTH_LIMIT_KIB)],
    }


def _table(overload: Overload, targets: Mapping[str, list[Target]]) -> list[str]:
    lines = [
        "| Load (bulkhead full) | answers/s | p50 µs | p99 µs | p99.9 µs | max µs"
        " | p50 ÷ hand-rolled | p99 ÷ hand-rolled | as expected | FALLBACK_REJECTION | other"
        " | Target (issue) | Result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, p in overload.pressures.items():
        labels, verdicts = targets_cell(targets.get(name, []))
        hand = overload.pressures[_HAND_ROLLED[p.callers]]
        refused = fallback_rejected(p)
        share = "n/a" if name in _BASELINES else f"{_share(p):.1f}% ({refused:,})"
        lines.append(
            f"| {name} | {p.per_second:,.0f} | {span(p.p50_us)} | {span(p.p99_us)}"
            f" | {span(p.p999_us)} | {span(p.max_us)} | {x(ratio(p.p50_us, hand.p50_us))}"
            f" | {x(ratio(p.p99_us, hand.p99_us))} | {expected(p):,} | {share}"
            f" | {p.asks - expected(p) - refused:,} | {labels} | {verdicts} |"
        )
    return lines


def _checks(overload: Overload, targets: Mapping[str, list[Target]]) -> list[str]:
    gauged = [p for p in overload.pressures.values() if p.gauge_min is not None]
    low = min(p.gauge_min or 0 for p in gauged) if gauged else "-"
    high = max(p.gauge_max or 0 for p in gauged) if gauged else "-"
    readings = sum(p.gauge_readings for p in gauged)
    rss = overload.rss_kib
    mmapped = (
        "; blocks of 128 KiB or more mmapped, so the bench's own sorting buffers come and go"
        if overload.large_blocks_mmapped
        else ""
    )
    flight_labels, flight_verdicts = targets_cell(targets[_IN_FLIGHT])
    rss_labels, rss_verdicts = targets_cell(targets[_RSS])
    return [
        "| Check | Reached | Target (issue) | Result |",
        "|---|---|---|---|",
        "| Calls in flight on each of our keys (`health(key).in_flight`), read every 20 ms"
        f" during every run and after it | {low} to {high} over {readings:,} readings"
        f" | {flight_labels} | {flight_verdicts} |",
        f"| Resident set growth, end of phase 1 to end of phase {overload.phases}"
        f" ({overload.rss_source}{mmapped}) | {overload.rss_growth_kib:+,} KiB ({rss[1]:,} →"
        f" {rss[-1]:,} KiB; {rss[0]:,} KiB after the warm-up) | {rss_labels}"
        f" | {rss_verdicts} |",
    ]


def _wait_note(pressures: Mapping[str, Pressure], switch_interval_ms: float) -> str:
    crowd, hand = pressures[OVERLOAD_CROWD], pressures[OVERLOAD_CROWD_HAND]
    null = pressures[OVERLOAD_CROWD_NULL]

    def wait(p: Pressure) -> str:
        return f"{p.per_second:,.0f}/s, a mean wait of {p.fair_share_us / 1000:.1f} ms"

    def tail(p: Pressure) -> str:
        return f"p99 {x(ratio(p.p99_us, p.fair_share_us))} that"

    return (
        f"- Little's law, {crowd.callers} callers: ours answered {wait(crowd)} ({tail(crowd)});"
        f" hand-rolled {wait(hand)} ({tail(hand)}); the null call {wait(null)}. The null call"
        " never lets go of the GIL, so each thread keeps it for a whole switch interval"
        f" ({switch_interval_ms:g} ms): its asks are answered at once (p99"
        f" {span(null.p99_us)} µs) or wait out every other thread's turn (max"
        f" {null.max_us / 1000:,.0f} ms). A rejection takes a lock (the semaphore's, our"
        " gate's); a thread that loses the GIL holding it makes the others block on it and"
        " hand the GIL on, which most likely spreads the waiting over many more asks: p99"
        f" {crowd.p99_us / 1000:,.1f} ms ours, {hand.p99_us / 1000:,.1f} ms hand-rolled."
    )


def _cost_note(pressures: Mapping[str, Pressure]) -> str:
    solo, quiet = pressures[OVERLOAD_SOLO], pressures[OVERLOAD_SOLO_QUIET]
    hand = pressures[OVERLOAD_SOLO_HAND]
    return (
        f"- The rejection itself, one caller alone: ours p50 {us(solo.p50_us)} µs logged,"
        f" {us(quiet.p50_us)} µs filtered out, against the hand-rolled bulkhead's"
        f" {us(hand.p50_us)} µs ({x(ratio(solo.p50_us, hand.p50_us))}); ours also asks the"
        " circuit breaker, records the rejection in the rolling window (health, metrics) and"
        " checks the `command.rejected` warning's throttle."
    )


def _fallback_note(pressures: Mapping[str, Pressure]) -> str:
    crowd, quiet = pressures[OVERLOAD_CROWD], pressures[OVERLOAD_CROWD_QUIET]
    wide = pressures[OVERLOAD_CROWD_WIDE]
    defaults = [p for p in pressures.values() if p.name not in _BASELINES and p is not wide]
    refused = sum(map(fallback_rejected, defaults))
    widened = (
        f"With `fallback_max_concurrent={OVERLOAD_CALLERS}`, as many fallback slots as caller"
        f" threads (each runs one fallback at a time), the third key had"
        f" {fallback_rejected(wide):,} of {wide.asks:,}."
    )
    if not refused:
        return (
            f"- FALLBACK_REJECTION: none of {sum(p.asks for p in defaults):,} rejections with"
            f" the default `fallback_max_concurrent=10`. {widened}"
        )
    return (
        f"- FALLBACK_REJECTION with the default `fallback_max_concurrent=10`: under"
        f" {crowd.callers} callers {_share(crowd):.2f}% of our rejections"
        f" ({fallback_rejected(crowd):,}; {_share(quiet):.2f}% on the filtered key) got no"
        " fallback value (`ask` raises `FallbackFailedError` for them; they are in the"
        " latencies). The fallback slots are a lock-free token list, so no caller queues for"
        " one; but a thread that loses the GIL between taking a token and giving it back keeps"
        " it through the other threads' turns, and when 10 do at once the rest are refused."
        f" Raising `fallback_max_concurrent` avoids it: {widened}"
    )


def _logging_note(overload: Overload) -> str:
    pressures = overload.pressures
    crowd, quiet = pressures[OVERLOAD_CROWD], pressures[OVERLOAD_CROWD_QUIET]
    logged = [p for p in pressures.values() if p.name in (OVERLOAD_CROWD, OVERLOAD_SOLO)]
    written = [p.written for p in logged]
    wrote = (
        ""
        if None in written
        else f" ({sum(w or 0 for w in written):,} bytes written by the logged key's runs,"
        f" {ratio(sum(w or 0 for w in written), sum(p.asks for p in logged)):.2f} per"
        " rejection: the library throttles the warning)"
    )
    untimed = sum(p.asks - p.timed for p in pressures.values())
    outran = (
        f" {untimed:,} asks outran the sample buffer: counted, but only each run's latest"
        " asks are in the percentiles."
        if untimed
        else ""
    )
    others = {
        label: count
        for p in pressures.values()
        for label, count in p.outcomes.items()
        if label not in (REJECTED_SERVED, CONSTANT_RETURNED, FALLBACK_REJECTED)
    }
    listed = "; ".join(f"{label}: {count:,}" for label, count in sorted(others.items()))
    other = f" Other answers: {listed}." if others else ""
    return (
        f"- The overload part configures structlog (warnings and above, rendered by"
        f" `ConsoleRenderer` to /dev/null; the quiet key's events dropped by a first"
        f" processor): `command.rejected` is rendered{wrote};"
        f" under {crowd.callers} callers {crowd.per_second:,.0f} rejections/s logged against"
        f" {quiet.per_second:,.0f} filtered out. The overload part took"
        f" {overload.seconds:.1f} s, garbage collector on.{outran}{other}"
    )


def overload_section(
    overload: Overload, *, cores: int, slots: int, switch_interval_ms: float
) -> list[str]:
    targets = overload_targets(overload, slots)
    n = OVERLOAD_CALLERS
    return [
        f"## Overload: {n} callers against a full bulkhead",
        "",
        f"Three keys of ours with `max_concurrent_requests={slots}` have every slot held by a"
        " call parked in `run` (timeout 60 s, circuit kept closed), so each ask is a bulkhead"
        " rejection answered on the caller's thread with the fallback's constant; the second"
        " key never renders `command.rejected` (its logger was built with warnings filtered"
        f" out), the third has `fallback_max_concurrent={n}`. The same caller threads, in the"
        " same interleaved phases, also ask the hand-rolled bulkhead a user would write"
        f" without us (a full `threading.BoundedSemaphore({slots})`: `acquire(blocking=False)`,"
        " the same fallback called with a `MaxConcurrencyError`, a small frozen result object)"
        f" and a null call (a function returning the constant). Each load is {n} threads asking"
        " in a closed loop, or one thread alone; a figure is the median over phases of each"
        f" run's percentile (max: over all runs). With {n} never-pausing threads on {cores}"
        " cores an ask's latency is mostly waiting for the GIL: by Little's law the mean wait"
        " is the callers divided by the answers per second, whatever is called. So our"
        " rejection is judged against the hand-rolled one under as many callers"
        ' ("÷ hand-rolled"), not against a fixed number of milliseconds.',
        "",
        *_table(overload, targets),
        "",
        *_checks(overload, targets),
        "",
        _wait_note(overload.pressures, switch_interval_ms),
        _cost_note(overload.pressures),
        _fallback_note(overload.pressures),
        _logging_note(overload),
    ]
