"""The memory mirror with the companion service as its sink.

A model stand-in (engine.py) sits behind the gateway. Model exchanges of
verified callers must reach the client unchanged and unhindered, and show up
as a prompt event and a reply event in the caller's /mem/events (with a
placeholder prompt when the filter cannot read the request body); nothing
else may be mirrored.

The helpers at the top are shared with test_memory_weaviate.py.
"""

import http.client
import json
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import httpc
from httpc import read_until, unique
from engine import Engine
from netutil import HOST
from stack import launch_stack

# -- helpers ---------------------------------------------------------------------

COUNTERS = (
    "attach_memory_events_enqueued",
    "attach_memory_events_sent",
    "attach_memory_events_failed",
    "attach_memory_events_dropped",
    "attach_memory_exchanges_unreadable",
    "attach_memory_replies_truncated",
)
CHAT_ROUTES = ("/api/chat", "/v1/chat/completions", "/open/api/chat")
MODEL_ROUTES = ("/api/chat", "/api/generate", "/v1/chat/completions", "/v1/completions")
# Fields every mirrored event carries at the top level of /mem/events.
METADATA = ("model", "route", "request_id", "status", "latency_ms", "truncated")


def model_body(path, prompt, model="llama3.2", stream=None):
    """A request body for path; stream=None leaves the flag out."""
    if path in CHAT_ROUTES:
        body = {
            "model": model,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "an earlier question"},
                {"role": "assistant", "content": "an earlier answer"},
                {"role": "user", "content": prompt},
            ],
        }
    else:
        body = {"model": model, "prompt": prompt}
    if stream is not None:
        body["stream"] = stream
    return body


def call_model(s, sub, path, body, headers=None, token=True, timeout=20):
    """POSTs body (a dict, or bytes as they are) to path as sub."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return s.request(
        "POST", path, headers=h, body=data, token=s.token(sub=sub) if token else None,
        timeout=timeout,
    )


def open_stream(s, sub, path, body, headers=None, timeout=20):
    """Sends a model call and returns (connection, response) as soon as the
    response head arrived; the body is left for the caller to read."""
    conn = http.client.HTTPConnection(HOST, s.gateway.port, timeout=timeout)
    data = json.dumps(body).encode()
    conn.putrequest("POST", path, skip_accept_encoding=True)
    h = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {s.token(sub=sub)}",
        "Content-Length": str(len(data)),
    }
    h.update(headers or {})
    for k, v in h.items():
        conn.putheader(k, v)
    conn.endheaders(data)
    return conn, conn.getresponse()


def list_events(s, sub, **query):
    q = "&".join(f"{k}={v}" for k, v in query.items())
    r = s.request("GET", "/mem/events" + (f"?{q}" if q else ""), token=s.token(sub=sub))
    assert r.status == 200, r
    return r.json()["events"]


def wait_events(s, sub, n, timeout=10, **query):
    """Polls /mem/events until sub has at least n events (matching query);
    returns the last listing, which may hold fewer."""
    deadline = time.monotonic() + timeout
    while True:
        events = list_events(s, sub, **query)
        if len(events) >= n or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


def the_pair(events):
    """{kind: event} for a listing that is exactly one prompt and one reply."""
    kinds = sorted(e["kind"] for e in events)
    assert kinds == ["prompt", "reply"], f"expected one prompt and one reply: {events!r}"
    return {e["kind"]: e for e in events}


def counters(gw):
    """The mirror's counters in Envoy's admin /stats (0 while undefined)."""
    r = gw.admin("GET", "/stats?filter=attach_memory")
    assert r.status == 200, r
    found = dict.fromkeys(COUNTERS, 0)
    for line in r.text.splitlines():
        m = re.match(r"^wasmcustom\.(attach_memory_\w+): (\d+)$", line.strip())
        if m and m.group(1) in found:
            found[m.group(1)] = int(m.group(2))
    return found


def wait_counter(gw, name, at_least, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        value = counters(gw)[name]
        if value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def is_uuid(value):
    try:
        return str(uuid.UUID(value)) == value
    except (TypeError, ValueError):
        return False


def check_metadata(ev, *, route, request_id, model="llama3.2", status=200, tokens=None,
                   truncated=False):
    """The exchange's metadata on one event (at the top level of /mem/events)."""
    missing = [f for f in METADATA if f not in ev]
    assert not missing, f"metadata fields missing from /mem/events: {missing}: {ev!r}"
    assert ev["model"] == model, ev
    assert ev["route"] == route, ev
    assert ev["request_id"] == request_id, ev
    assert ev["status"] == status, ev
    assert isinstance(ev["latency_ms"], int) and 0 <= ev["latency_ms"] < 60_000, ev
    assert ev["truncated"] is truncated, ev
    if tokens is not None:
        field = "tokens_in" if ev["kind"] == "prompt" else "tokens_out"
        other = "tokens_out" if ev["kind"] == "prompt" else "tokens_in"
        assert ev.get(field) == tokens, f"{field}: {ev!r}"
        assert ev.get(other) is None, f"{other} belongs to the other event: {ev!r}"


def check_pair(s, sub, resp, sent_request, answer, path, prompt, *, model="llama3.2",
               user_agent="", timeout=10):
    """The exchange's two events, as the caller reads them back."""
    session = resp.header("x-attach-session")
    assert session == httpc.session_id(sub, user_agent), resp
    events = wait_events(s, sub, 2, timeout=timeout, session=session)
    pair = the_pair(events)
    request_id = sent_request.header("x-request-id")
    assert request_id, "the engine got no x-request-id"
    for kind, role, content in (("prompt", "user", prompt), ("reply", "assistant", answer.text)):
        ev = pair[kind]
        assert ev["role"] == role, ev
        assert ev["content"] == content, ev
        assert ev["session"] == session, ev
        assert is_uuid(ev["mem_id"]), ev
        assert ev["task_id"] is None, ev
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
                            ev["created"]), ev
        if answer.tokens is None:
            # The engine reported no counts (an OpenAI stream that did not ask
            # for usage): the mirror has none to record.
            check_metadata(ev, route=path, request_id=request_id, model=model)
            assert ev.get("tokens_in") is None and ev.get("tokens_out") is None, ev
        else:
            check_metadata(ev, route=path, request_id=request_id, model=model,
                           tokens=answer.tokens[0] if kind == "prompt" else answer.tokens[1])
    assert pair["prompt"]["mem_id"] != pair["reply"]["mem_id"]
    return pair


# -- the stack -------------------------------------------------------------------

# A model route that is also public: the gateway verifies nobody there.
PUBLIC_MODEL_ROUTE = "/open/api/chat"
CONFIG = {
    "public_paths": ["/.well-known/oauth-protected-resource", "/healthz", "/open/*"],
    "memory": {
        "sink": "service",
        "url": "http://attach-a2a/mem/ingest",
        "routes": [
            {"path": "/api/chat", "format": "ollama"},
            {"path": "/api/generate", "format": "ollama"},
            {"path": "/v1/chat/completions", "format": "openai"},
            {"path": "/v1/completions", "format": "openai"},
            {"path": PUBLIC_MODEL_ROUTE, "format": "ollama"},
        ],
    },
}


@pytest.fixture(scope="module")
def engine():
    with Engine() as e:
        yield e


@pytest.fixture(scope="module")
def mem(tmp_path_factory, artifacts, engine):
    workdir = tmp_path_factory.mktemp("memory-mirror")
    with launch_stack(workdir, a2a=True, upstream=engine, config=CONFIG,
                      env={"MEM_BACKEND": "service"}) as s:
        s.engine = engine
        yield s


@pytest.fixture
def m(mem):
    mem.engine.reset()
    return mem


def barrier(s, sub):
    """One mirrored exchange, waited for: every event enqueued before it has
    been delivered by the time this returns (the queue is first in, first out)."""
    r = call_model(s, sub, "/api/generate", model_body("/api/generate", "barrier", stream=False))
    assert r.status == 200, r
    assert len(wait_events(s, sub, 1, kind="reply")) >= 1


# -- streaming passes through, and is mirrored -----------------------------------------


def test_ollama_stream_reaches_the_client_before_it_ends_and_is_mirrored(m):
    sub = unique("ndjson")
    m.engine.chunks, m.engine.tokens = 5, (11, 7)
    gate = m.engine.hold()
    body = model_body("/api/chat", "name three rivers")
    conn, resp = open_stream(m, sub, "/api/chat", body)
    try:
        assert resp.status == 200
        assert resp.getheader("content-type") == "application/x-ndjson"
        first = read_until(resp, b"\n")
        # The first line is here while the engine still holds its last one.
        assert first and not gate.is_set(), "the engine has not sent its last line yet"
        assert m.engine.first_sent.wait(5), "the engine never reached its last line"
        assert json.loads(first)["message"]["content"], first
        m.engine.release()
        t = time.monotonic()
        rest = resp.read()
        assert time.monotonic() - t < 5, "the rest came only when the engine gave up holding it"
    finally:
        m.engine.release()
        conn.close()
    answer = m.engine.last()
    assert first + rest == answer.body, "the client got other bytes than the engine sent"
    assert len(answer.body.splitlines()) == 6

    r = httpc.Response(resp.status, resp.getheaders(), first + rest)
    pair = check_pair(m, sub, r, m.engine.requests[-1], answer, "/api/chat", "name three rivers")
    # Newest first: the reply ended after the prompt arrived.
    listed = list_events(m, sub)
    assert [e["kind"] for e in listed] == ["reply", "prompt"], listed
    assert pair["reply"]["created"] >= pair["prompt"]["created"]


def test_openai_sse_stream_reaches_the_client_before_it_ends_and_is_mirrored(m):
    sub = unique("sse")
    m.engine.chunks, m.engine.tokens = 4, (9, 4)
    gate = m.engine.hold()
    body = model_body("/v1/chat/completions", "say hello in French", stream=True)
    body["stream_options"] = {"include_usage": True}
    conn, resp = open_stream(m, sub, "/v1/chat/completions", body)
    try:
        assert resp.status == 200
        assert resp.getheader("content-type") == "text/event-stream"
        first = read_until(resp, b"\n\n")
        assert first and not gate.is_set(), "the engine has not sent its last event yet"
        assert m.engine.first_sent.wait(5), "the engine never reached its last event"
        assert first.startswith(b"data: ")
        assert json.loads(first[6:])["choices"][0]["delta"]["content"]
        m.engine.release()
        t = time.monotonic()
        rest = resp.read()
        assert time.monotonic() - t < 5, "the rest came only when the engine gave up holding it"
    finally:
        m.engine.release()
        conn.close()
    answer = m.engine.last()
    assert first + rest == answer.body
    assert rest.endswith(b"data: [DONE]\n\n")
    r = httpc.Response(resp.status, resp.getheaders(), first + rest)
    check_pair(m, sub, r, m.engine.requests[-1], answer, "/v1/chat/completions",
               "say hello in French")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("path", MODEL_ROUTES)
def test_every_model_route_and_framing_is_mirrored(m, path, stream):
    sub = unique("route")
    m.engine.chunks, m.engine.tokens = 3, (5, 3)
    prompt = f"explain {path} ({'streamed' if stream else 'whole'}) – naïve ☃"
    body = model_body(path, prompt, model="qwen2.5:0.5b", stream=stream)
    ua = "mirror-test/1.0"
    r = call_model(m, sub, path, body, headers={"User-Agent": ua})
    assert r.status == 200, r
    answer = m.engine.last()
    assert r.body == answer.body
    expected_type = "application/json"
    if stream:
        expected_type = "application/x-ndjson" if path.startswith("/api/") else "text/event-stream"
    assert r.header("content-type") == expected_type
    check_pair(m, sub, r, m.engine.requests[-1], answer, path, prompt, model="qwen2.5:0.5b",
               user_agent=ua)


def test_ollama_streams_by_default_and_openai_does_not(m):
    """Without a stream flag each API answers its own default framing, and the
    mirror reads both right."""
    for path, framing in (("/api/generate", "application/x-ndjson"),
                          ("/v1/completions", "application/json")):
        sub = unique("default")
        r = call_model(m, sub, path, model_body(path, "defaults?"))
        assert r.status == 200 and r.header("content-type") == framing, r
        answer = m.engine.last()
        pair = the_pair(wait_events(m, sub, 2))
        assert pair["reply"]["content"] == answer.text
        assert pair["prompt"]["content"] == "defaults?"


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
def test_utf8_characters_split_across_chunks(m, framing):
    sub = unique("utf8")
    pieces = ["héllo ", "wörld ", "✓ ", "🎉!"]
    if framing == "ndjson":
        path, ctype = "/api/chat", "application/x-ndjson"
        lines = [json.dumps({"model": "m", "message": {"role": "assistant", "content": p},
                             "done": False}, ensure_ascii=False).encode() + b"\n" for p in pieces]
        lines.append(b'{"model":"m","message":{"role":"assistant","content":""},"done":true,'
                     b'"prompt_eval_count":2,"eval_count":4}\n')
    else:
        path, ctype = "/v1/chat/completions", "text/event-stream"
        lines = [b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": p}}]},
                                        ensure_ascii=False).encode() + b"\n\n" for p in pieces]
        lines.append(b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":4}}\n\n')
        lines.append(b"data: [DONE]\n\n")
    stream = b"".join(lines)
    # Cut inside every multi-byte character: between the bytes of é, ö, ✓ and 🎉.
    cuts = []
    for ch in "éö✓🎉":
        at = stream.index(ch.encode())
        cuts.append(at + 1)
    cuts.append(cuts[-1] + 2)  # a second cut inside the 4-byte 🎉
    frames, prev = [], 0
    for cut in sorted(cuts):
        frames.append(stream[prev:cut])
        prev = cut
    frames.append(stream[prev:])
    for f in frames[:-1]:
        with pytest.raises(UnicodeDecodeError):
            f.decode("utf-8")
    m.engine.script(frames, ctype)
    m.engine.pause = 0.05
    body = model_body(path, "greet me", model="m", stream=True)
    r = call_model(m, sub, path, body)
    assert r.status == 200 and r.body == stream, r
    pair = the_pair(wait_events(m, sub, 2))
    assert pair["reply"]["content"] == "héllo wörld ✓ 🎉!"
    assert pair["reply"].get("tokens_out") == 4
    assert pair["reply"].get("truncated") is False


def test_long_messages_are_cut_but_delivered_whole(make_stack, artifacts):
    with Engine() as engine:
        s = make_stack(a2a=True, upstream=engine, env={"MEM_MAX_BYTES": "300"})
        sub = unique("long")
        # 1 + 2 * 400 bytes: the cap falls inside an "é", which must not be split.
        engine.reply = "x" + "é" * 400
        engine.chunks = 9
        r = call_model(s, sub, "/api/chat", model_body("/api/chat", "short question"))
        assert r.status == 200
        assert r.body == engine.last().body
        streamed = "".join(json.loads(line)["message"]["content"] for line in r.body.splitlines())
        assert streamed == engine.reply, "the client gets the whole reply"
        pair = the_pair(wait_events(s, sub, 2))
        assert pair["reply"]["content"] == "x" + "é" * 149, "a prefix of at most 300 bytes"
        assert pair["reply"]["truncated"] is True
        assert pair["prompt"]["content"] == "short question"
        assert pair["prompt"]["truncated"] is False

        # A long prompt in a whole (non-streamed) exchange.
        sub2 = unique("long")
        engine.reply = "ok"
        long_prompt = "p" * 1000
        r = call_model(s, sub2, "/v1/completions", model_body("/v1/completions", long_prompt))
        assert r.status == 200 and r.body == engine.last().body
        assert json.loads(engine.requests[-1].body)["prompt"] == long_prompt
        pair = the_pair(wait_events(s, sub2, 2))
        assert pair["prompt"]["content"] == "p" * 300
        assert pair["prompt"]["truncated"] is True
        assert pair["reply"]["content"] == "ok" and pair["reply"]["truncated"] is False


# -- whose events ----------------------------------------------------------------------


def test_other_users_cannot_read_the_events(m):
    owner, other = unique("owner"), unique("other")
    r = call_model(m, owner, "/api/chat", model_body("/api/chat", "my secret plan"))
    assert r.status == 200
    pair = the_pair(wait_events(m, owner, 2))
    session = r.header("x-attach-session")
    assert list_events(m, other) == []
    assert list_events(m, other, session=session) == []
    for ev in pair.values():
        assert m.request("GET", f"/mem/events/{ev['mem_id']}", token=m.token(sub=owner)).status == 200
        r = m.request("GET", f"/mem/events/{ev['mem_id']}", token=m.token(sub=other))
        assert r.status == 404, r
        assert "my secret plan" not in r.text


def test_the_same_request_id_twice_is_one_pair(m):
    alice, carol = unique("redeliver"), unique("redeliver")
    rid = f"rid-{uuid.uuid4()}"
    body = model_body("/api/generate", "only once please", stream=False)
    before = counters(m.gateway)["attach_memory_events_enqueued"]
    for _ in range(2):
        r = call_model(m, alice, "/api/generate", body, headers={"X-Request-Id": rid})
        assert r.status == 200
    assert [q.header("x-request-id") for q in m.engine.requests] == [rid, rid]
    assert wait_counter(m.gateway, "attach_memory_events_enqueued", before + 4) >= before + 4
    # The same id chosen by another user touches only that user's events.
    r = call_model(m, carol, "/api/generate", body, headers={"X-Request-Id": rid})
    assert r.status == 200
    carols = the_pair(wait_events(m, carol, 2))
    # Carol's pair was enqueued last: both of Alice's exchanges were delivered
    # before it, and they made one pair.
    alices = list_events(m, alice)
    pair = the_pair(alices)
    assert all(ev["request_id"] == rid for ev in alices)
    assert pair["prompt"]["content"] == "only once please"
    assert {e["mem_id"] for e in carols.values()}.isdisjoint(e["mem_id"] for e in alices)
    assert all(ev["request_id"] == rid for ev in carols.values())


def test_a_poisoned_exchange_costs_no_one_else_their_memory(m):
    """Issue: the filter copied a request's `model` and the client's
    x-request-id into events unchecked, the service refused any batch with
    one over its limits, and batches mix every caller's events: an attacker
    sending such requests erased everyone else's memory (and left no trace of
    their own). A victim and an attacker send at the same time: the victim
    keeps every prompt, and the attacker's exchanges are recorded, fitted."""
    victim, attacker = unique("victim"), unique("attacker")
    n = 30
    model = "evil\n" + "m" * 300
    fitted_model = "evil\ufffd" + "m" * 251
    hostile_ids = ["r" * 300, "tab\tinside", "x" * 257]
    before = counters(m.gateway)

    def victim_call(i):
        prompt = f"victim question {i}"
        r = call_model(m, victim, "/api/generate", model_body("/api/generate", prompt, stream=False))
        return prompt, r.status

    def attacker_call(i):
        prompt = f"attacker question {i}"
        body = model_body("/api/chat", prompt, model=model, stream=i % 2 == 0)
        rid = hostile_ids[i % len(hostile_ids)] + str(i)
        r = call_model(m, attacker, "/api/chat", body, headers={"X-Request-Id": rid})
        return prompt, r.status

    with ThreadPoolExecutor(max_workers=8) as pool:
        calls = [pool.submit(victim_call, i) for i in range(n)]
        calls += [pool.submit(attacker_call, i) for i in range(n)]
        results = [c.result(timeout=60) for c in calls]
    assert all(status == 200 for _, status in results), results
    seen_ids = {q.header("x-request-id") for q in m.engine.requests}
    assert any(rid and len(rid) > 256 for rid in seen_ids), "the hostile ids reached the engine"

    kept = wait_events(m, victim, 2 * n, timeout=20, limit=500)
    prompts = sorted(e["content"] for e in kept if e["kind"] == "prompt")
    assert prompts == sorted(f"victim question {i}" for i in range(n)), \
        f"the victim kept {len(prompts)} of {n} prompts"
    assert len(kept) == 2 * n

    recorded = wait_events(m, attacker, 2 * n, timeout=20, limit=500)
    assert len(recorded) == 2 * n, f"the attacker's exchanges: {len(recorded)} of {2 * n} events"
    assert sorted(e["content"] for e in recorded if e["kind"] == "prompt") \
        == sorted(f"attacker question {i}" for i in range(n))
    for e in recorded:
        assert e["model"] == fitted_model, e
        assert re.fullmatch(r"attach-[0-9a-f]{32}", e["request_id"]), e
    assert len({e["request_id"] for e in recorded}) == n, "one id per exchange"
    after = counters(m.gateway)
    assert after["attach_memory_events_dropped"] == before["attach_memory_events_dropped"]


# -- what is not mirrored ----------------------------------------------------------------


def test_requests_without_a_token_are_refused_and_not_mirrored(m):
    sub = unique("anon")
    before = counters(m.gateway)
    for path in MODEL_ROUTES:
        r = call_model(m, sub, path, model_body(path, "who am I?"), token=False)
        httpc.assert_refused(r, m.resource)
        r = call_model(m, sub, path, model_body(path, "who am I?"),
                       headers={"Authorization": "Bearer not.a.token"}, token=False)
        assert r.status == 401, r
    assert m.engine.requests == [], "refused requests never reach the engine"
    barrier(m, sub)
    after = counters(m.gateway)
    assert after["attach_memory_events_enqueued"] == before["attach_memory_events_enqueued"] + 2
    assert after["attach_memory_exchanges_unreadable"] == before["attach_memory_exchanges_unreadable"]
    assert all(e["content"] == "barrier" or e["kind"] == "reply" for e in list_events(m, sub))


def test_public_and_other_routes_are_not_mirrored(m):
    sub = unique("plain")
    before = counters(m.gateway)
    # A model route that is public: passed without verification, not mirrored,
    # with or without a token.
    for token in (False, True):
        r = call_model(m, sub, PUBLIC_MODEL_ROUTE,
                       model_body(PUBLIC_MODEL_ROUTE, "public question"), token=token)
        assert r.status == 200, r
        assert r.body == m.engine.last().body
    # Verified callers on routes that are not model routes.
    for path in ("/api/tags", "/v1/embeddings", "/api/chat/extra", "/v1/models"):
        r = call_model(m, sub, path, model_body("/api/chat", "not a model route"))
        assert r.status == 404, r  # the engine's own answer
    assert len(m.engine.requests) == 6
    barrier(m, sub)
    after = counters(m.gateway)
    assert after["attach_memory_events_enqueued"] == before["attach_memory_events_enqueued"] + 2
    assert after["attach_memory_exchanges_unreadable"] == before["attach_memory_exchanges_unreadable"]
    contents = [e["content"] for e in list_events(m, sub)]
    assert "public question" not in contents and "not a model route" not in contents
    assert len(contents) == 2


def placeholders(s, sub, n):
    """sub's events, once there are n placeholder prompts and their n replies,
    as {the prompt's request_bytes: (prompt, reply)}."""
    events = wait_events(s, sub, 2 * n, limit=100)
    assert len(events) == 2 * n, events
    by_request = {}
    for e in events:
        by_request.setdefault(e["request_id"], {})[e["kind"]] = e
    pairs = {}
    for pair in by_request.values():
        assert set(pair) == {"prompt", "reply"}, by_request
        prompt = pair["prompt"]
        assert prompt["content"] == "" and prompt["truncated"] is True, prompt
        assert isinstance(prompt.get("unreadable"), str), prompt
        assert "request_bytes" not in pair["reply"] and "unreadable" not in pair["reply"]
        pairs[prompt["request_bytes"]] = (prompt, pair["reply"])
    return pairs


def test_malformed_bodies_pass_unchanged_and_are_recorded_as_placeholders(m):
    sub = unique("malformed")
    before = counters(m.gateway)
    bodies = [
        (b'{"model": "m", "messages": [{"role": "user", "content": "cut of', "/api/chat", "not JSON"),
        (b"\xff\xfe not json at all", "/v1/completions", "not JSON"),
        (b'{"model": "m", "messages": "not a list"}', "/v1/chat/completions",
         "not shaped like the route's API"),
    ]
    statuses = []
    for raw, path, _ in bodies:
        r = call_model(m, sub, path, raw)
        answer = m.engine.last()
        assert (r.status, r.body) == (answer.status, answer.body), r  # the engine's own answer
        assert m.engine.requests[-1].body == raw, "the engine got other bytes"
        statuses.append(r.status)
    pairs = placeholders(m, sub, len(bodies))
    for (raw, path, why), status in zip(bodies, statuses):
        prompt, reply = pairs[len(raw)]
        assert (prompt["unreadable"], prompt["route"]) == (why, path), prompt
        assert prompt["status"] == reply["status"] == status, (prompt, reply)
    after = counters(m.gateway)
    assert after["attach_memory_exchanges_unreadable"] \
        == before["attach_memory_exchanges_unreadable"] + len(bodies)
    assert after["attach_memory_events_dropped"] == before["attach_memory_events_dropped"]


def test_bodies_the_engine_reads_but_the_filter_cannot_are_recorded_as_placeholders(m):
    """Issue: a duplicate `model`/`messages` key or a lone surrogate made the
    body unreadable to the filter while the engine (Python's json, as many)
    answered it: the exchange was never mirrored."""
    sub = unique("evasion")
    m.engine.reply = "the answer you were not supposed to see"
    bodies = [
        ("/api/chat", "duplicate key",
         b'{"model": "llama3.2", "messages": [{"role": "user", "content": "harmless"}],'
         b' "messages": [{"role": "user", "content": "what I really asked"}], "stream": false}'),
        ("/v1/chat/completions", "duplicate key",
         b'{"model": "a", "model": "llama3.2",'
         b' "messages": [{"role": "user", "content": "what I really asked"}]}'),
        ("/api/generate", "lone surrogate",
         b'{"model": "llama3.2", "prompt": "what I really asked \\ud800", "stream": false}'),
    ]
    for path, _, raw in bodies:
        r = call_model(m, sub, path, raw)
        assert r.status == 200, r
        assert m.engine.requests[-1].body == raw
        assert json.loads(raw), "the engine's parser takes it"
    assert [a.prompt.startswith("what I really asked") for a in m.engine.answers] == [True] * 3
    pairs = placeholders(m, sub, len(bodies))
    assert sorted(pairs) == sorted(len(raw) for _, _, raw in bodies), pairs
    for path, why, raw in bodies:
        prompt, reply = pairs[len(raw)]
        assert prompt["unreadable"] == why, prompt
        assert prompt["route"] == path and prompt["status"] == 200, prompt
        assert reply["content"] == m.engine.reply, reply
        assert reply["model"] == prompt["model"] == "llama3.2", (prompt, reply)
    # The gateway still answers, and mirrors readable bodies as before.
    barrier(m, sub)


def test_engine_errors_are_passed_on_and_mirrored_with_their_status(m):
    sub = unique("status")
    m.engine.fail(503, times=1)
    r = call_model(m, sub, "/api/chat", model_body("/api/chat", "are you there?"))
    assert r.status == 503 and r.body == m.engine.last().body, r
    pair = the_pair(wait_events(m, sub, 2))
    assert pair["prompt"]["content"] == "are you there?"
    assert pair["reply"]["content"] == ""
    for ev in pair.values():
        assert ev.get("status") == 503, ev


def test_compression_is_not_requested_on_model_routes_only(m):
    sub = unique("encoding")
    headers = {"Accept-Encoding": "gzip, br"}
    r = call_model(m, sub, "/api/chat", model_body("/api/chat", "plain please"), headers=headers)
    assert r.status == 200
    assert m.engine.requests[-1].header("accept-encoding") is None
    assert r.header("content-encoding") is None
    r = call_model(m, sub, "/api/tags", b"{}", headers=headers)
    assert m.engine.requests[-1].header("accept-encoding") == "gzip, br"
    pair = the_pair(wait_events(m, sub, 2))
    assert pair["reply"]["content"] == m.engine.answers[0].text


def test_concurrent_exchanges_are_each_mirrored_once(m):
    sub = unique("many")
    m.engine.pause = 0.01
    prompts = [f"question number {i}" for i in range(12)]
    results = {}

    def one(i, p):
        path = MODEL_ROUTES[i % 4]
        results[p] = call_model(m, sub, path, model_body(path, p, stream=i % 3 != 0))

    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(prompts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r.status == 200 for r in results.values()), results
    events = wait_events(m, sub, 24, limit=100)
    assert len(events) == 24, events
    assert len({e["mem_id"] for e in events}) == 24
    by_request = {}
    for e in events:
        by_request.setdefault(e["request_id"], {})[e["kind"]] = e
    assert len(by_request) == 12
    answers = {a.prompt: a.text for a in m.engine.answers}
    for pair in by_request.values():
        assert set(pair) == {"prompt", "reply"}
        assert pair["reply"]["content"] == answers[pair["prompt"]["content"]]
    assert sorted(p["prompt"]["content"] for p in by_request.values()) == sorted(prompts)
