"""The token budget rows: the cost of a budget on the cache-hit streaming chat
route through the whole gateway (`attach run`), budget off and on in the
same run, and the overspend a 64-connection burst achieves against one
user's budget.

The engine is `attach-bench-agent --engine` (see memory.py): five content
frames and a final `done: true` frame with `prompt_eval_count` (ceil(request
body bytes / 4)) and `eval_count` (5). The memory mirror is off in every
row (`MEM_BACKEND=none`), so that the rows differ by the budget alone.

- budget-off / budget-on: wrk on `POST /api/chat` with one token (one user);
  on, the environment's form (`MAX_TOKENS_PER_MIN` far above what the load
  can spend, `WINDOW=60`): every request is reserved, settled and answered
  with the rate-limit headers, none refused. Samples alternate off, on, off,
  on, each with a fresh engine and `attach run`; a row reports the median.
- budget-burst: `MAX_TOKENS_PER_MIN` small, 64 connections released at
  once, each sending chats one after the other until refused; the tokens
  the engine reported for every admitted reply, over the budget. Each
  round is a fresh user (budgets are per user) on the same gateway.
"""

import http.client
import json
import re
import subprocess
import threading
import time
import uuid

import a2a
import envoy_setup as es
import memory
import wrk
from report import BudgetRow, BurstRound

NEVER_REFUSED = 10**12  # tokens per window: more than any load here spends
BURST_BUDGET = 2_000  # tokens per window for the burst
BURST_CONNECTIONS = 64
BURST_ROUNDS = 5
QUICK_BURST_ROUNDS = 2
BURST_NUM_PREDICT = 5  # what the engine writes: the reservation's output part is exact
ROUNDS = 3
QUICK_ROUNDS = 2
RATE_HEADERS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")
# A route's counters (not the per-model or per-user ones, which count the same requests again).
STAT = re.compile(r"^(?:wasmcustom\.)?attach_budget\.(?!model\.|user\.)(.+)\.(admitted|refused|tokens_in|tokens_out): (\d+)$")


def plan():
    """The rows in the order they are reported."""
    return [
        BudgetRow("budget-off", "budget off", False),
        BudgetRow("budget-on", "budget on (`MAX_TOKENS_PER_MIN`, `WINDOW=60`)", True),
        BudgetRow("budget-burst", f"burst: {BURST_CONNECTIONS} connections, {BURST_BUDGET:,} tokens", True,
                  burst=True),
    ]


def rounds_for(quick):
    return QUICK_ROUNDS if quick else ROUNDS


def burst_rounds_for(quick):
    return QUICK_BURST_ROUNDS if quick else BURST_ROUNDS


def gateway_env(workdir, envoy, wasm, issuer, engine_url, tokens):
    """A gateway without the memory mirror; with a budget of `tokens` per
    minute and user, or none (None)."""
    env = memory.gateway_env(workdir, envoy, wasm, issuer, engine_url, False)
    for name in ("MAX_TOKENS_PER_MIN", "WINDOW", "MAX_REQUEST_BYTES"):
        env.pop(name, None)
    env = {k: v for k, v in env.items() if not k.startswith("USAGE_")}
    if tokens is not None:
        env.update(MAX_TOKENS_PER_MIN=str(tokens), WINDOW="60")
    return env


def counters(admin):
    """{counter: value} of the budget's route counters, summed over routes."""
    status, _, body = es.get_unix(admin, "/stats?filter=attach_budget")
    if status != 200:
        raise es.SetupFailed(f"Envoy admin /stats answered {status}")
    found = {}
    for line in body.decode(errors="replace").splitlines():
        m = STAT.match(line.strip())
        if m:
            found[m.group(2)] = found.get(m.group(2), 0) + int(m.group(3))
    return found


def chat(conn, token, content, num_predict=None):
    """(status, headers, body) of one chat on a kept-alive connection."""
    body = {"model": "bench", "messages": [{"role": "user", "content": content}], "stream": True}
    if num_predict is not None:
        body["options"] = {"num_predict": num_predict}
    conn.request("POST", memory.CHAT_PATH, json.dumps(body, separators=(",", ":")), memory.chat_headers(token))
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def check_budget(gateway, admin, token, on):
    """On: an admitted chat carries the rate-limit headers and is counted.
    Off: none of either."""
    conn = http.client.HTTPConnection(es.HOST, gateway.port, timeout=10)
    try:
        status, headers, raw = chat(conn, token, "budget check")
    finally:
        conn.close()
    if status != 200:
        raise es.SetupFailed(f"{memory.CHAT_PATH} answered {status}: {raw[:300]!r}")
    present = [h for h in RATE_HEADERS if h in headers]
    if on and len(present) != len(RATE_HEADERS):
        raise es.SetupFailed(f"budget on, yet the reply carries {present} of {RATE_HEADERS}\n{gateway.log_tail()}")
    if not on and present:
        raise es.SetupFailed(f"budget off, yet the reply carries {present}")
    seen = counters(admin)
    if on and seen.get("admitted", 0) < 1:
        raise es.SetupFailed(f"budget on, yet Envoy counts no admitted request: {seen}")
    if not on and seen:
        raise es.SetupFailed(f"budget off, yet Envoy has budget counters: {seen}")


def start_stack(workdir, envoy, wasm, issuer, token, tokens):
    workdir.mkdir(parents=True)
    engine, gateway = memory.Engine(workdir), None
    try:
        engine.start()
        gateway = a2a.Gateway(workdir, gateway_env(workdir, envoy, wasm, issuer, engine.url, tokens))
        gateway.start()
        memory.first_exchange(gateway, token)
        gateway.children = a2a._descendants(gateway.proc.pid)
        return engine, gateway
    except BaseException:
        a2a.stop_all(gateway, engine, None)
        raise


def stop_stack(engine, gateway, failure):
    problems = a2a.stop_all(gateway, engine, None)
    if problems and failure is None:
        raise es.SetupFailed("\n".join(problems))


# -- the cost -------------------------------------------------------------------


def measure_cost(row, workdir, envoy, wasm, issuer, token, load, warmup_s):
    """One sample of budget-off or budget-on: a wrk Result."""
    script = workdir.parent / f"{workdir.name}.chat.lua"
    engine, gateway = start_stack(workdir, envoy, wasm, issuer, token, NEVER_REFUSED if row.budget else None)
    failure = None
    label = f"{row.key}-{uuid.uuid4().hex[:8]}"
    try:
        script.write_text(memory.CHAT_LUA)
        row.workers = gateway.envoy_concurrency()
        admin = memory.admin_port(gateway)
        check_budget(gateway, admin, token, row.budget)
        url = f"http://{es.HOST}:{gateway.port}{memory.CHAT_PATH}"
        sent = [f"{k}: {v}" for k, v in memory.chat_headers(token).items()]
        warm = wrk.run(url, load, sent, duration_s=warmup_s, script=script, script_args=[f"{label}-warmup"])
        before = counters(admin)
        result = wrk.run(url, load, sent, script=script, script_args=[f"{label}-measured"])
        problems = [f"warm-up: {p}" for p in warm.problems()] + result.problems()
        if problems:
            raise es.SetupFailed("wrk saw errors: " + "; ".join(problems) + "\n" + gateway.log_tail())
        if row.budget:
            after = counters(admin)
            admitted = after.get("admitted", 0) - before.get("admitted", 0)
            # wrk abandons up to one request per connection when it stops.
            if after.get("refused", 0) or admitted < result.requests:
                raise es.SetupFailed(
                    f"the budget should admit every request: {admitted:,} admitted, "
                    f"{after.get('refused', 0)} refused, wrk read {result.requests:,}"
                )
        return result
    except BaseException as e:
        failure = e
        raise
    finally:
        stop_stack(engine, gateway, failure)


# -- the burst ------------------------------------------------------------------


def burst_once(gateway, token, user_label, connections):
    """One round: every connection released at once, each chatting until
    refused. Returns a BurstRound."""
    start = threading.Barrier(connections, timeout=30)
    lock = threading.Lock()
    spent, admitted, refused, errors, short = [0], [0], [0], [], []

    def one(n):
        conn = http.client.HTTPConnection(es.HOST, gateway.port, timeout=30)
        try:
            start.wait()
            for i in range(10_000):
                content = f"{user_label}-{n}-{i}"
                status, headers, raw = chat(conn, token, content, BURST_NUM_PREDICT)
                if status == 429:
                    with lock:
                        refused[0] += 1
                    return
                if status != 200:
                    raise es.SetupFailed(f"burst chat answered {status}: {raw[:200]!r}")
                if any(h not in headers for h in RATE_HEADERS):
                    raise es.SetupFailed(f"an admitted chat without the rate-limit headers: {headers}")
                last = json.loads(raw.splitlines()[-1])
                cost = last["prompt_eval_count"] + last["eval_count"]
                with lock:
                    admitted[0] += 1
                    spent[0] += cost
                    short.append(cost - reservation(content))
        except Exception as e:  # reported with the round
            with lock:
                errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise es.SetupFailed(f"burst: {len(errors)} connection(s) failed, first: {errors[0]}")
    return BurstRound(spent=spent[0], admitted=admitted[0], refused=refused[0],
                      short_by=max(short) if short else 0)


def reservation(content):
    """The gateway's documented estimate of one burst chat: ceil(text bytes /
    4) + 4 for its one message, and num_predict."""
    return -(-len(content.encode()) // 4) + 4 + BURST_NUM_PREDICT


def measure_burst(row, workdir, envoy, wasm, issuer, idp_token, rounds):
    """Rounds of the burst, each as a fresh user, on one gateway."""
    engine, gateway = start_stack(workdir, envoy, wasm, issuer, idp_token(None), BURST_BUDGET)
    failure = None
    try:
        row.workers = gateway.envoy_concurrency()
        for n in range(rounds):
            user = f"burst-{uuid.uuid4().hex[:8]}"
            r = burst_once(gateway, idp_token(user), user, BURST_CONNECTIONS)
            row.rounds.append(r)
            # Reservations never overbook: past the budget goes at most the
            # shortfall of the requests in flight when it filled.
            bound = BURST_BUDGET + BURST_CONNECTIONS * max(r.short_by, 0)
            if r.spent > bound:
                raise es.SetupFailed(f"round {n + 1} spent {r.spent} tokens, past the bound {bound}")
    except BaseException as e:
        failure = e
        raise
    finally:
        stop_stack(engine, gateway, failure)


def run_rows(rows, tmp, envoy, wasm, issuer, token, idp_token, load, warmup_s, rounds, burst_rounds, report):
    """The cost rows in alternation (off, on, off, on, ...), then the burst;
    `report(row, sample or exception, n)` is told of each."""
    cost = [r for r in rows if not r.burst]
    for n in range(1, rounds + 1):
        for row in cost:
            if row.error:
                continue
            try:
                sample = measure_cost(row, tmp / f"{row.key}-{n}", envoy, wasm, issuer, token, load, warmup_s)
            except (es.SetupFailed, RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as e:
                row.error = str(e)
                report(row, e, n)
                continue
            row.samples.append(sample)
            report(row, sample, n)
    for row in rows:
        if not row.burst:
            continue
        try:
            measure_burst(row, tmp / row.key, envoy, wasm, issuer, idp_token, burst_rounds)
        except (es.SetupFailed, RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as e:
            row.error = str(e)
            report(row, e, 1)
            continue
        report(row, None, len(row.rounds))


def notes(load, warmup_s, rounds, burst_rounds, rows):
    workers = sorted({r.workers for r in rows if r.workers})
    worker_text = "/".join(str(w) for w in workers) or "?"
    cost = [
        f"Cost: `{load.describe()} -s chat.lua` against `attach run` on `POST {memory.CHAT_PATH}` (as for the "
        "memory mirror), one ES256 bearer token on every request (the verified-token cache is hit, and "
        "every request is the same user's, so each one changes the same shared ledger record). Off: no "
        f"budget. On: `MAX_TOKENS_PER_MIN={NEVER_REFUSED}` with `WINDOW=60`: each request's body is held "
        "until whole and estimated, reserved, answered with the three rate-limit headers, and settled from "
        "the reply's counts when it ends; none is refused. The memory mirror is off in both "
        f"(`MEM_BACKEND=none`); {rounds} samples per row, alternating, each with a fresh engine and "
        f"`attach run`, after an unreported {warmup_s} s warm-up; the table shows the medians.",
        "Added µs/request = 1e6/rps(on) − 1e6/rps(off), from the medians.",
    ]
    burst = [
        f"Burst: `MAX_TOKENS_PER_MIN={BURST_BUDGET}`, `WINDOW=60`; {BURST_CONNECTIONS} connections (Python "
        "threads, one keep-alive connection each) released together by a barrier, each sending streamed "
        f"chats with `options.num_predict: {BURST_NUM_PREDICT}` one after the other until its first 429. "
        "Spent: the engine's `prompt_eval_count + eval_count` of every admitted reply, as the client read "
        f"them. {burst_rounds} rounds on one gateway, each a fresh user.",
        "The engine counts a prompt as ceil(request body bytes / 4), the gateway's estimate as ceil(message "
        "text bytes / 4) + 4 per message: each reservation falls short of the real cost by the JSON "
        "around the message (short by: the most any admitted chat cost over its reservation). Reservations "
        "never overbook the budget, so what is spent past it is the shortfall of the requests in flight "
        f"when it filled: at most {BURST_CONNECTIONS} × short by (the bound).",
    ]
    out = (cost if any(not r.burst for r in rows) else []) + (burst if any(r.burst for r in rows) else [])
    out.append(f"Workers: the launcher's default, Envoy `--concurrency {worker_text}`.")
    for row in rows:
        if row.samples:
            out.append(f"{row.key} samples: req/s {', '.join(f'{s.rps:,.0f}' for s in row.samples)}.")
        for i, r in enumerate(row.rounds, start=1):
            out.append(
                f"{row.key} round {i}: {r.admitted} admitted, {r.refused} refused, {r.spent:,} tokens spent "
                f"of {BURST_BUDGET:,} ({r.spent / BURST_BUDGET:.3f}); reservations short by up to "
                f"{r.short_by} tokens."
            )
    return out


