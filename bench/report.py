"""The Markdown report: one row per setup, then the ratios against their
targets; then the A2A hand-off rows (round trips and their targets, then
streams); then the memory mirror rows and theirs."""

import statistics
from dataclasses import dataclass, field

from wrk import Result


@dataclass
class Row:
    key: str  # "a", "a-wasm", "b", "b-sign", "b-sign-es256", "c", "c-did", "d-off" or "d-on"
    setup: str
    alg: str
    cache: str
    result: Result | None = None
    error: str | None = None


@dataclass
class A2aRow:
    key: str  # "a2a-sqlite", "a2a-pg", "a2a-stream-sqlite" or "a2a-stream-pg"
    store: str
    streaming: bool = False  # SendStreamingMessage streams, not SendMessage round trips
    result: Result | None = None
    error: str | None = None
    workers: int | None = None  # Envoy's --concurrency as the launcher chose it
    checked: str | None = None  # what the completed-task count found
    probes: list = field(default_factory=list)  # (first event µs, stream end µs) per probe (streaming)

    @property
    def setup(self):
        return "A2A SendStreamingMessage stream" if self.streaming else "A2A SendMessage round trip"

    def probe_percentile(self, which, q):
        """The q-th quantile (nearest rank) of the probes' first-event (0)
        or stream-end (1) times, in µs."""
        ordered = sorted(p[which] for p in self.probes)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class MemSample:
    """One run of a memory row's stack."""

    result: Result
    ttfb_us: list  # time to first body byte of each sequential probe
    counters: dict | None = None  # the filter's memory counters after the drain (mirror on)
    engine: tuple | None = None  # (chat requests received, replies finished) by the engine
    answered: int | None = None  # exchanges the bench read whole
    in_flight: int | None = None  # requests wrk may have abandoned at its stops
    measured_events: int | None = None  # events sent for the measured load
    events_per_s: float | None = None
    drain_s: float | None = None  # from wrk's end until the queue was empty
    store: dict | None = None  # what the store holds afterwards (memory.store_counts)

    def ttfb_median(self):
        return statistics.median(self.ttfb_us)

    def ttfb_p90(self):
        ordered = sorted(self.ttfb_us)
        return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


@dataclass
class MemRow:
    key: str  # "mem-off" or "mem-on"
    mirror: bool
    setup: str
    samples: list = field(default_factory=list)
    error: str | None = None
    workers: int | None = None

    @property
    def result(self):
        """The median over the samples of each wrk figure; None when a
        sample failed or none ran."""
        if self.error or not self.samples:
            return None
        rs = [s.result for s in self.samples]
        return Result(
            rps=statistics.median(r.rps for r in rs),
            p50_us=statistics.median(r.p50_us for r in rs),
            p99_us=statistics.median(r.p99_us for r in rs),
            requests=sum(r.requests for r in rs),
            non_2xx=sum(r.non_2xx for r in rs),
            socket_errors=sum(r.socket_errors for r in rs),
            output="",
        )

    def ttfb(self):
        """(median, p90) over the samples of their TTFB median and p90 (µs)."""
        if self.result is None:
            return None, None
        return (
            statistics.median(s.ttfb_median() for s in self.samples),
            statistics.median(s.ttfb_p90() for s in self.samples),
        )


@dataclass
class BurstRound:
    """One burst against one user's budget."""

    spent: int  # tokens the engine reported for the admitted replies
    admitted: int
    refused: int
    short_by: int  # the most an admitted request cost over its reservation


@dataclass
class BudgetRow:
    key: str  # "budget-off", "budget-on" or "budget-burst"
    setup: str
    budget: bool
    burst: bool = False
    samples: list = field(default_factory=list)  # wrk Results (cost rows)
    rounds: list = field(default_factory=list)  # BurstRounds (the burst row)
    error: str | None = None
    workers: int | None = None

    @property
    def result(self):
        """The median over the samples of each wrk figure (cost rows); for
        the burst, None unless a round ran; None when a sample failed."""
        if self.error:
            return None
        if self.burst:
            return self.rounds or None
        if not self.samples:
            return None
        return Result(
            rps=statistics.median(r.rps for r in self.samples),
            p50_us=statistics.median(r.p50_us for r in self.samples),
            p99_us=statistics.median(r.p99_us for r in self.samples),
            requests=sum(r.requests for r in self.samples),
            non_2xx=sum(r.non_2xx for r in self.samples),
            socket_errors=sum(r.socket_errors for r in self.samples),
            output="",
        )


@dataclass
class Target:
    """`measured` must be >= (at_least=True) or <= `bound`; > or < when strict."""

    bound: float
    at_least: bool
    strict: bool = False

    def describe(self, fmt):
        sign = (">" if self.at_least else "<") if self.strict else ("≥" if self.at_least else "≤")
        return f"{sign} {fmt(self.bound)}"

    def verdict(self, measured):
        if measured is None:
            return "MISS (not measured)"
        if self.at_least:
            ok = measured > self.bound if self.strict else measured >= self.bound
        else:
            ok = measured < self.bound if self.strict else measured <= self.bound
        return "PASS" if ok else "MISS"


def _find(rows, key, alg=None):
    for row in rows:
        if row.key == key and (alg is None or row.alg == alg) and row.result is not None:
            return row.result
    return None


def added_us(result, baseline):
    """Extra time per request over the baseline, from throughput (µs)."""
    if result is None or baseline is None:
        return None
    return 1e6 / result.rps - 1e6 / baseline.rps


def _ratio(num, den):
    if num is None or den is None or den <= 0:
        return None
    return num / den


def _plain(x):
    return f"{x:.2f}"


def _times(x):
    return f"{x:.2f}x"


def _cell(value, fmt):
    return "n/a" if value is None else fmt(value)


def results_table(rows):
    baseline = _find(rows, "a")
    lines = [
        "| Setup | Alg | Token cache | Requests/s | p50 (µs) | p99 (µs) | Added µs/request vs (a) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        r = row.result
        if r is None:
            lines.append(f"| {row.setup} | {row.alg} | {row.cache} | FAILED | | | |")
            continue
        flag = " ⚠" if r.problems() else ""
        added = "—" if row.key == "a" else _cell(added_us(r, baseline), lambda x: f"{x:+.1f}")
        lines.append(
            f"| {row.setup} | {row.alg} | {row.cache} | {r.rps:,.0f}{flag} | "
            f"{r.p50_us:,.0f} | {r.p99_us:,.0f} | {added} |"
        )
    return lines


def ratios_table(rows, algs):
    a = _find(rows, "a")

    def rps(key, alg=None):
        found = _find(rows, key, alg)
        return found and found.rps

    checks = [
        (
            "b / a — throughput with the filter (cache hit, ES256) over plain Envoy",
            _ratio(rps("b", "ES256"), rps("a")),
            _plain,
            Target(0.80, True),
        ),
        (
            "a' / a — throughput with an empty proxy-wasm filter over plain Envoy (the floor for any wasm filter)",
            _ratio(rps("a-wasm"), rps("a")),
            _plain,
            None,
        ),
        (
            "b / a' — throughput with the filter (cache hit) over an empty wasm filter",
            _ratio(rps("b", "ES256"), rps("a-wasm")),
            _plain,
            None,
        ),
        (
            "b-sign / b — throughput with the signed identity token on every request over without it",
            _ratio(rps("b-sign", "ES256"), rps("b", "ES256")),
            _plain,
            None,
        ),
        (
            "b-sign-es256 / b-sign — throughput with the token signed with ES256 over Ed25519",
            _ratio(rps("b-sign-es256", "ES256"), rps("b-sign", "ES256")),
            _plain,
            None,
        ),
        (
            "b / d (cache on, ES256) — throughput over jwt_authn with its cache",
            _ratio(rps("b", "ES256"), rps("d-on", "ES256")),
            _plain,
            Target(0.90, True),
        ),
    ]
    for alg in algs:
        checks.append(
            (
                f"c / d (cache off, {alg}) — added cost of a full verification over jwt_authn's",
                _ratio(added_us(_find(rows, "c", alg), a), added_us(_find(rows, "d-off", alg), a)),
                _times,
                Target(3.0, False) if alg == "ES256" else None,
            )
        )
    lines = ["| Ratio | Measured | Target | |", "|---|---:|---:|---|"]
    for label, measured, fmt, target in checks:
        if target is None:
            lines.append(f"| {label} | {_cell(measured, fmt)} | — | |")
        else:
            lines.append(
                f"| {label} | {_cell(measured, fmt)} | {target.describe(fmt)} | {target.verdict(measured)} |"
            )
    return lines


def _ms(us):
    return f"{us / 1000:,.2f}"


def a2a_table(rows):
    lines = ["| Store | Tasks/s | p50 (ms) | p99 (ms) |", "|---|---:|---:|---:|"]
    for row in rows:
        r = row.result
        if r is None:
            lines.append(f"| {row.store} | FAILED | | |")
        else:
            lines.append(f"| {row.store} | {r.rps:,.0f} | {_ms(r.p50_us)} | {_ms(r.p99_us)} |")
    return lines


def stream_table(rows):
    lines = [
        "| Store | Streams/s | p50 (ms) | p99 (ms) | First event p50 (ms) | First event p99 (ms) "
        "| Stream end p50 (ms) | Stream end p99 (ms) | Probes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        r = row.result
        if r is None:
            lines.append(f"| {row.store} | FAILED | | | | | | | |")
            continue
        probe = [_ms(row.probe_percentile(which, q)) for which in (0, 1) for q in (0.5, 0.99)]
        lines.append(
            f"| {row.store} | {r.rps:,.0f} | {_ms(r.p50_us)} | {_ms(r.p99_us)} | {' | '.join(probe)} "
            f"| {len(row.probes):,} |"
        )
    return lines


def a2a_targets_table(rows):
    sqlite = _find(rows, "a2a-sqlite")
    checks = [
        ("SQLite ≥ 1,000 tasks/s", sqlite and sqlite.rps, lambda x: f"{x:,.0f} tasks/s", Target(1000, True)),
        ("p99 < 25 ms (SQLite)", sqlite and sqlite.p99_us / 1000, lambda x: f"{x:,.2f} ms", Target(25, False, True)),
    ]
    lines = ["| Target | Measured | |", "|---|---:|---|"]
    for label, measured, fmt, target in checks:
        lines.append(f"| {label} | {_cell(measured, fmt)} | {target.verdict(measured)} |")
    return lines


def _us(us):
    return f"{us:,.0f}"


def mem_table(rows):
    lines = [
        "| Setup | Req/s | p50 (ms) | p99 (ms) | TTFB median (µs) | TTFB p90 (µs) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        r = row.result
        if r is None:
            lines.append(f"| {row.setup} | FAILED | | | | |")
            continue
        median, p90 = row.ttfb()
        lines.append(
            f"| {row.setup} | {r.rps:,.0f} | {_ms(r.p50_us)} | {_ms(r.p99_us)} | {_us(median)} | {_us(p90)} |"
        )
    return lines


def ttfb_difference(rows):
    """(on − off TTFB median, spread of the off samples' medians), in µs."""
    off = next((r for r in rows if r.key == "mem-off" and r.result is not None), None)
    on = next((r for r in rows if r.key == "mem-on" and r.result is not None), None)
    if off is None or on is None:
        return None, None
    medians = [s.ttfb_median() for s in off.samples]
    return on.ttfb()[0] - off.ttfb()[0], max(medians) - min(medians)


def mem_targets_table(rows):
    off, on = _find(rows, "mem-off"), _find(rows, "mem-on")
    ratio = _ratio(on and on.rps, off and off.rps)
    lines = ["| Target | Measured | |", "|---|---:|---|"]
    lines.append(f"| on/off throughput ≥ 0.90 | {_cell(ratio, _plain)} | {Target(0.90, True).verdict(ratio)} |")
    diff, spread = ttfb_difference(rows)
    if diff is None:
        lines.append("| TTFB on − off, within noise | n/a | not measured |")
    else:
        if len(next(r for r in rows if r.key == "mem-off").samples) < 2:
            verdict = "noise unknown (one off sample)"
        else:
            verdict = "within noise" if abs(diff) <= spread else "outside noise"
        lines.append(
            f"| TTFB on − off, within noise | {diff:+,.0f} µs (off spread {spread:,.0f} µs) | {verdict} |"
        )
    mem_on = next((r for r in rows if r.key == "mem-on"), None)
    if mem_on is None or mem_on.result is None:
        lines.append("| events/s delivered, none lost | n/a | MISS (not measured) |")
    else:
        rate = statistics.median(s.events_per_s for s in mem_on.samples)
        events = sum(s.counters["sent"] for s in mem_on.samples)
        lines.append(
            f"| events/s delivered, none lost | {rate:,.0f} events/s, 0 of {events:,} lost | PASS |"
        )
    return lines


def budget_table(rows):
    cost = [r for r in rows if not r.burst]
    off = next((r.result for r in cost if r.key == "budget-off"), None)
    lines = [
        "| Setup | Req/s | p50 (ms) | p99 (ms) | Added µs/request vs off |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in cost:
        r = row.result
        if r is None:
            lines.append(f"| {row.setup} | FAILED | | | |")
            continue
        added = "—" if row.key == "budget-off" else _cell(added_us(r, off), lambda x: f"{x:+.1f}")
        lines.append(f"| {row.setup} | {r.rps:,.0f} | {_ms(r.p50_us)} | {_ms(r.p99_us)} | {added} |")
    return lines


def burst_table(rows, budget, connections):
    lines = [
        "| Burst | Rounds | Admitted per round (median) | Tokens spent / budget (median) | (max) | "
        "Short by (tokens/request) | Bound / budget |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if not row.burst:
            continue
        if row.result is None:
            lines.append(f"| {row.setup} | FAILED | | | | | |")
            continue
        ratios = [r.spent / budget for r in row.rounds]
        admitted = statistics.median(r.admitted for r in row.rounds)
        short = max(r.short_by for r in row.rounds)
        bound = (budget + connections * max(short, 0)) / budget
        lines.append(
            f"| {row.setup} | {len(row.rounds)} | {admitted:,.0f} | {statistics.median(ratios):.3f} | "
            f"{max(ratios):.3f} | {short} | {bound:.3f} |"
        )
    return lines


def _failure(out, label, error):
    out.append(f"- {label} FAILED:")
    out.append("")
    out.append("```")
    out.extend((error or "").splitlines())
    out.append("```")


def markdown(rows, a2a_rows, algs, notes, a2a_notes, machine, mem_rows=(), mem_notes=(), budget_rows=(),
             budget_notes=(), burst=(None, None)):
    out = ["## Benchmark", ""]
    if rows:
        out += [*results_table(rows), "", *ratios_table(rows, algs), ""]
        out += [f"- {n}" for n in notes]
        out.append("")
    if a2a_rows:
        out += ["### A2A hand-off", ""]
        round_trips = [r for r in a2a_rows if not r.streaming]
        streams = [r for r in a2a_rows if r.streaming]
        if round_trips:
            out += ["Completed A2A `SendMessage` round trips through the gateway, per task store.", ""]
            out += [*a2a_table(round_trips), "", *a2a_targets_table(round_trips), ""]
        if streams:
            out += [
                "A2A `SendStreamingMessage` streams through the gateway, each read to its end, per task "
                "store; the time to the first event and to the end of the stream from sequential "
                "streams sent during the load.",
                "",
            ]
            out += [*stream_table(streams), ""]
        out += [f"- {n}" for n in a2a_notes]
        out.append("")
    if mem_rows:
        out += ["### Memory mirror", ""]
        out += ["A streaming chat route through the gateway with the memory mirror off and on.", ""]
        out += [*mem_table(mem_rows), "", *mem_targets_table(mem_rows), ""]
        out += [f"- {n}" for n in mem_notes]
        out.append("")
    if budget_rows:
        out += ["### Token budgets", ""]
        if any(not r.burst for r in budget_rows):
            out += ["The streaming chat route through the gateway with no budget and with one.", ""]
            out += [*budget_table(budget_rows), ""]
        if any(r.burst for r in budget_rows):
            out += ["What a burst spends against one user's budget.", ""]
            out += [*burst_table(budget_rows, *burst), ""]
        out += [f"- {n}" for n in budget_notes]
        out.append("")
    out.append(f"- {machine}")
    problems = [(row, row.result.problems()) for row in rows if row.result and row.result.problems()]
    failed = [row for row in rows if row.result is None]
    a2a_failed = [row for row in a2a_rows if row.result is None]
    mem_failed = [row for row in mem_rows if row.result is None]
    budget_failed = [row for row in budget_rows if row.result is None]
    if problems or failed or a2a_failed or mem_failed or budget_failed:
        out.append("")
        out.append("### Problems")
        for row, what in problems:
            out.append(f"- ⚠ {row.setup} {row.alg}: {'; '.join(what)}")
        for row in failed:
            _failure(out, f"{row.setup} {row.alg}", row.error)
        for row in a2a_failed:
            _failure(out, f"{row.setup}, {row.store}", row.error)
        for row in mem_failed:
            _failure(out, f"Memory mirror, {row.setup}", row.error or "no sample ran")
        for row in budget_failed:
            _failure(out, f"Token budgets, {row.setup}", row.error or "no sample ran")
    return "\n".join(out) + "\n"
