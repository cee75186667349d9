"""Token budgets end to end: the engine stand-in (engine.py) reports known
token counts behind `attach run`, and the budget configured as a user would
(ATTACH_CONFIG's budget section, or MAX_TOKENS_PER_MIN / WINDOW /
MAX_REQUEST_BYTES) must charge each exchange exactly what it cost, refuse
what does not fit before the engine sees it, and tell every client where
its budget stands.

Framings: Ollama's NDJSON stream (one JSON object per line, the last with
`done: true`, `prompt_eval_count` and `eval_count`; Ollama API docs,
"Generate a chat completion") and its `stream: false` object; OpenAI's
chat completion object with `usage`, and its server-sent events, where
usage comes only for `stream_options: {"include_usage": true}` (OpenAI API
reference, Chat Completions, stream_options). Refusals: 429 Too Many
Requests (RFC 6585 §4) with Retry-After in delay-seconds (RFC 9110
§10.2.3), OpenAI's x-ratelimit-*-tokens headers and its error object.

Every test spends as a user of its own (budgets are per user), and the
policy gives users of a name prefix their own windows, so one gateway
serves most tests; the env form, the hard stop and two replicas on one
PostgreSQL start gateways of their own.
"""

import http.client
import json
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

import httpc
from budgets import (
    LIMIT_HEADER,
    RATE_HEADERS,
    call,
    check_refusal,
    body_for,
    budget_stats,
    input_estimate,
    limit_entry,
    metric,
    probe,
    prometheus,
    rate_headers,
    reply_text,
    reservation,
    reset_ms,
    sse_data,
    text_tokens,
    usage_of,
    used_is,
    wait_usage,
    window_entry,
)
from engine import Engine
from httpc import read_until, unique
from netutil import HOST
from stack import launch_stack
from upstream import Upstream

LIMIT = 5000  # tokens per minute of any user without a rule of their own
TINY = 100  # tiny-*: tokens per minute
QUOTA = 60  # quota-*: tokens per day, answered 403 once spent
BURST = 1000  # burst-*: tokens per minute
DEFAULT_MAX_TOKENS = 64
SYNC_MS = 200
ADMIN = "root-admin"
JSON = {"Content-Type": "application/json"}

POLICY = {
    "windows": [{"seconds": 60, "tokens": LIMIT}],
    "users": [
        {"match": "tiny-*", "windows": [{"seconds": 60, "tokens": TINY}]},
        {"match": "quota-*", "windows": [{"seconds": 86400, "tokens": QUOTA, "status": 403}]},
        {"match": "burst-*", "windows": [{"seconds": 60, "tokens": BURST}]},
    ],
    "default_max_tokens": DEFAULT_MAX_TOKENS,
}
ENV = {"ATTACH_BUDGET_SYNC_MS": str(SYNC_MS), "ATTACH_ADMIN_USERS": ADMIN}


@pytest.fixture(scope="module")
def engine():
    with Engine() as e:
        yield e


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory, artifacts, engine):
    workdir = tmp_path_factory.mktemp("budgets")
    with launch_stack(workdir, a2a=True, upstream=engine, config={"budget": POLICY}, env=ENV,
                      concurrency=2) as s:
        s.engine = engine
        yield s


@pytest.fixture
def b(budgeted):
    budgeted.engine.reset()
    return budgeted


def direct(engine, path, data):
    """What the engine answers a client that talks to it directly."""
    return httpc.request(engine.port, "POST", path, JSON, data)


# -- charged exactly ------------------------------------------------------------------------

# (id, path, stream, include_usage, engine reports usage)
FRAMINGS = [
    ("ollama-ndjson", "/api/chat", None, None, True),
    ("ollama-json", "/api/generate", False, None, True),
    ("openai-json", "/v1/chat/completions", None, None, True),
    ("openai-sse-asked", "/v1/chat/completions", True, True, True),
    ("openai-sse-not-asked", "/v1/chat/completions", True, None, True),
    ("openai-completions-sse-not-asked", "/v1/completions", True, None, True),
    ("silent-ndjson", "/api/chat", None, None, False),
    ("silent-sse", "/v1/chat/completions", True, None, False),
    ("silent-json", "/v1/completions", False, None, False),
]


@pytest.mark.parametrize("path,stream,usage,reports", [f[1:] for f in FRAMINGS],
                         ids=[f[0] for f in FRAMINGS])
def test_each_exchange_is_charged_exactly_what_it_cost(b, path, stream, usage, reports):
    sub = unique("exact")
    # Frames of 16 bytes: a text estimate is the same whether it adds up
    # frames or the whole text.
    b.engine.reply, b.engine.chunks = "0123456789abcdef" * 3, 3
    b.engine.tokens, b.engine.report_usage = (13, 21), reports
    body = body_for(path, "count my tokens, please", stream=stream, usage=usage, max_tokens=200)
    data = json.dumps(body).encode()
    r = call(b, sub, path, data)
    assert r.status == 200, r
    # A fresh user: the reservation is all that is held.
    first = rate_headers(r)
    assert first["limit"] == LIMIT, first
    assert first["remaining"] == LIMIT - reservation(path, body, DEFAULT_MAX_TOKENS), first
    answer = b.engine.last()
    sent = b.engine.requests[-1]

    rewritten = path.startswith("/v1/") and stream is True and usage is None
    if rewritten:
        # The filter asked the engine for usage; everything else the client
        # wrote reaches the engine as it was.
        got = json.loads(sent.body)
        assert got.pop("stream_options") == {"include_usage": True}, got
        assert got == body
        # ...and the client reads the very stream the engine sends a client
        # that did not ask: no usage chunk, no "usage": null members.
        plain = direct(b.engine, path, data)
        assert plain.status == 200 and b"usage" not in plain.body, plain
        assert r.body == plain.body, "the client got another stream than it asked for"
    else:
        assert sent.body == data, "a request that needs no rewrite reaches the engine as sent"
        assert r.body == answer.body, "the reply reaches the client as the engine sent it"

    if reports:
        tokens_in, tokens_out = 13, 21
        if rewritten:
            assert answer.tokens == (13, 21), "the engine was asked for usage and reported it"
    else:
        # Nothing reported: the input estimate and ceil(reply text bytes / 4).
        assert answer.tokens is None
        tokens_in = input_estimate(body)
        tokens_out = text_tokens(len(reply_text(path, r.body).encode()))
        assert reply_text(path, r.body) == answer.text
    charged = tokens_in + tokens_out

    usage_now = wait_usage(b, sub, used_is(60, charged))
    assert usage_now["user"] == sub, usage_now
    limit = limit_entry(usage_now, 60)
    assert (limit["tokens"], limit["used"], limit["remaining"], limit["status"]) == (
        LIMIT, charged, LIMIT - charged, 429), usage_now
    window = window_entry(usage_now, 60)
    assert (window["tokens_in"], window["tokens_out"], window["requests"]) == (tokens_in, tokens_out, 1), window
    assert window["models"] == [
        {"model": "llama3.2", "tokens_in": tokens_in, "tokens_out": tokens_out, "requests": 1}
    ], window

    # The next response tells the client what is left: the limit less the
    # first exchange's real cost and this request's reservation.
    nxt = body_for("/api/chat", "and now?", stream=False, max_tokens=10)
    r2 = call(b, sub, "/api/chat", nxt)
    assert r2.status == 200, r2
    h = rate_headers(r2)
    assert h["limit"] == LIMIT
    assert h["remaining"] == LIMIT - charged - reservation("/api/chat", nxt, DEFAULT_MAX_TOKENS), (h, charged)


def test_the_reservation_default_and_num_predict_unlimited(b):
    """Without max_tokens, and with Ollama's num_predict -1 (unlimited), the
    output part of a reservation is default_max_tokens."""
    for path, body in (
        ("/v1/chat/completions", body_for("/v1/chat/completions", "no limit named")),
        ("/api/chat", body_for("/api/chat", "unlimited", stream=False, max_tokens=-1)),
    ):
        r = call(b, unique("default"), path, body)
        assert r.status == 200, r
        assert rate_headers(r)["remaining"] == LIMIT - input_estimate(body) - DEFAULT_MAX_TOKENS, r.headers


# -- over the budget -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
def test_over_the_budget_is_refused_with_429_before_the_engine(b, path):
    sub = unique("tiny")
    body = body_for(path, "fill", stream=False, max_tokens=80)
    spent = reservation(path, body, DEFAULT_MAX_TOKENS)
    b.engine.tokens = (input_estimate(body), 80)
    r = call(b, sub, path, body)
    assert r.status == 200, r
    assert rate_headers(r)["remaining"] == TINY - spent
    wait_usage(b, sub, used_is(60, spent))

    before = len(b.engine.requests)
    r = call(b, sub, path, body)
    headers, retry_after = check_refusal(r, 429)
    assert len(b.engine.requests) == before, "a refused request reached the engine"
    # What it would take: the limit, what is left of it, when it frees up.
    assert headers["limit"] == TINY and headers["remaining"] == TINY - spent, headers
    # The window holds the tokens for about a minute from when they were
    # spent (a sliding window counts them in slots of a 60th of it).
    assert 0 < reset_ms(headers["reset"]) <= 61_000, headers
    assert 1 <= retry_after <= 61, retry_after
    # A refusal names nothing of the gateway's workings.
    assert "attach" not in r.text.lower() and "wasm" not in r.text.lower(), r.text


def test_an_exhausted_long_quota_answers_403(b):
    sub = unique("quota")
    body = body_for("/api/chat", "spend the day", stream=False, max_tokens=40)
    spent = reservation("/api/chat", body, DEFAULT_MAX_TOKENS)
    b.engine.tokens = (input_estimate(body), 40)
    assert call(b, sub, "/api/chat", body).status == 200
    wait_usage(b, sub, used_is(86400, spent))
    before = len(b.engine.requests)
    r = call(b, sub, "/api/chat", body)
    headers, retry_after = check_refusal(r, 403)
    assert len(b.engine.requests) == before
    assert headers["limit"] == QUOTA and headers["remaining"] == QUOTA - spent, headers
    # Spent just now: it frees up about a day from now.
    day = 86_400
    assert day - 120 <= retry_after <= day + day // 60 + 1, retry_after
    assert (day - 120) * 1000 <= reset_ms(headers["reset"]) <= (day + day // 60 + 1) * 1000, headers


@pytest.mark.parametrize("path,allowance", [("/api/chat", TINY + 1), ("/v1/chat/completions", 10 * TINY)])
def test_a_request_whose_allowance_alone_exceeds_the_limit_never_reaches_the_engine(b, path, allowance):
    """max_tokens / num_predict is reserved: a request that could never fit
    is refused outright, without Retry-After (no wait would help)."""
    sub = unique("tiny")
    r = call(b, sub, path, body_for(path, "write a novel", stream=False, max_tokens=allowance))
    headers, _ = check_refusal(r, 429, retry=False)
    assert b.engine.requests == []
    assert headers["limit"] == TINY and headers["remaining"] == TINY, "nothing was spent"
    assert limit_entry(usage_of(b, sub), 60)["used"] == 0


def test_every_admitted_response_carries_the_rate_limit_headers(b):
    sub = unique("headers")
    for path, stream in (("/api/chat", None), ("/api/generate", False), ("/v1/chat/completions", True),
                         ("/v1/completions", None)):
        r = call(b, sub, path, body_for(path, "hello", stream=stream, max_tokens=16))
        assert r.status == 200, r
        h = rate_headers(r)
        assert h["limit"] == LIMIT and 0 < h["remaining"] < LIMIT, h
    # Other routes are not counted and carry none.
    r = b.get("/healthz", token=b.token(sub=sub))
    assert all(r.header(h) is None for h in RATE_HEADERS), r.headers


# -- a parallel burst ------------------------------------------------------------------------


def test_a_parallel_burst_spends_no_more_than_the_budget(b):
    """32 requests at once, each reserving 50 and costing 46: however the
    workers interleave, what the engine spent stays within the budget (the
    estimate never falls short here, so the bound is the budget itself), and
    the budget is used: every reservation that fits is admitted."""
    sub = unique("burst")
    body = body_for("/api/chat", "burst go", max_tokens=44)  # input 2 + 4
    res = reservation("/api/chat", body, DEFAULT_MAX_TOKENS)
    assert res == 50
    b.engine.tokens, b.engine.chunks, b.engine.pause = (6, 40), 4, 0.02
    token = b.token(sub=sub)
    data = json.dumps(body).encode()
    start = threading.Barrier(32)

    def one(_):
        start.wait()
        return call(b, sub, "/api/chat", data, token=token, timeout=30)

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(32)))
    admitted = [r for r in results if r.status == 200]
    refused = [r for r in results if r.status != 200]
    for r in refused:
        check_refusal(r, 429)
    for r in admitted:
        rate_headers(r)
    spent = sum(sum(a.tokens) for a in b.engine.answers)
    assert len(b.engine.requests) == len(admitted), "a refused request reached the engine"
    assert spent <= BURST, f"the burst spent {spent} of a budget of {BURST}"
    # 20 reservations of 50 fill the budget; with settlements in between (46
    # each) at most 21 fit.
    assert BURST // res <= len(admitted) <= BURST // 46, len(admitted)
    assert refused, "the burst was bigger than the budget"
    wait_usage(b, sub, used_is(60, spent))


# -- an abandoned stream ---------------------------------------------------------------------


def test_an_abandoned_stream_is_charged_for_what_passed(b):
    """The client goes away before the final line (which carries the counts):
    the stream is charged what passed, by its text, neither nothing nor the
    reservation."""
    sub = unique("abandon")
    b.engine.reply, b.engine.chunks, b.engine.tokens = "x" * 400, 10, (50, 300)
    b.engine.hold()
    body = body_for("/api/chat", "abandon me", max_tokens=500)
    conn = http.client.HTTPConnection(HOST, b.gateway.port, timeout=10)
    data = json.dumps(body).encode()
    conn.request("POST", "/api/chat", data, {"Content-Type": "application/json",
                                             "Authorization": f"Bearer {b.token(sub=sub)}"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert read_until(resp, b"\n").startswith(b"{")
    assert b.engine.first_sent.wait(5), "the engine never reached its last line"
    time.sleep(0.3)  # every content line has passed the gateway
    conn.close()
    time.sleep(0.2)
    b.engine.release()
    passed = input_estimate(body) + text_tokens(400)
    usage = wait_usage(b, sub, used_is(60, passed))
    used = limit_entry(usage, 60)["used"]
    assert used != 0 and used != reservation("/api/chat", body, DEFAULT_MAX_TOKENS), used
    assert used == passed, f"charged {used}, what passed is {passed}"


# -- runtime overrides and reading usage -----------------------------------------------------


def override_path(user):
    return "/usage/overrides/" + urllib.parse.quote(user, safe="")


def wait_limit(s, sub, tokens, timeout=10):
    """Probes until the user's limit header says tokens. Each of Envoy's
    workers takes the overrides in at its own sync: once one has, every
    other has within an interval, after which every probe must agree."""
    deadline = time.monotonic() + timeout
    while True:
        seen = int(probe(s, sub).header(LIMIT_HEADER))
        if seen == tokens or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if seen != tokens:
        return seen
    time.sleep(3 * SYNC_MS / 1000)
    seen = {int(probe(s, sub).header(LIMIT_HEADER)) for _ in range(8)}
    return seen.pop() if len(seen) == 1 else seen


def test_an_admin_sets_and_removes_a_users_limit_at_runtime(b):
    user = unique("ovr") + "@example.com"
    admin, own = b.token(sub=ADMIN), b.token(sub=user)
    override = {"windows": [{"seconds": 60, "tokens": 30}]}
    data = json.dumps(override).encode()
    assert wait_limit(b, user, LIMIT) == LIMIT

    # Only an admin may set one, read the list or another user's usage.
    for method, path, body in (("PUT", override_path(user), data), ("GET", "/usage/overrides", None),
                               ("DELETE", override_path(user), None), ("GET", f"/usage?user={ADMIN}", None)):
        r = b.request(method, path, headers=JSON, body=body, token=own)
        assert r.status == 403, (method, path, r)

    bad = {"windows": [{"seconds": 60, "tokens": 0}]}
    r = b.request("PUT", override_path(user), headers=JSON, body=json.dumps(bad).encode(), token=admin)
    assert r.status == 400 and "windows[0].tokens" in r.text, r

    r = b.request("PUT", override_path(user), headers=JSON, body=data, token=admin)
    assert r.status == 200, r
    stored = r.json()
    assert stored["user"] == user, stored
    assert [(w["seconds"], w["tokens"], w.get("status", 429)) for w in stored["windows"]] == [(60, 30, 429)], stored
    listed = b.request("GET", "/usage/overrides", token=admin).json()["overrides"]
    assert [o["user"] for o in listed if o["user"] == user] == [user], listed

    # The gateway learns of it at its next sync, without a restart.
    assert wait_limit(b, user, 30) == 30
    # 26 tokens reserved of 30: the first fits, the second waits for the
    # first's (5) to leave the window.
    fits = body_for("/api/chat", "small", stream=False, max_tokens=20)
    assert call(b, user, "/api/chat", fits).status == 200
    spent = sum(b.engine.last().tokens)
    theirs = wait_usage(b, user, used_is(60, spent), token=admin, query="?user=" + urllib.parse.quote(user))
    r = call(b, user, "/api/chat", fits)
    headers, _ = check_refusal(r, 429)
    assert (headers["limit"], headers["remaining"]) == (30, 30 - spent), headers
    assert theirs["user"] == user and limit_entry(theirs, 60)["tokens"] == 30, theirs

    r = b.request("DELETE", override_path(user), token=admin)
    assert r.status == 204, r
    assert b.request("DELETE", override_path(user), token=admin).status == 404
    assert wait_limit(b, user, LIMIT) == LIMIT


def test_an_admin_scope_grants_the_admin_api(b):
    token = b.token(sub=unique("scoped"), scope="attach:admin")
    r = b.request("GET", "/usage/overrides", token=token)
    assert r.status == 200 and isinstance(r.json()["overrides"], list), r


def test_usage_shows_each_user_only_their_own(b):
    alice, bob = unique("alice"), unique("bob")
    spent = {}
    for sub, tokens in ((alice, (3, 5)), (bob, (7, 11))):
        b.engine.tokens = tokens
        assert call(b, sub, "/api/chat", body_for("/api/chat", "mine", stream=False, max_tokens=20)).status == 200
        spent[sub] = sum(tokens)
    for sub in (alice, bob):
        mine = wait_usage(b, sub, used_is(60, spent[sub]))
        assert mine["user"] == sub
        assert limit_entry(mine, 60)["used"] == spent[sub], mine
        assert window_entry(mine, 60)["requests"] == 1, mine
    # Another user's usage only for an admin.
    r = b.get("/usage?user=" + urllib.parse.quote(alice), token=b.token(sub=bob))
    assert r.status == 403, r


# -- counters --------------------------------------------------------------------------------


def test_envoy_counts_admitted_and_refused_and_the_service_meters_tokens(b):
    sub, model = unique("count"), unique("metered")
    before = budget_stats(b.gateway)
    b.engine.tokens = (11, 17)
    assert call(b, sub, "/api/chat", body_for("/api/chat", "count me", model=model, stream=False)).status == 200
    probe(b, sub, model=model)

    def deltas():
        after = budget_stats(b.gateway)
        return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}

    deadline = time.monotonic() + 5
    while len(deltas()) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    changed = deltas()
    moved = {(kind, name) for kind, name, _ in changed}
    # The route's counters (its path sanitised for a stat name) and the
    # model's, and no other.
    routes = [name for kind, name in moved if kind == "route"]
    models = [name for kind, name in moved if kind == "model"]
    assert routes == ["api_chat"] and len(models) == 1 and len(moved) == 2, changed
    assert models[0] in (model, model.replace("-", "_")), models
    for kind, name in moved:
        assert {c: v for (k, n, c), v in changed.items() if (k, n) == (kind, name)} == {
            "admitted": 1, "refused": 1, "tokens_in": 11, "tokens_out": 17}, changed
    assert not any(kind == "user" for kind, _ in moved), "per-user stats only with user_stats"

    url = f"http://{HOST}:{b.gateway.a2a_port}/metrics"
    deadline = time.monotonic() + 10
    while True:
        conn = http.client.HTTPConnection(HOST, b.gateway.a2a_port, timeout=5)
        conn.request("GET", "/metrics")
        samples = prometheus(conn.getresponse().read().decode())
        conn.close()
        got = (
            metric(samples, "attach_usage_tokens_total", direction="in", model=model, route="/api/chat"),
            metric(samples, "attach_usage_tokens_total", direction="out", model=model, route="/api/chat"),
            metric(samples, "attach_usage_requests_total", model=model, route="/api/chat", outcome="complete"),
            metric(samples, "attach_usage_requests_total", model=model, route="/api/chat", outcome="refused"),
        )
        if got == (11, 17, 1, 1) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert got == (11, 17, 1, 1), f"{url}: tokens in/out, complete, refused = {got}"
    # No per-user labels unless asked for.
    assert not any("user" in labels for name, labels, _ in samples if name.startswith("attach_usage_")), samples


# -- the environment's form, windows rolling, the request size cap ---------------------------


@pytest.fixture(scope="module")
def seed_form(tmp_path_factory, artifacts, engine):
    env = {"MAX_TOKENS_PER_MIN": "1000", "WINDOW": "3s", "MAX_REQUEST_BYTES": "2048"}
    with launch_stack(tmp_path_factory.mktemp("budgets-env"), a2a=True, upstream=engine, env=env) as s:
        s.engine = engine
        yield s


@pytest.fixture
def env_b(seed_form):
    seed_form.engine.reset()
    return seed_form


def test_a_short_window_admits_again_after_retry_after(env_b):
    sub = unique("window")
    body = body_for("/api/chat", "fill", stream=False, max_tokens=900)
    env_b.engine.tokens = (input_estimate(body), 900)
    r = call(env_b, sub, "/api/chat", body)
    assert r.status == 200, r
    h = rate_headers(r)
    # WINDOW=3s: the tokens leave it within its length and a slot (a 60th).
    assert h["limit"] == 1000 and reset_ms(h["reset"]) <= 4000, h
    r = call(env_b, sub, "/api/chat", body)
    _, retry_after = check_refusal(r, 429)
    assert retry_after <= 4, retry_after
    time.sleep(retry_after + 0.1)
    r = call(env_b, sub, "/api/chat", body)
    assert r.status == 200, f"the window should have rolled past the first request: {r!r}"


def test_a_request_body_larger_than_max_request_bytes_gets_413(env_b):
    sub = unique("size")
    big = body_for("/api/chat", "x" * 3000, stream=False, max_tokens=1)
    r = call(env_b, sub, "/api/chat", big)
    assert r.status == 413, r
    assert env_b.engine.requests == []
    fits = body_for("/api/chat", "x" * 1900, stream=False, max_tokens=1)
    assert len(json.dumps(fits)) < 2048
    r = call(env_b, sub, "/api/chat", fits)
    assert r.status == 200, r
    assert len(env_b.engine.requests) == 1


# -- the hard stop ---------------------------------------------------------------------------

MARGIN = 8


@pytest.fixture(scope="module")
def stopping(tmp_path_factory, artifacts, engine):
    config = {"budget": {"windows": [{"seconds": 60, "tokens": 100_000}], "hard_stop_margin": MARGIN,
                         "default_max_tokens": 16}}
    with launch_stack(tmp_path_factory.mktemp("budgets-stop"), a2a=True, upstream=engine, config=config,
                      env=ENV) as s:
        s.engine = engine
        yield s


@pytest.fixture
def stop_b(stopping):
    stopping.engine.reset()
    stopping.engine.reply = "abcdefgh" * 50  # 400 bytes, 100 tokens by the text estimate
    stopping.engine.chunks = 50  # 8 bytes (2 tokens) a frame
    return stopping


def test_the_hard_stop_ends_an_ollama_stream_with_a_final_line(stop_b):
    sub = unique("stop")
    body = body_for("/api/chat", "talk", max_tokens=4)
    r = call(stop_b, sub, "/api/chat", body)
    assert r.status == 200, r
    lines = [json.loads(line) for line in r.body.splitlines()]
    last = lines[-1]
    assert last["done"] is True and last["done_reason"] == "length", last
    assert all(line["done"] is False for line in lines[:-1])
    text = reply_text("/api/chat", r.body)
    assert stop_b.engine.reply.startswith(text) and len(text) < len(stop_b.engine.reply), text
    out = text_tokens(len(text.encode()))
    # Past the reservation, and ended within a frame (2 tokens) of the
    # reservation and the margin.
    assert 4 < out <= reservation("/api/chat", body, 16) + MARGIN + 2, out
    usage = wait_usage(stop_b, sub, used_is(60, input_estimate(body) + out))
    assert limit_entry(usage, 60)["used"] == input_estimate(body) + out, usage


def test_the_hard_stop_ends_an_openai_stream_with_length_and_done(stop_b):
    sub = unique("stop")
    body = body_for("/v1/chat/completions", "talk", stream=True, max_tokens=4)
    r = call(stop_b, sub, "/v1/chat/completions", body)
    assert r.status == 200, r
    assert r.body.endswith(b"data: [DONE]\n\n"), r.body[-200:]
    events = sse_data(r.body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length", chunks[-1]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    # The client did not ask for usage and sees none.
    assert b"usage" not in r.body
    text = reply_text("/v1/chat/completions", r.body)
    assert stop_b.engine.reply.startswith(text) and len(text) < len(stop_b.engine.reply)


def test_the_openai_client_reads_a_stopped_stream(stop_b):
    import openai  # pinned in tests/requirements.txt

    sub = unique("stop")
    client = openai.OpenAI(base_url=f"{stop_b.gateway.base_url}/v1", api_key=stop_b.token(sub=sub),
                           max_retries=0, timeout=20)
    stream = client.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "talk"}], max_tokens=4, stream=True
    )
    chunks = list(stream)
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[-1].choices[0].finish_reason == "length", chunks[-1]
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text and stop_b.engine.reply.startswith(text) and len(text) < len(stop_b.engine.reply)


# -- two gateways, one PostgreSQL ------------------------------------------------------------

SHARED = 300  # shared-*: tokens per minute, across both replicas


def _fresh_database():
    from test_a2a_postgres import _fresh_database as fresh

    return fresh()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, artifacts, engine):
    from idp import IdP

    database = _fresh_database()
    idp = IdP(keys=("ES256",))
    policy = dict(POLICY, users=[{"match": "shared-*", "windows": [{"seconds": 60, "tokens": SHARED}]}])
    env = dict(ENV, A2A_DATABASE_URL=database)
    with launch_stack(tmp_path_factory.mktemp("budget-pg-a"), idp=idp, a2a=True, upstream=engine,
                      config={"budget": policy}, env=env) as a:
        with launch_stack(tmp_path_factory.mktemp("budget-pg-b"), idp=idp, idp_up=False, a2a=True,
                          upstream=engine, config={"budget": policy}, env=env) as b:
            yield a, b


def test_two_gateways_share_one_budget_through_the_store(replicas, engine):
    """Requests spaced wider than a sync interval, alternating between the
    replicas: each one knows what the other spent, so together they admit
    exactly the budget."""
    engine.reset()
    a, b = replicas
    sub = unique("shared")
    body = body_for("/api/chat", "share", stream=False, max_tokens=45)
    res = reservation("/api/chat", body, DEFAULT_MAX_TOKENS)
    engine.tokens = (input_estimate(body), 45)
    admitted = 0
    for i in range(SHARED // res + 2):
        gw = (a, b)[i % 2]
        r = call(gw, sub, "/api/chat", body)
        if r.status != 200:
            check_refusal(r, 429)
            break
        admitted += 1
        time.sleep(4 * SYNC_MS / 1000)
    assert admitted == SHARED // res, f"admitted {admitted} reservations of {res} in {SHARED}"
    spent = sum(sum(x.tokens) for x in engine.answers)
    assert spent == admitted * res
    for gw in (a, b):
        assert call(gw, sub, "/api/chat", body).status == 429
        assert limit_entry(wait_usage(gw, sub, used_is(60, spent)), 60)["used"] == spent


def test_a_burst_on_both_replicas_stays_within_the_documented_bound(replicas, engine):
    """16 requests at once on each replica. Each replica admits only what
    fits its own view, which lags the other's spending by at most a sync
    interval: per replica at most one budget's worth in that interval, so
    together at most the budget plus one budget per other replica; once
    they have synced, both refuse and read the same total."""
    engine.reset()
    a, b = replicas
    sub = unique("shared")
    body = body_for("/api/chat", "burst go", max_tokens=44)
    res = reservation("/api/chat", body, DEFAULT_MAX_TOKENS)
    engine.tokens = (input_estimate(body), 44)
    data = json.dumps(body).encode()
    token = a.token(sub=sub)
    start = threading.Barrier(32)

    def one(i):
        start.wait()
        return call((a, b)[i % 2], sub, "/api/chat", data, token=token, timeout=30)

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(32)))
    admitted = [r for r in results if r.status == 200]
    spent = sum(sum(x.tokens) for x in engine.answers)
    assert len(engine.requests) == len(admitted)
    assert spent <= SHARED * 2, f"two replicas spent {spent} of {SHARED}: more than the bound"
    per_replica = [sum(1 for i, r in enumerate(results) if r.status == 200 and i % 2 == k) for k in (0, 1)]
    assert all(n * res <= SHARED for n in per_replica), per_replica
    assert len(admitted) >= SHARED // res
    time.sleep(4 * SYNC_MS / 1000)
    for gw in (a, b):
        used = limit_entry(wait_usage(gw, sub, used_is(60, spent)), 60)["used"]
        assert used == spent, (used, spent)
        r = call(gw, sub, "/api/chat", data)
        assert r.status == 429 or spent + res <= SHARED, r


# -- the usage export ------------------------------------------------------------------------


def test_usage_is_exported_as_cloudevents_batches(tmp_path, artifacts, engine):
    """USAGE_METERING=cloudevents: each exchange becomes two CloudEvents 1.0
    (input and output tokens) in an application/cloudevents-batch+json POST
    to USAGE_URL (CloudEvents JSON Event Format, batched mode); a refusal
    is not exported."""
    engine.reset()
    with Upstream() as sink:
        env = {"MAX_TOKENS_PER_MIN": "1000", "USAGE_METERING": "cloudevents",
               "USAGE_URL": f"{sink.url}/api/v1/events"}
        with launch_stack(tmp_path / "export", a2a=True, upstream=engine, env=env) as s:
            sub, model = unique("export"), unique("exported")
            engine.tokens = (11, 17)
            assert call(s, sub, "/api/chat", body_for("/api/chat", "export me", model=model,
                                                      stream=False, max_tokens=16)).status == 200
            probe(s, sub, model=model)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                events = [e for r in sink.requests for e in json.loads(r.body) if e.get("subject") == sub]
                if len(events) >= 2:
                    break
                time.sleep(0.2)
            time.sleep(1)  # anything else (the refusal) would have gone out by now
    batches = [r for r in sink.requests if any(e.get("subject") == sub for e in json.loads(r.body))]
    assert batches, "no CloudEvents batch reached USAGE_URL"
    for r in batches:
        assert r.method == "POST" and r.path == "/api/v1/events", r
        assert (r.header("content-type") or "").startswith("application/cloudevents-batch+json"), r
    events = sorted((e for r in batches for e in json.loads(r.body) if e.get("subject") == sub),
                    key=lambda e: e["id"])
    assert len(events) == 2, events
    record = events[0]["id"].rsplit("/", 1)[0]
    assert [e["id"] for e in events] == [f"{record}/input", f"{record}/output"], events
    for e, kind, tokens in zip(events, ("input", "output"), (11, 17)):
        assert e["specversion"] == "1.0" and e["source"] == "attach-gateway" and e["type"] == "tokens", e
        assert isinstance(e["time"], str) and "T" in e["time"], e
        assert e["data"] == {"tokens": tokens, "model": model, "type": kind, "route": "/api/chat"}, e
