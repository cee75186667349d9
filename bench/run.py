#!/usr/bin/env python3
"""Throughput and latency of the attach filter inside a real Envoy, next to
plain Envoy and Envoy's own `jwt_authn` filter verifying the same tokens;
then completed A2A `SendMessage` round trips and `SendStreamingMessage`
streams through the whole gateway (`attach run`) with the SQLite and the
PostgreSQL task store; then a streaming chat route through the gateway with
the memory mirror off and on, and with a token budget off and on, and the
overspend of a burst against a budget.

    python bench/run.py [--duration S] [--connections N] [--quick] [--only KEYS]

Prints a Markdown report and writes it to target/bench/results.md. Exits 1
when a setup could not be measured or saw errors under load.
"""

import argparse
import base64
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import a2a
import budget
import envoy_setup as es
import memory
import wrk
from did import DidSigner
from idp import AUDIENCE, IdentityProvider, Keys
from report import Row, markdown

REPO = Path(__file__).resolve().parent.parent
ALGS = ("ES256", "RS256", "EdDSA")
DID_ALGS = ("EdDSA", "ES256K")
IDP_CLUSTER = "bench_idp"
FILTER_CACHE_ENTRIES = 10_000
JWT_AUTHN_CACHE_SIZE = 100


def envoy_binary():
    if os.environ.get("ENVOY_BIN"):
        return Path(os.environ["ENVOY_BIN"])
    venv = REPO / ".venv/bin/envoy"
    return venv if venv.exists() else Path(shutil.which("envoy") or venv)


def wasm_file():
    return Path(os.environ.get("ATTACH_WASM") or REPO / "target/wasm32-wasip1/release/attach_filter.wasm")


def noop_wasm_file():
    return REPO / "target/wasm32-wasip1/release/attach_bench_noop.wasm"


def plan():
    """The rows in the order they are reported."""
    rows = [
        Row("a", "(a) Envoy, no filter", "—", "—"),
        Row("a-wasm", "(a') Envoy, empty proxy-wasm filter", "—", "—"),
        Row("b", "(b) attach filter", "ES256", f"hit (`cache_entries: {FILTER_CACHE_ENTRIES}`)"),
        Row(
            "b-sign",
            "(b) attach filter, signing `X-Attach-Identity`",
            "ES256",
            f"hit (`cache_entries: {FILTER_CACHE_ENTRIES}`)",
        ),
        Row(
            "b-sign-es256",
            "(b) attach filter, signing `X-Attach-Identity` with ES256",
            "ES256",
            f"hit (`cache_entries: {FILTER_CACHE_ENTRIES}`)",
        ),
    ]
    rows += [Row("c", "(c) attach filter", alg, "miss (`cache_entries: 0`)") for alg in ALGS]
    rows += [Row("c-did", "(c) attach filter, did:key DID-JWT", alg, "miss (`cache_entries: 0`)") for alg in DID_ALGS]
    rows += [Row("d-off", "(d) jwt_authn", alg, "off") for alg in ALGS]
    rows += [Row("d-on", "(d) jwt_authn", alg, f"on (`jwt_cache_size: {JWT_AUTHN_CACHE_SIZE}`)") for alg in ALGS]
    return rows


def run_order(rows):
    """Plain Envoy first, then per algorithm (b,) d cache on, c, d cache off:
    rows that are compared run back to back, so drift on the machine between
    them stays small."""
    within = ("a", "a-wasm", "b", "b-sign", "b-sign-es256", "d-on", "c", "c-did", "d-off")
    order = ALGS + tuple(a for a in DID_ALGS if a not in ALGS)
    return sorted(rows, key=lambda r: (order.index(r.alg) if r.alg in order else -1, within.index(r.key)))


def filters_for(row, idp, keys, wasm, noop_wasm):
    """(http filters, extra clusters) of a row's Envoy."""
    if row.key == "a":
        return [], []
    if row.key == "a-wasm":
        return [es.wasm_filter(noop_wasm, {})], []
    if row.key == "c-did":
        config = {"did": {"audiences": [AUDIENCE], "allow": ["did:key:*"]}, "cache_entries": 0}
        return [es.wasm_filter(wasm, config)], []
    if row.key in ("b", "b-sign", "b-sign-es256", "c"):
        config = {
            "providers": [{"issuer": idp.issuer, "audiences": [AUDIENCE]}],
            "clusters": {idp.issuer: IDP_CLUSTER},
            "cache_entries": 0 if row.key == "c" else FILTER_CACHE_ENTRIES,
        }
        if row.key in SIGNING_ALGS:
            config["signing_keys"] = signing_keys(SIGNING_ALGS[row.key])
            config["issuer"] = f"http://{es.HOST}"
        return [es.wasm_filter(wasm, config)], [es.static_cluster(IDP_CLUSTER, idp.port)]
    cache = JWT_AUTHN_CACHE_SIZE if row.key == "d-on" else None
    return [es.jwt_authn_filter(idp.issuer, AUDIENCE, keys.jwks_json(), cache)], []


# The rows whose filter signs, and the algorithm of its key.
SIGNING_ALGS = {"b-sign": "EdDSA", "b-sign-es256": "ES256"}
# What each algorithm's JWK says it is.
JWK_KTY = {"EdDSA": b'"kty":"OKP"', "ES256": b'"kty":"EC"'}


def signing_keys(alg):
    """A fresh gateway key set, as the launcher writes it
    (attach_contract::gateway_keys): one key of alg (an Ed25519 seed, or a
    P-256 private scalar), its kid the RFC 7638 thumbprint."""
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    if alg == "EdDSA":
        secret = os.urandom(32)
        public = Ed25519PrivateKey.from_private_bytes(secret).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        thumbprint = f'{{"crv":"Ed25519","kty":"OKP","x":"{b64(public)}"}}'
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        secret = key.private_numbers().private_value.to_bytes(32, "big")
        point = key.public_key().public_numbers()
        x, y = (b64(c.to_bytes(32, "big")) for c in (point.x, point.y))
        thumbprint = f'{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}'
    kid = b64(hashlib.sha256(thumbprint.encode()).digest())
    return json.dumps({"keys": [{"kid": kid, "alg": alg, "seed": b64(secret), "created": int(time.time())}]})


def check(row, envoy, token):
    """The setup must admit the token and refuse a request without one."""
    if row.key in ("a", "a-wasm"):
        envoy.wait_for_status(token, 200)
        return
    # Keys load asynchronously in the attach filter: wait for the first 200.
    _, headers = envoy.wait_for_status(token, 200)
    if row.key in ("b", "b-sign", "b-sign-es256", "c", "c-did") and "x-attach-user" not in headers:
        raise es.SetupFailed(f"200 without X-Attach-User; response headers: {headers}\n{envoy.log_tail()}")
    if row.key in SIGNING_ALGS:
        # The filter signs: it publishes the key it signs with.
        status, _, body = es.get(envoy.port, "/.well-known/jwks.json")
        if status != 200 or JWK_KTY[SIGNING_ALGS[row.key]] not in body:
            raise es.SetupFailed(f"no JWKS from a signing filter: {status} {body}\n{envoy.log_tail()}")
    envoy.wait_for_status(None, 401, timeout=5)


def measure(row, envoy, token, load, warmup_s):
    check(row, envoy, token)
    url = f"http://{es.HOST}:{envoy.port}/"
    headers = [f"Authorization: Bearer {token}"]
    wrk.run(url, load, headers, duration_s=warmup_s)
    result = wrk.run(url, load, headers)
    if row.key.startswith("d-"):
        # jwt_authn's own counters confirm its cache was used exactly when configured.
        hits = int(envoy.stats("jwt_authn.jwt_cache_hit").get("http.bench.jwt_authn.jwt_cache_hit", "-1"))
        if (hits > 0) != (row.key == "d-on"):
            raise es.SetupFailed(f"jwt_authn reported {hits} cache hits with its cache {row.cache}")
    return result


def envoy_version(binary):
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"/(\d+\.\d+\.\d+)/", out)
    return m.group(1) if m else "?"


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average():
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def notes(load, warmup_s, binary, wasm_bytes):
    return [
        f"Load: `{load.describe()}` against one Envoy per setup ({envoy_version(binary)}, "
        "`--concurrency 1 --disable-hot-restart`), route a `direct_response` 200, the same bearer "
        f"token on every request (also sent in (a)); each setup first runs an unreported {warmup_s} s warm-up.",
        "(b) signing `X-Attach-Identity` is (b) with a gateway key set (`signing_keys`, one Ed25519 key): "
        "every request let through also carries the identity JWT the gateway signs for its upstream, "
        "reused per user, session and audience until 15 s before it expires, so with one token a "
        "signature is made about once a minute and every other request reuses it. (b) signing with ES256 is the "
        "same with one P-256 key (`ATTACH_SIGNING_ALG=ES256`).",
        "(c) runs the attach filter with `cache_entries: 0`: the same token pays the full "
        "verification (signature and claims) on every request.",
        "(d) is Envoy's `envoy.filters.http.jwt_authn` with the same public keys inline (`local_jwks`), "
        "the same issuer and audience, `forward: true`; without and with `jwt_cache_config`.",
        "Added µs/request = 1e6/rps − 1e6/rps(a); with a single worker thread this is the CPU time "
        "each request costs on top of plain Envoy.",
        "Keys: RSA-2048 (RS256), P-256 (ES256), Ed25519 (EdDSA), all in one JWKS with distinct `kid`s.",
        f"`attach_filter.wasm`: {wasm_bytes} bytes.",
        "Rows run in the order (a), (a'), then per algorithm (b), (d) cache on, (c), (d) cache off, "
        "so that compared rows run back to back. DID rows use a fresh did:key identity per algorithm; "
        "jwt_authn has no DID (or ES256K) counterpart.",
    ]


def machine(load_before):
    return (
        f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
        f"wrk runs on the same machine; 1-minute load average {load_before} before the run, {load_average()} after."
    )


def missing_artifacts(rows, a2a_rows, binary, wasm, noop, mem_rows=(), budget_rows=()):
    """What the selected rows need and cannot find, one line each."""
    missing = []
    if not os.access(binary, os.X_OK):
        missing.append(f"envoy not found at {binary} (make venv, or set ENVOY_BIN)")
    if not wasm.is_file():
        missing.append(f"filter not built: {wasm} (cargo build --release --target wasm32-wasip1 -p attach-filter)")
    if any(r.key == "a-wasm" for r in rows) and not noop.is_file():
        missing.append(
            f"empty filter not built: {noop} (cargo build --release --target wasm32-wasip1 -p attach-bench-noop)"
        )
    if a2a_rows or mem_rows or budget_rows:
        missing += a2a.missing_binaries()
    return missing


def print_result(row, unit="req/s"):
    if row.result:
        r = row.result
        print(f"    {r.rps:,.0f} {unit}, p50 {r.p50_us:,.0f} µs, p99 {r.p99_us:,.0f} µs", file=sys.stderr, flush=True)


def print_probes(row):
    """A streaming row's probes as it finishes."""
    first, end = (row.probe_percentile(which, 0.5) / 1000 for which in (0, 1))
    print(
        f"    {len(row.probes):,} probes: first event p50 {first:,.2f} ms, stream end p50 {end:,.2f} ms",
        file=sys.stderr,
        flush=True,
    )


def print_sample(row, sample, n):
    """One memory sample as it finishes (or fails)."""
    if isinstance(sample, BaseException):
        print(f"    {row.key} #{n}: FAILED: {str(sample).splitlines()[0]}", file=sys.stderr, flush=True)
        return
    r = sample.result
    line = (
        f"    {row.key} #{n}: {r.rps:,.0f} req/s, p50 {r.p50_us:,.0f} µs, p99 {r.p99_us:,.0f} µs, "
        f"TTFB median {sample.ttfb_median():,.0f} µs"
    )
    if sample.events_per_s is not None:
        line += f", {sample.events_per_s:,.0f} events/s delivered"
    print(line, file=sys.stderr, flush=True)


def print_budget(row, sample, n):
    """A budget sample (a wrk Result), or the burst's rounds, as they finish (or fail)."""
    if isinstance(sample, BaseException):
        print(f"    {row.key} #{n}: FAILED: {str(sample).splitlines()[0]}", file=sys.stderr, flush=True)
    elif sample is not None:
        print(f"    {row.key} #{n}: {sample.rps:,.0f} req/s, p50 {sample.p50_us:,.0f} µs", file=sys.stderr, flush=True)
    else:
        for i, r in enumerate(row.rounds, start=1):
            print(
                f"    {row.key} round {i}: {r.admitted} admitted, {r.spent:,} tokens spent "
                f"({r.spent / budget.BURST_BUDGET:.3f} of the budget)",
                file=sys.stderr,
                flush=True,
            )


def failed(row, e):
    row.error = str(e)
    print(f"    FAILED: {str(e).splitlines()[0]}", file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, help="seconds per measured row (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--warmup", type=int, help="seconds of unreported warm-up per setup (default 2)")
    parser.add_argument("--quick", action="store_true", help="2 s rows and 1 s warm-ups, for a smoke check")
    parser.add_argument(
        "--only",
        help="comma-separated row keys to run (a, a-wasm, b, b-sign, b-sign-es256, c, c-did, d-off, d-on, a2a-sqlite, a2a-pg, "
        "a2a-stream-sqlite, a2a-stream-pg, mem-off, mem-on; mem for both; budget-off, budget-on, budget-burst; "
        "budget for all three), for profiling",
    )
    parser.add_argument(
        "--mem-rounds",
        type=int,
        help=f"samples per memory row, off and on alternating (default {memory.ROUNDS}; "
        f"{memory.QUICK_ROUNDS} with --quick)",
    )
    args = parser.parse_args()
    duration = args.duration or (2 if args.quick else 10)
    warmup_s = args.warmup or (1 if args.quick else 2)
    load = wrk.Load(args.threads, args.connections, duration)

    mem_rounds = args.mem_rounds or memory.rounds_for(args.quick)
    mem_probes = memory.probes_for(args.quick)

    budget_rounds, burst_rounds = budget.rounds_for(args.quick), budget.burst_rounds_for(args.quick)

    rows, a2a_rows, mem_rows, budget_rows = plan(), a2a.plan(), memory.plan(), budget.plan()
    if args.only:
        keep = set(args.only.split(","))
        if "mem" in keep:
            keep = (keep - {"mem"}) | {r.key for r in mem_rows}
        if "budget" in keep:
            keep = (keep - {"budget"}) | {r.key for r in budget_rows}
        unknown = keep - {r.key for r in rows + a2a_rows + mem_rows + budget_rows}
        if unknown:
            sys.exit(f"--only: no rows named {', '.join(sorted(unknown))}")
        rows = [r for r in rows if r.key in keep]
        a2a_rows = [r for r in a2a_rows if r.key in keep]
        mem_rows = [r for r in mem_rows if r.key in keep]
        budget_rows = [r for r in budget_rows if r.key in keep]

    binary, wasm, noop = envoy_binary(), wasm_file(), noop_wasm_file()
    missing = missing_artifacts(rows, a2a_rows, binary, wasm, noop, mem_rows, budget_rows)
    if missing:
        sys.exit("\n".join(missing))
    wrk.binary()

    load_before = load_average()
    keys = Keys(ALGS)
    idp = IdentityProvider(keys).start()
    total = len(rows) + len(a2a_rows) + len(mem_rows) + len(budget_rows)
    try:
        tokens = {alg: keys.token(alg, idp.issuer) for alg in ALGS}
        did_tokens = {alg: DidSigner(alg).token(AUDIENCE) for alg in DID_ALGS}
        with tempfile.TemporaryDirectory(prefix="attach-bench-") as tmp:
            # Every row loads the same module, even if it is rebuilt meanwhile.
            wasm = Path(shutil.copy(wasm, Path(tmp) / wasm.name))
            if any(r.key == "a-wasm" for r in rows):
                noop = Path(shutil.copy(noop, Path(tmp) / noop.name))
            wasm_bytes = wasm.stat().st_size
            for i, row in enumerate(run_order(rows)):
                print(f"[{i + 1}/{total}] {row.setup} {row.alg} {row.cache}", file=sys.stderr, flush=True)
                http_filters, clusters = filters_for(row, idp, keys, wasm, noop)
                envoy = es.Envoy(binary, Path(tmp) / f"row{i}", http_filters, clusters)
                try:
                    envoy.start()
                    if row.key == "c-did":
                        token = did_tokens[row.alg]
                    else:
                        token = tokens["ES256" if row.alg == "—" else row.alg]
                    row.result = measure(row, envoy, token, load, warmup_s)
                except (es.SetupFailed, RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                    failed(row, e)
                finally:
                    envoy.stop()
                print_result(row)
            for i, row in enumerate(a2a_rows, start=len(rows)):
                print(f"[{i + 1}/{total}] {row.setup}, {row.store}", file=sys.stderr, flush=True)
                try:
                    row.result = a2a.measure(
                        row, Path(tmp) / row.key, binary, wasm, idp.issuer, tokens["ES256"], load, warmup_s
                    )
                except (es.SetupFailed, RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as e:
                    failed(row, e)
                print_result(row, "streams/s" if row.streaming else "tasks/s")
                if row.result and row.probes:
                    print_probes(row)
            if mem_rows:
                first = len(rows) + len(a2a_rows) + 1
                names = ", ".join(r.key for r in mem_rows)
                print(
                    f"[{first}-{total}/{total}] memory mirror ({names}), {mem_rounds} round(s), alternating",
                    file=sys.stderr,
                    flush=True,
                )
                memory.run_rows(
                    mem_rows,
                    Path(tmp),
                    binary,
                    wasm,
                    idp.issuer,
                    tokens["ES256"],
                    load,
                    warmup_s,
                    mem_rounds,
                    mem_probes,
                    print_sample,
                )
            if budget_rows:
                first = len(rows) + len(a2a_rows) + len(mem_rows) + 1
                names = ", ".join(r.key for r in budget_rows)
                print(
                    f"[{first}-{total}/{total}] token budgets ({names}): {budget_rounds} round(s) of the cost, "
                    f"alternating; {burst_rounds} burst(s)",
                    file=sys.stderr,
                    flush=True,
                )
                budget.run_rows(
                    budget_rows,
                    Path(tmp),
                    binary,
                    wasm,
                    idp.issuer,
                    tokens["ES256"],
                    lambda sub: keys.token("ES256", idp.issuer, sub=sub) if sub else tokens["ES256"],
                    load,
                    warmup_s,
                    budget_rounds,
                    burst_rounds,
                    print_budget,
                )
    finally:
        idp.stop()

    text = markdown(
        rows,
        a2a_rows,
        ALGS,
        notes(load, warmup_s, binary, wasm_bytes),
        a2a.notes(load, warmup_s, a2a_rows),
        machine(load_before),
        mem_rows,
        memory.notes(load, warmup_s, mem_rounds, mem_probes, mem_rows),
        budget_rows,
        budget.notes(load, warmup_s, budget_rounds, burst_rounds, budget_rows),
        (budget.BURST_BUDGET, budget.BURST_CONNECTIONS),
    )
    out = REPO / "target/bench/results.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"(written to {out.relative_to(REPO)})", file=sys.stderr)
    bad = any(row.result is None or row.result.problems() for row in rows) or any(
        row.result is None for row in a2a_rows + mem_rows + budget_rows
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
