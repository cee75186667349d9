"""The memory mirror writing to Weaviate (MEM_BACKEND=weaviate).

The Weaviate stand-in (weaviate_standin.py) holds every request to
Weaviate's published contract and requires the API key. Model exchanges
must land there as objects of a class the filter creates, be readable
through the gateway's /mem/events, and survive a sink that is down or
failing without the client ever noticing.
"""

import json
import re
import statistics
import threading
import time

import pytest

import weaviate_contract

if weaviate_contract.missing():
    pytest.skip(weaviate_contract.missing(), allow_module_level=True)

from engine import Engine, reply_for
from netutil import wait_until
from stack import launch_stack
from httpc import unique
from test_memory_mirror import (
    check_metadata,
    counters,
    list_events,
    model_body,
    the_pair,
    wait_counter,
    wait_events,
)
from weaviate_standin import Weaviate

API_KEY = "wv-test-key-7f3a"
CLASS = "MemoryEvent"
BATCH = "/v1/batch/objects"
# The properties the events need to be read back, filtered and counted.
EXPECTED_TYPES = {
    "user": "text", "session": "text", "role": "text", "kind": "text", "content": "text",
    "model": "text", "route": "text", "status": "int", "timestamp": "date", "truncated": "boolean",
    "tool": "text", "isError": "boolean",
}


def weaviate_env(w):
    return {"MEM_BACKEND": "weaviate", "WEAVIATE_URL": w.url, "WEAVIATE_API_KEY": API_KEY}


@pytest.fixture(scope="module")
def wv_stack(tmp_path_factory, artifacts):
    with Weaviate(api_key=API_KEY) as w, Engine() as engine:
        workdir = tmp_path_factory.mktemp("memory-weaviate")
        with launch_stack(workdir, a2a=True, upstream=engine, env=weaviate_env(w)) as s:
            s.weaviate, s.engine = w, engine
            # The filter makes sure of the class before any event is sent.
            assert wait_until(lambda: CLASS in w.classes, 10), w.requests
            s.startup_requests = w.requests
            s.startup_problems = w.violations + w.unsupported
            yield s


@pytest.fixture
def wv(wv_stack):
    w = wv_stack.weaviate
    wv_stack.engine.reset()
    w.recover()
    w.up()
    yield wv_stack
    w.recover()
    w.up()
    try:
        w.assert_clean()
        assert not w.graphql_errors, w.graphql_errors
    finally:
        w.clear()


def exchange(s, sub, prompt, path="/api/chat", stream=None):
    body = model_body(path, prompt, stream=stream)
    h = {"Content-Type": "application/json"}
    t = time.monotonic()
    r = s.request("POST", path, headers=h, body=json.dumps(body).encode(), token=s.token(sub=sub))
    return r, time.monotonic() - t


def batches_with(w, ids):
    """The batch requests that carried any of ids: [(status, [ids sent])]."""
    found = []
    for req in w.requests_to(BATCH, "POST"):
        sent = [o.get("id") for o in (req.body or {}).get("objects", [])]
        if set(sent) & set(ids):
            found.append((req.status, sent))
    return found


def ids_of(w, sub):
    return {o["id"] for o in w.find(CLASS, user=sub)}


def wait_objects(w, sub, n, timeout=20):
    wait_until(lambda: len(w.find(CLASS, user=sub)) >= n, timeout)
    return w.find(CLASS, user=sub)


# -- schema and objects ---------------------------------------------------------------


def test_the_class_is_created_once_with_a_valid_schema(wv):
    w = wv.weaviate
    assert not wv.startup_problems, wv.startup_problems
    reqs = wv.startup_requests
    assert reqs and reqs[0].method == "GET" and reqs[0].path == f"/v1/schema/{CLASS}", reqs
    assert reqs[0].status == 404
    creates = [r for r in reqs if r.method == "POST" and r.path == "/v1/schema"]
    assert creates and creates[0].status == 200, reqs
    assert all(r.status in (200, 422) for r in creates), creates
    for r in reqs:
        assert r.header("authorization") == f"Bearer {API_KEY}", r
    cls = w.classes[CLASS]
    assert cls.get("vectorizer") == "none"
    declared = {p["name"]: p for p in cls["properties"]}
    for name, data_type in EXPECTED_TYPES.items():
        assert name in declared, f"property {name} not declared: {sorted(declared)}"
        assert declared[name]["dataType"] == [data_type], declared[name]
    # Reading a user's events filters on these: a word-tokenized "user" would
    # let "ann smith" match "ann".
    for name in ("user", "session", "kind", "tool"):
        assert declared[name].get("tokenization") == "field", declared[name]


def test_events_land_as_objects_and_read_back_through_the_gateway(wv):
    w = wv.weaviate
    sub, other = unique("wv ann"), unique("wv")
    wv.engine.tokens = (6, 4)
    r, _ = exchange(wv, sub, "what is a vector database?")
    assert r.status == 200 and r.body == wv.engine.last().body
    answer = wv.engine.last()
    objects = wait_objects(w, sub, 2)
    assert len(objects) == 2, objects
    session = r.header("x-attach-session")
    request_id = wv.engine.requests[-1].header("x-request-id")
    by_kind = {o["properties"]["kind"]: o for o in objects}
    assert set(by_kind) == {"prompt", "reply"}
    for kind, role, content in (("prompt", "user", "what is a vector database?"),
                                ("reply", "assistant", answer.text)):
        p = by_kind[kind]["properties"]
        assert p["user"] == sub and p["session"] == session, p
        assert p["role"] == role and p["content"] == content, p
        assert p["model"] == "llama3.2" and p["route"] == "/api/chat", p
        assert p["status"] == 200 and p["truncated"] is False, p
        assert request_id in p.values(), p
    for b in w.requests_to(BATCH, "POST"):
        assert b.header("authorization") == f"Bearer {API_KEY}"

    # Read back through the gateway: the service asks Weaviate.
    before = w.graphql_count
    events = wait_events(wv, sub, 2)
    assert w.graphql_count > before, "the listing did not come from Weaviate"
    pair = the_pair(events)
    assert {e["mem_id"] for e in events} == set(by_kind[k]["id"] for k in by_kind)
    assert pair["prompt"]["content"] == "what is a vector database?"
    assert pair["reply"]["content"] == answer.text
    for kind, ev in pair.items():
        assert ev["session"] == session
        assert ev["role"] == ("user" if kind == "prompt" else "assistant")
        check_metadata(ev, route="/api/chat", request_id=request_id,
                       tokens=6 if kind == "prompt" else 4)
    assert [e["kind"] for e in list_events(wv, sub, kind="reply")] == ["reply"]
    assert list_events(wv, sub, session="elsewhere") == []
    # Scoped to the caller, also for a user whose name is a word of another's.
    prefix = sub.split(" ")[0]
    for who in (other, prefix):
        assert list_events(wv, who) == []
        for ev in events:
            assert wv.request("GET", f"/mem/events/{ev['mem_id']}",
                              token=wv.token(sub=who)).status == 404
    for ev in events:
        r = wv.request("GET", f"/mem/events/{ev['mem_id']}", token=wv.token(sub=sub))
        assert r.status == 200, r
        assert r.json()["content"] == ev["content"]


def test_an_unreadable_body_lands_as_a_placeholder_object(wv):
    """A body the filter cannot read (here a duplicate key, which the engine
    takes) is recorded with a placeholder prompt in Weaviate too, declared in
    the class and read back through the gateway."""
    w = wv.weaviate
    sub = unique("wv placeholder")
    raw = (b'{"model": "llama3.2", "messages": [{"role": "user", "content": "a"}],'
           b' "messages": [{"role": "user", "content": "b"}], "stream": false}')
    r = wv.request("POST", "/api/chat", headers={"Content-Type": "application/json"}, body=raw,
                   token=wv.token(sub=sub))
    assert r.status == 200, r
    declared = {p["name"]: p["dataType"] for p in w.classes[CLASS]["properties"]}
    assert (declared["unreadable"], declared["requestBytes"]) == (["text"], ["int"]), declared
    objects = wait_objects(w, sub, 2)
    by_kind = {o["properties"]["kind"]: o["properties"] for o in objects}
    prompt = by_kind["prompt"]
    assert (prompt["unreadable"], prompt["requestBytes"], prompt["content"]) \
        == ("duplicate key", len(raw), ""), prompt
    assert "unreadable" not in by_kind["reply"] and by_kind["reply"]["content"] == reply_for("b")
    events = {e["kind"]: e for e in wait_events(wv, sub, 2)}
    assert events["prompt"]["unreadable"] == "duplicate key", events
    assert events["prompt"]["request_bytes"] == len(raw), events
    assert "unreadable" not in events["reply"], events


# -- a sink that is down or failing --------------------------------------------------------


def run_phase(s, sub, n, spacing, label):
    """n sequential exchanges spread over n * spacing seconds: [(latency, ok)]."""
    results = []
    for i in range(n):
        prompt = f"{label} question {i}"
        r, took = exchange(s, sub, prompt)
        answer = s.engine.last()
        ok = r.status == 200 and r.body == answer.body and answer.prompt == prompt
        results.append((took, ok, r))
        time.sleep(spacing)
    return results


def check_no_slowdown(up, degraded):
    assert all(ok for _, ok, _ in up + degraded), [r for _, ok, r in up + degraded if not ok]
    p50_up = statistics.median(t for t, _, _ in up)
    p50_degraded = statistics.median(t for t, _, _ in degraded)
    worst = max(t for t, _, _ in degraded)
    # Requests take milliseconds: 2x of that is within scheduling noise, hence the floor.
    assert p50_degraded < max(2 * p50_up, p50_up + 0.025), (p50_up, p50_degraded)
    assert worst < 1.0, worst


def check_each_once(w, sub, expected):
    """Every event stored, and each id in exactly one batch that was answered 200."""
    objects = wait_objects(w, sub, expected)
    assert len(objects) == expected, f"{len(objects)} of {expected} events arrived"
    ids = {o["id"] for o in objects}
    accepted = {}
    for status, sent in batches_with(w, ids):
        if status == 200:
            for i in sent:
                accepted[i] = accepted.get(i, 0) + 1
    twice = {i: n for i, n in accepted.items() if i in ids and n != 1}
    assert not twice, f"ids written more than once: {twice}"
    return ids


def test_sink_down_does_not_touch_traffic_and_nothing_is_lost(wv):
    w, gw = wv.weaviate, wv.gateway
    sub, n = unique("down"), 10
    up = run_phase(wv, sub, n, 0.02, "up")
    assert len(wait_objects(w, sub, 2 * n)) == 2 * n
    failed_before = counters(gw)["attach_memory_events_failed"]
    w.down()
    down_started = time.monotonic()
    degraded = run_phase(wv, sub, n, 0.2, "down")
    assert time.monotonic() - down_started >= 2.0
    w.up()
    check_no_slowdown(up, degraded)
    check_each_once(w, sub, 4 * n)
    assert counters(gw)["attach_memory_events_failed"] > failed_before


def test_sink_failing_with_503_then_recovering(wv):
    w, gw = wv.weaviate, wv.gateway
    sub, n = unique("fail"), 8
    up = run_phase(wv, sub, n, 0.02, "up")
    assert len(wait_objects(w, sub, 2 * n)) == 2 * n
    failed_before = counters(gw)["attach_memory_events_failed"]
    w.fail(503)
    degraded = run_phase(wv, sub, n, 0.2, "failing")
    w.recover()
    check_no_slowdown(up, degraded)
    ids = check_each_once(w, sub, 4 * n)
    refused = [sent for status, sent in batches_with(w, ids) if status == 503]
    assert refused, "no delivery was attempted while Weaviate failed"
    assert counters(gw)["attach_memory_events_failed"] > failed_before


def test_a_stalled_sink_does_not_slow_traffic(wv):
    w = wv.weaviate
    sub, n = unique("stall"), 8
    up = run_phase(wv, sub, n, 0.02, "up")
    assert len(wait_objects(w, sub, 2 * n)) == 2 * n
    w.stall(3)
    degraded = run_phase(wv, sub, n, 0.15, "stalled")
    w.stall(0)
    check_no_slowdown(up, degraded)
    check_each_once(w, sub, 4 * n)


def test_only_the_failed_object_is_sent_again(wv):
    w, gw = wv.weaviate, wv.gateway
    sub = unique("partial")
    failed_before = counters(gw)["attach_memory_events_failed"]
    w.fail_objects(lambda o: o["properties"]["user"] == sub and
                   o["properties"]["content"] == reply_for("fail my reply"))
    prompts = ["fail my reply", "keep me 1", "keep me 2", "keep me 3"]
    threads = [threading.Thread(target=exchange, args=(wv, sub, p)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    objects = wait_objects(w, sub, 8)
    assert len(objects) == 8, objects
    failures = [f for f in w.failures if f.injected]
    assert len(failures) == 1, w.failures
    target = failures[0].id
    stored = {o["id"]: o for o in objects}
    assert stored[target]["properties"]["kind"] == "reply"
    carrying = batches_with(w, stored)
    with_target = [sent for status, sent in carrying if target in sent]
    assert len(with_target) == 2, carrying
    assert with_target[1] == [target], f"the retry carried more than the failed object: {carrying}"
    for i in stored:
        if i != target:
            assert sum(sent.count(i) for _, sent in carrying) == 1, (i, carrying)
    assert all(status == 200 for status, _ in carrying)
    assert wait_counter(gw, "attach_memory_events_failed", failed_before + 1) == failed_before + 1


def test_a_batch_the_sink_refuses_is_dropped_and_counted_not_retried(wv):
    w, gw = wv.weaviate, wv.gateway
    sub = unique("rejected")
    before = counters(gw)
    w.fail(422, times=1, path=BATCH)
    r, _ = exchange(wv, sub, "refused as a whole")
    assert r.status == 200
    dropped = wait_counter(gw, "attach_memory_events_dropped", before["attach_memory_events_dropped"] + 2)
    assert dropped == before["attach_memory_events_dropped"] + 2
    # The worker is free at once: the next exchange arrives, the refused one never does.
    exchange(wv, sub, "after the refusal")
    objects = wait_objects(w, sub, 2)
    assert sorted(o["properties"]["kind"] for o in objects) == ["prompt", "reply"]
    assert all("refused" not in o["properties"]["content"] for o in objects), objects
    refused = [r for r in w.requests_to(BATCH, "POST") if r.status == 422]
    assert len(refused) == 1, "a refused batch is not sent again"
    assert counters(gw)["attach_memory_events_failed"] == before["attach_memory_events_failed"]


# -- a bounded queue ---------------------------------------------------------------------


def test_queue_overflow_drops_the_oldest(make_stack):
    with Weaviate(api_key=API_KEY) as w, Engine() as engine:
        env = dict(weaviate_env(w), MEM_QUEUE_MAX="10")
        s = make_stack(a2a=True, upstream=engine, env=env)
        s.engine, gw = engine, s.gateway
        # The class exists and a first exchange went through.
        warm = unique("warm")
        r, _ = exchange(s, warm, "warm up")
        assert r.status == 200
        assert len(wait_objects(w, warm, 2)) == 2
        before = counters(gw)
        w.clear()
        w.down()
        sub = unique("overflow")
        results = run_phase(s, sub, 20, 0, "overflow")
        assert all(ok for _, ok, _ in results), [r for _, ok, r in results if not ok]
        assert wait_counter(gw, "attach_memory_events_enqueued",
                            before["attach_memory_events_enqueued"] + 40) \
            == before["attach_memory_events_enqueued"] + 40
        w.up()

        def settled():
            c = counters(gw)
            done = c["attach_memory_events_sent"] + c["attach_memory_events_dropped"]
            return done >= c["attach_memory_events_enqueued"]

        assert wait_until(settled, 20), counters(gw)
        time.sleep(0.5)
        after = counters(gw)
        arrived = w.find(CLASS, user=sub)
        dropped = after["attach_memory_events_dropped"] - before["attach_memory_events_dropped"]
        batches = [len(r.body["objects"]) for r in w.requests_to(BATCH, "POST") if r.status == 200]
        # Events in the order they were made: exchange i gives 2i (prompt), 2i+1 (reply).
        order = sorted(
            2 * int(re.search(r"question (\d+)", o["properties"]["content"]).group(1))
            + (o["properties"]["kind"] == "reply")
            for o in arrived
        )
        detail = (f"kept events {order} with MEM_QUEUE_MAX=10, {dropped} dropped; "
                  f"batches delivered after recovery: {batches}; counters: {after}")
        assert len(arrived) + dropped == 40, detail
        # The queue kept the newest 10; beyond the bound only the oldest went.
        assert order[-10:] == list(range(30, 40)), detail
        # Besides those, only the batches workers had taken before the sink went
        # down: the very first events, one batch per worker at most.
        held = order[:-10]
        assert held == list(range(len(held))), detail
        assert len(held) <= 2 * 10, detail
        w.assert_clean()


# -- a class an older gateway created ------------------------------------------------------


def older_class(*without, **retyped):
    """MemoryEvent as a gateway made it before tool calls were mirrored
    (`tool` and `isError` were added then), less `without`, with the data
    types in `retyped`."""
    exact = {"tokenization": "field"}
    properties = [
        {"name": name, "dataType": ["text"], **exact}
        for name in ("user", "session", "role", "kind")
    ] + [{"name": "content", "dataType": ["text"]}] + [
        {"name": name, "dataType": ["text"], **exact}
        for name in ("model", "route", "requestId", "taskId")
    ] + [
        {"name": "status", "dataType": ["int"]},
        {"name": "timestamp", "dataType": ["date"]},
        {"name": "latencyMs", "dataType": ["int"]},
        {"name": "tokensIn", "dataType": ["int"]},
        {"name": "tokensOut", "dataType": ["int"]},
        {"name": "truncated", "dataType": ["boolean"]},
        {"name": "unreadable", "dataType": ["text"], **exact},
        {"name": "requestBytes", "dataType": ["int"]},
    ] + [{"name": name, "dataType": [kind]} for name, kind in retyped.items()]
    properties = [p for p in properties if p["name"] not in without]
    return {"class": CLASS, "description": "older", "vectorizer": "none", "properties": properties}


def declared(w):
    return {p["name"]: p for p in w.classes[CLASS]["properties"]}


def schema_requests(w):
    return [r for r in w.requests if r.path.startswith("/v1/schema")]


def test_a_class_from_an_older_gateway_gets_the_properties_added_since(make_stack):
    """The service's reads select every property of the contract: on a class
    without `tool` and `isError` they fail until the filter adds them."""
    with Weaviate(api_key=API_KEY) as w, Engine() as engine:
        w.add_class(older_class())
        sub = unique("wv older")
        old_id = w.add_object(CLASS, {
            "user": sub, "session": "before", "role": "user", "kind": "prompt",
            "content": "written by the older gateway", "route": "/api/chat",
            "requestId": "r-old", "timestamp": "2026-01-01T00:00:00.000Z",
            "latencyMs": 3, "truncated": False,
        })
        s = make_stack(a2a=True, upstream=engine, env=weaviate_env(w))
        s.engine = engine
        assert wait_until(lambda: {"tool", "isError"} <= set(declared(w)), 10), schema_requests(w)
        tool, is_error = declared(w)["tool"], declared(w)["isError"]
        assert (tool["dataType"], tool["tokenization"]) == (["text"], "field"), tool
        assert is_error["dataType"] == ["boolean"], is_error
        reqs = schema_requests(w)
        assert (reqs[0].method, reqs[0].path, reqs[0].status) == ("GET", f"/v1/schema/{CLASS}", 200)
        adds = [r for r in reqs if r.method == "POST"]
        assert all(r.path == f"/v1/schema/{CLASS}/properties" for r in adds), reqs
        # Each worker checks the class; whoever comes second is told it exists.
        assert {r.body["name"] for r in adds} == {"tool", "isError"}, adds
        assert all(r.status in (200, 422) for r in adds), adds
        assert sorted(r.body["name"] for r in adds if r.status == 200) == ["isError", "tool"]
        for r in reqs:
            assert r.header("authorization") == f"Bearer {API_KEY}", r

        r, _ = exchange(s, sub, "after the upgrade")
        assert r.status == 200, r
        wait_objects(w, sub, 3)
        events = wait_events(s, sub, 3)
        assert len(events) == 3, events
        assert old_id in {e["mem_id"] for e in events}, events
        pair = the_pair([e for e in events if e["mem_id"] != old_id])
        assert pair["prompt"]["content"] == "after the upgrade"
        assert [e["mem_id"] for e in list_events(s, sub, session="before")] == [old_id]
        w.assert_clean()
        assert not w.graphql_errors, w.graphql_errors


def test_a_property_of_another_type_is_reported_and_the_rest_added(make_stack):
    """Weaviate cannot change a property's data type: the filter says so and
    adds what is missing; the service still reads every event."""
    with Weaviate(api_key=API_KEY) as w, Engine() as engine:
        w.add_class(older_class(isError="text"))
        s = make_stack(a2a=True, upstream=engine, env=weaviate_env(w))
        s.engine = engine
        assert wait_until(lambda: "tool" in declared(w), 10), schema_requests(w)
        assert declared(w)["isError"]["dataType"] == ["text"]
        adds = [r.body["name"] for r in schema_requests(w) if r.method == "POST"]
        assert set(adds) == {"tool"}, adds
        sub = unique("wv retyped")
        r, _ = exchange(s, sub, "still mirrored")
        assert r.status == 200, r
        assert len(wait_events(s, sub, 2)) == 2
        warning = 'property isError of MemoryEvent is ["text"], not boolean'
        log = s.gateway.stderr_path.read_text(errors="replace") + s.gateway.stdout_path.read_text(
            errors="replace")
        assert warning in log, s.gateway.log_tail()
        w.assert_clean()
        assert not w.graphql_errors, w.graphql_errors
