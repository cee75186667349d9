"""The Markdown report: one row per setup, then the ratios against their targets."""

from dataclasses import dataclass

from wrk import Result


@dataclass
class Row:
    key: str  # "a", "a-wasm", "b", "c", "c-did", "d-off" or "d-on"
    setup: str
    alg: str
    cache: str
    result: Result | None = None
    error: str | None = None


@dataclass
class Target:
    """`measured` must be >= (at_least=True) or <= `bound`."""

    bound: float
    at_least: bool

    def describe(self, fmt):
        return ("≥ " if self.at_least else "≤ ") + fmt(self.bound)

    def verdict(self, measured):
        if measured is None:
            return "MISS (not measured)"
        ok = measured >= self.bound if self.at_least else measured <= self.bound
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


def markdown(rows, algs, notes):
    out = ["## Benchmark", "", *results_table(rows), "", *ratios_table(rows, algs), ""]
    out += [f"- {n}" for n in notes]
    problems = [(row, row.result.problems()) for row in rows if row.result and row.result.problems()]
    failed = [row for row in rows if row.result is None]
    if problems or failed:
        out.append("")
        out.append("### Problems")
        for row, what in problems:
            out.append(f"- ⚠ {row.setup} {row.alg}: {'; '.join(what)}")
        for row in failed:
            out.append(f"- {row.setup} {row.alg} FAILED:")
            out.append("")
            out.append("```")
            out.extend((row.error or "").splitlines())
            out.append("```")
    return "\n".join(out) + "\n"
