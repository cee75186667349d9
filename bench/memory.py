"""The memory mirror rows: a streaming chat route through the whole gateway
(`attach run`), with the mirror off (`MEM_BACKEND=none`) and on (the
default: events delivered to the companion service's `POST /mem/ingest`,
stored in SQLite).

The engine is `attach-bench-agent --engine`, which answers `POST /api/chat`
at once with Ollama NDJSON, one write per frame. Each sample starts its own
engine and its own `attach run` with a clean environment, checks the setup,
warms up, measures time to first byte with sequential requests, runs wrk,
checks that every exchange's two events reached the store (mirror on), and
stops everything again. Off and on samples alternate, round by round, and a
row reports the median of its samples.
"""

import http.client
import json
import re
import sqlite3
import subprocess
import time
import uuid

import a2a
import envoy_setup as es
import wrk
from report import MemRow, MemSample

ENGINE_ARGS = ["--engine"]
CHAT_PATH = "/api/chat"
REPLY_TEXT = "Hello from the bench engine."
ADMIN_BANNER = re.compile(r"\(envoy admin unix:(\S+)\)")
COUNTERS = ("enqueued", "sent", "failed", "dropped", "unreadable")
STAT_NAMES = {
    "enqueued": "wasmcustom.attach_memory_events_enqueued",
    "sent": "wasmcustom.attach_memory_events_sent",
    "failed": "wasmcustom.attach_memory_events_failed",
    "dropped": "wasmcustom.attach_memory_events_dropped",
    "unreadable": "wasmcustom.attach_memory_exchanges_unreadable",
}
DELIVERY_TIMEOUT_S = 30
POLL_S = 0.005
ROUNDS = 3
QUICK_ROUNDS = 2
TTFB_PROBES = 200
QUICK_TTFB_PROBES = 100
# Variables that would change either setup: none may leak in from the caller.
_MEMORY_VARS = ("MEM_", "WEAVIATE_")

# One streaming chat per request, each with its own content.
CHAT_LUA = wrk.numbered_post_script(
    """'{"model":"bench","messages":[{"role":"user","content":"%s-%d: how are you?"}],"stream":true}'""",
    "prefix, counter",
)


def plan():
    """The rows in the order they are reported."""
    return [
        MemRow("mem-off", False, "mirror off (`MEM_BACKEND=none`)"),
        MemRow("mem-on", True, "mirror on (service sink, SQLite)"),
    ]


def missing_binaries():
    return a2a.missing_binaries()


def rounds_for(quick):
    return QUICK_ROUNDS if quick else ROUNDS


def probes_for(quick):
    return QUICK_TTFB_PROBES if quick else TTFB_PROBES


# -- the stack ----------------------------------------------------------------


class Engine(a2a.Agent):
    """`attach-bench-agent --engine` on a free port."""

    def start(self):
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [str(a2a.AGENT), *ENGINE_ARGS],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            raise es.SetupFailed(f"attach-bench-agent --engine printed {line!r} instead of its URL")
        self.url = line
        self.port = int(line.rsplit(":", 1)[1])

    def stats(self):
        """(chat requests received, replies whose last frame was written)."""
        status, _, body = es.get(self.port, "/stats")
        if status != 200:
            raise es.SetupFailed(f"engine /stats answered {status}")
        found = json.loads(body)
        return found["requests"], found["finished"]


def gateway_env(workdir, envoy, wasm, issuer, engine_url, mirror):
    env = a2a.gateway_env(workdir, envoy, wasm, issuer, engine_url, None)
    env = {k: v for k, v in env.items() if not k.startswith(_MEMORY_VARS)}
    # No A2A agents: the service only stores what the mirror sends.
    env.pop("A2A_AGENTS", None)
    if not mirror:
        env["MEM_BACKEND"] = "none"
    return env


def admin_port(gateway):
    m = ADMIN_BANNER.search(gateway.stdout.read_text(errors="replace"))
    if not m:
        raise es.SetupFailed(f"no Envoy admin socket in the start-up banner\n{gateway.log_tail()}")
    return m.group(1)


def counters(port):
    """{enqueued, sent, failed, dropped, unreadable}; None when the filter
    defined no memory counters (mirror off)."""
    status, _, body = es.get_unix(port, "/stats?filter=attach_memory")
    if status != 200:
        raise es.SetupFailed(f"Envoy admin /stats answered {status}")
    values = {}
    for line in body.decode(errors="replace").splitlines():
        name, _, value = line.partition(":")
        values[name.strip()] = value.strip()
    if not any(name in values for name in STAT_NAMES.values()):
        return None
    return {key: int(values.get(name, "0")) for key, name in STAT_NAMES.items()}


def chat_body(content):
    return json.dumps(
        {"model": "bench", "messages": [{"role": "user", "content": content}], "stream": True},
        separators=(",", ":"),
    )


def chat_headers(token):
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def read_reply(resp):
    """The streamed reply's text; raises unless it is the engine's NDJSON."""
    raw = resp.read()
    if resp.status != 200:
        raise es.SetupFailed(f"{CHAT_PATH} answered {resp.status}: {raw[:300]!r}")
    ctype = resp.getheader("Content-Type") or ""
    if not ctype.startswith("application/x-ndjson"):
        raise es.SetupFailed(f"{CHAT_PATH} answered Content-Type {ctype!r}")
    frames = [json.loads(line) for line in raw.splitlines() if line.strip()]
    if not frames or frames[-1].get("done") is not True:
        raise es.SetupFailed(f"streamed reply without a final done frame: {raw[:300]!r}")
    return "".join((f.get("message") or {}).get("content", "") for f in frames)


def chat_once(port, token, content, timeout=10):
    conn = http.client.HTTPConnection(es.HOST, port, timeout=timeout)
    try:
        conn.request("POST", CHAT_PATH, chat_body(content), chat_headers(token))
        return read_reply(conn.getresponse())
    finally:
        conn.close()


def first_exchange(gateway, token):
    """One streamed chat must come back whole; the filter fetches its keys
    in the background, so early refusals are retried for a while."""
    deadline = time.monotonic() + a2a.START_TIMEOUT_S
    while True:
        try:
            text = chat_once(gateway.port, token, "setup check")
            if text != REPLY_TEXT:
                raise es.SetupFailed(f"streamed reply {text!r}, not {REPLY_TEXT!r}")
            return
        except (es.SetupFailed, OSError, http.client.HTTPException, ValueError) as e:
            if time.monotonic() > deadline:
                raise es.SetupFailed(f"no streamed chat through the gateway: {e}\n{gateway.log_tail()}") from None
            time.sleep(0.2)


def mem_events(gateway, token, limit):
    status, _, body = es.get(gateway.port, f"/mem/events?limit={limit}", token=token, timeout=10)
    if status != 200:
        raise es.SetupFailed(f"GET /mem/events answered {status}: {body[:300]!r}")
    return json.loads(body)["events"]


def wait_delivered(port, timeout=DELIVERY_TIMEOUT_S):
    """Polls the counters until every enqueued event is sent or dropped;
    returns (counters, monotonic time of the poll that saw it)."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        seen = counters(port)
        if seen is None or seen["sent"] + seen["dropped"] >= seen["enqueued"]:
            return seen, now
        if now > deadline:
            raise es.SetupFailed(f"events still undelivered {timeout}s after the load: {seen}")
        time.sleep(POLL_S)


def check_mirror(gateway, port, token, mirror):
    """Off: the filter has no memory counters. On: the setup exchange's two
    events reach the store and read back through the gateway."""
    seen = counters(port)
    if not mirror:
        if seen is not None:
            raise es.SetupFailed(f"MEM_BACKEND=none, yet the filter counts memory events: {seen}")
        return
    if seen is None:
        raise es.SetupFailed(f"mirror on, yet no memory counters in Envoy's stats\n{gateway.log_tail()}")
    seen, _ = wait_delivered(port)
    if seen["enqueued"] != 2 or seen["sent"] != 2:
        raise es.SetupFailed(f"the setup exchange should give 2 events sent: {seen}\n{gateway.log_tail()}")
    contents = {(e.get("kind"), e.get("content")) for e in mem_events(gateway, token, 2)}
    wanted = {("prompt", "setup check"), ("reply", REPLY_TEXT)}
    if contents != wanted:
        raise es.SetupFailed(f"GET /mem/events found {contents}, not {wanted}")


# -- time to first byte -------------------------------------------------------


def ttfb_probes(gateway, token, label, n):
    """Microseconds from sending each of n sequential chats (one keep-alive
    connection) until the first byte of the reply body."""
    conn = http.client.HTTPConnection(es.HOST, gateway.port, timeout=10)
    samples = []
    try:
        for i in range(n):
            body, headers = chat_body(f"{label}-{i}: how are you?"), chat_headers(token)
            t0 = time.perf_counter_ns()
            conn.request("POST", CHAT_PATH, body, headers)
            resp = conn.getresponse()
            first = resp.read1(1)
            t1 = time.perf_counter_ns()
            if not first:
                raise es.SetupFailed(f"probe {i}: empty reply body ({resp.status})")
            rest = first + resp.read()
            if resp.status != 200 or not rest.rstrip().endswith(b"}"):
                raise es.SetupFailed(f"probe {i}: {resp.status} {rest[:200]!r}")
            samples.append((t1 - t0) / 1000)
    finally:
        conn.close()
    return samples


# -- one sample ---------------------------------------------------------------


def store_counts(workdir):
    """What the service's SQLite store holds of the mirror: {rows (prompt and
    reply events), answered (replies with the engine's 200), whole (of
    those, the engine's full text), unanswered (replies without an upstream
    status), other (rows of any other kind)}."""
    path = workdir / "data" / "a2a.sqlite3"
    if not path.is_file():
        raise es.SetupFailed(f"no SQLite store at {path}")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    status = "json_extract(meta, '$.status')"
    queries = {
        "rows": "SELECT count(*) FROM memory_events WHERE kind IN ('prompt', 'reply')",
        "answered": f"SELECT count(*) FROM memory_events WHERE kind = 'reply' AND {status} = 200",
        "whole": f"SELECT count(*) FROM memory_events WHERE kind = 'reply' AND {status} = 200 AND content = ?",
        "unanswered": f"SELECT count(*) FROM memory_events WHERE kind = 'reply' AND {status} IS NULL",
        "other": "SELECT count(*) FROM memory_events WHERE kind NOT IN ('prompt', 'reply')",
    }
    try:
        return {
            key: db.execute(sql, (json.dumps(REPLY_TEXT),) if "?" in sql else ()).fetchone()[0]
            for key, sql in queries.items()
        }
    finally:
        db.close()


def check_store(sample, workdir):
    """The store against the counters and the engine: every event sent is
    a row, every exchange the engine answered has its reply stored (whole
    for every exchange the bench read whole), and the only other exchanges
    are those wrk abandoned when it stopped."""
    found = store_counts(workdir)
    sample.store = found
    c = sample.counters
    received, finished = sample.engine
    checks = {
        "store rows == sent": found["rows"] == c["sent"],
        "no rows of other kinds": found["other"] == 0,
        # The engine may have taken a request whose reply Envoy never saw
        # begin (wrk hung up first): that exchange is stored without a status.
        "stored 200 replies <= requests the engine received <= stored replies": found["answered"]
        <= received
        <= found["answered"] + found["unanswered"],
        "whole replies stored >= exchanges the bench read whole": found["whole"] >= sample.answered,
        "replies without a status <= requests in flight at wrk's stops": found["unanswered"] <= sample.in_flight,
        "2 × (200 replies + replies without a status) == enqueued": 2 * (found["answered"] + found["unanswered"])
        == c["enqueued"],
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise es.SetupFailed(
            f"store check failed ({', '.join(failed)}): store {found}, counters {c}, engine {received:,} "
            f"received / {finished:,} finished, bench {sample.answered:,} read whole"
        )


def load_and_check(row, gateway, engine, admin, token, load, warmup_s, probes, script, label):
    url = f"http://{es.HOST}:{gateway.port}{CHAT_PATH}"
    sent_headers = [f"{k}: {v}" for k, v in chat_headers(token).items()]
    warm = wrk.run(url, load, sent_headers, duration_s=warmup_s, script=script, script_args=[f"{label}-warmup"])
    if row.mirror:
        wait_delivered(admin)
    ttfb = ttfb_probes(gateway, token, f"{label}-ttfb", probes)
    before = wait_delivered(admin)[0] if row.mirror else None
    start = time.monotonic()
    result = wrk.run(url, load, sent_headers, script=script, script_args=[f"{label}-measured"])
    ended = time.monotonic()
    problems = [f"warm-up: {p}" for p in warm.problems()] + result.problems()
    if problems:
        raise es.SetupFailed("wrk saw errors: " + "; ".join(problems) + "\n" + gateway.log_tail())
    sample = MemSample(result=result, ttfb_us=ttfb)
    if not row.mirror:
        if counters(admin) is not None:
            raise es.SetupFailed("MEM_BACKEND=none, yet the filter counts memory events")
        return sample
    after, done_at = wait_delivered(admin)
    received, finished = engine.stats()
    # Exchanges the bench read whole: the setup check, the warm-up, the
    # probes and the measured load. wrk abandons up to one request per
    # connection when each of its two runs stops.
    sample.answered = 1 + warm.requests + probes + result.requests
    sample.in_flight = 2 * load.connections
    sample.counters = after
    sample.engine = (received, finished)
    sample.measured_events = after["sent"] - before["sent"]
    sample.events_per_s = sample.measured_events / (done_at - start)
    sample.drain_s = done_at - ended
    checks = {
        "dropped == 0": after["dropped"] == 0,
        "unreadable == 0": after["unreadable"] == 0,
        "sent == enqueued": after["sent"] == after["enqueued"],
        "enqueued == 2 × exchanges (engine's finished replies, up to those in flight)": 2 * finished
        <= after["enqueued"]
        <= 2 * (finished + sample.in_flight),
        "exchanges the bench read whole <= replies the engine finished": sample.answered <= finished <= received,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise es.SetupFailed(
            f"delivery check failed ({', '.join(failed)}): counters {after}, engine {received:,} received / "
            f"{finished:,} finished, bench {sample.answered:,} read whole\n{gateway.log_tail()}"
        )
    newest = mem_events(gateway, token, 1)
    if len(newest) != 1 or newest[0].get("kind") not in ("prompt", "reply"):
        raise es.SetupFailed(f"GET /mem/events?limit=1 after the load: {newest}")
    return sample


def measure(row, workdir, envoy, wasm, issuer, token, load, warmup_s, probes):
    """One sample of a row: its stack, load and checks, then the stack stopped
    and (mirror on) the store's rows counted; returns a MemSample or raises."""
    workdir.mkdir(parents=True)
    script = workdir / "chat.lua"
    script.write_text(CHAT_LUA)
    engine, gateway = Engine(workdir), None
    failure = None
    label = f"{row.key}-{uuid.uuid4().hex[:8]}"
    try:
        engine.start()
        gateway = a2a.Gateway(workdir, gateway_env(workdir, envoy, wasm, issuer, engine.url, row.mirror))
        gateway.start()
        admin = admin_port(gateway)
        first_exchange(gateway, token)
        gateway.children = a2a._descendants(gateway.proc.pid)
        row.workers = gateway.envoy_concurrency()
        check_mirror(gateway, admin, token, row.mirror)
        sample = load_and_check(row, gateway, engine, admin, token, load, warmup_s, probes, script, label)
    except BaseException as e:
        failure = e
        raise
    finally:
        problems = a2a.stop_all(gateway, engine, None)
        if problems and failure is None:
            raise es.SetupFailed("\n".join(problems))
    if row.mirror:
        check_store(sample, workdir)
    return sample


def run_rows(rows, tmp, envoy, wasm, issuer, token, load, warmup_s, rounds, probes, report):
    """Samples the rows in alternation (off, on, off, on, ...); a row whose
    sample fails stops there. `report(row, sample or exception, n)` is told
    of each sample."""
    for n in range(1, rounds + 1):
        for row in rows:
            if row.error:
                continue
            try:
                sample = measure(
                    row, tmp / f"{row.key}-{n}", envoy, wasm, issuer, token, load, warmup_s, probes
                )
            except (es.SetupFailed, RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as e:
                row.error = str(e)
                report(row, e, n)
                continue
            row.samples.append(sample)
            report(row, sample, n)


def notes(load, warmup_s, rounds, probes, rows):
    workers = sorted({r.workers for r in rows if r.workers})
    worker_text = "/".join(str(w) for w in workers) or "?"
    out = [
        f"Load: `{load.describe()} -s chat.lua` against `attach run` on `POST {CHAT_PATH}`, the "
        "same ES256 bearer token on every request (the filter's verified-token cache is hit), each "
        'request a small Ollama chat (`"stream": true`) with its own user message. Each sample first '
        f"runs an unreported {warmup_s} s warm-up.",
        "Engine: `attach-bench-agent --engine` (one thread, `TCP_NODELAY`) answers at once with "
        "`application/x-ndjson`, chunked: five content frames and a final `done: true` frame with "
        "`prompt_eval_count`/`eval_count`, each frame its own write (the body yields to the "
        "connection between frames; no sleep).",
        "Off: `MEM_BACKEND=none` (no memory section in the filter's configuration). On: the "
        "default, the companion service's `POST /mem/ingest` into its SQLite store (WAL, "
        "`synchronous = NORMAL`); the filter copies request and streamed reply, enqueues two events "
        "per exchange on a shared queue when it ends, and its root contexts post them in batches. "
        "Every other setting is the same, attach-a2a runs in both.",
        f"Workers: the launcher's default, Envoy `--concurrency {worker_text}`. Engine, attach-a2a, "
        "Envoy and wrk share this machine.",
        f"Samples: {rounds} per row, run in alternation (off, on, off, on, …), each with a fresh "
        "engine and a fresh `attach run`; the tables show the median over a row's samples of each "
        "figure (req/s, p50, p99, TTFB median, TTFB p90). on/off throughput = median req/s (on) / "
        "median req/s (off).",
        f"Time to first byte: {probes} sequential requests per sample on one keep-alive connection "
        "(Python `http.client`), after the warm-up and before the measured load, on an otherwise "
        "idle gateway: from sending the request to reading the first byte of the reply body. "
        "TTFB on − off is the difference of the rows' TTFB medians; it is called within noise "
        "when its size is at most the spread (max − min) of the per-sample TTFB medians of the off "
        "samples.",
        "Delivery check (on): after wrk stops, the counters are polled every "
        f"{POLL_S * 1000:.0f} ms until `sent + dropped ≥ enqueued` (at most {DELIVERY_TIMEOUT_S} s); "
        "then `dropped == 0`, `exchanges_unreadable == 0`, `sent == enqueued`, and `enqueued` is twice "
        "the replies the engine finished, plus at most one exchange per wrk connection abandoned "
        "when each of wrk's two runs stopped. `GET /mem/events?limit=1` through the gateway must "
        "answer an event. After the stack stopped, the SQLite store (`memory_events`) must hold one "
        "row per event sent; a reply with the engine's 200 for every request the engine received "
        "(the full reply text for at least every exchange the bench read whole); and besides those "
        "only exchanges without an upstream status (requests wrk abandoned before their reply "
        "began, mirrored as the prompt and an empty reply), at most one per connection per wrk run.",
        "Events/s delivered: events sent for the measured load / time from the start of the "
        "measured load to the poll that found every event delivered (the queue is drained before "
        "the measured load starts).",
    ]
    for row in rows:
        if row.samples:
            rps = ", ".join(f"{s.result.rps:,.0f}" for s in row.samples)
            ttfb = ", ".join(f"{s.ttfb_median():,.0f}" for s in row.samples)
            out.append(f"{row.key} samples: req/s {rps}; TTFB median µs {ttfb}.")
    on = next((r for r in rows if r.key == "mem-on" and r.samples), None)
    off = next((r for r in rows if r.key == "mem-off" and r.samples), None)
    if on and off:
        pairs = [f"{b.result.rps / a.result.rps:.3f}" for a, b in zip(off.samples, on.samples)]
        out.append(f"on/off per round (samples run back to back): {', '.join(pairs)}.")
    if on:
        for i, s in enumerate(on.samples, start=1):
            c = s.counters
            out.append(
                f"mem-on sample {i}: enqueued {c['enqueued']:,}, sent {c['sent']:,}, failed (retried) "
                f"{c['failed']:,}, dropped {c['dropped']}, unreadable {c['unreadable']}; engine "
                f"{s.engine[0]:,} received / {s.engine[1]:,} finished, bench {s.answered:,} read whole; "
                f"store rows {s.store['rows']:,}, 200 replies {s.store['answered']:,} "
                f"({s.store['whole']:,} whole), replies without a status {s.store['unanswered']}; "
                f"all delivered {s.drain_s * 1000:,.0f} ms after wrk stopped; {s.events_per_s:,.0f} events/s."
            )
    return out
