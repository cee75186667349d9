"""The Weaviate stand-in and its contract validator, on their own (no gateway)."""

import http.client
import json
import socket
import time
import uuid

import pytest

import weaviate_contract

if weaviate_contract.missing():
    pytest.skip(weaviate_contract.missing(), allow_module_level=True)

from httpc import request  # noqa: E402
from weaviate_standin import Weaviate, parse_graphql  # noqa: E402

CONTRACT = weaviate_contract.load()


def text(name, **extra):
    return {"name": name, "dataType": ["text"], **extra}


MEMORY_EVENT = {
    "class": "MemoryEvent",
    "description": "One prompt or reply seen by the gateway.",
    "vectorizer": "none",
    "properties": [
        text("user", tokenization="field"),
        text("session", tokenization="field"),
        text("role", tokenization="field"),
        text("kind", tokenization="field"),
        text("content"),
        text("model", tokenization="field"),
        text("route", tokenization="field"),
        text("requestId", tokenization="field"),
        text("taskId", tokenization="field"),
        text("status", tokenization="field"),
        {"name": "timestamp", "dataType": ["date"]},
        {"name": "latencyMs", "dataType": ["int"]},
        {"name": "tokensIn", "dataType": ["int"]},
        {"name": "tokensOut", "dataType": ["int"]},
        {"name": "truncated", "dataType": ["boolean"]},
    ],
}

SELECTION = (
    "user session role kind content model route requestId taskId status timestamp "
    "latencyMs tokensIn tokensOut truncated _additional { id }"
)

QUERY = (
    '{ Get { MemoryEvent(where: {operator: And, operands: [{path: ["user"], operator: Equal, '
    'valueText: "alice"}, {path: ["session"], operator: Equal, valueText: "s1"}]}, limit: 50, '
    'sort: [{path: ["timestamp"], order: desc}]) { ' + SELECTION + " } } }"
)


def event(user="alice", session="s1", ts="2025-01-01T00:00:00Z", **overrides):
    props = {
        "user": user,
        "session": session,
        "role": "user",
        "kind": "prompt",
        "content": "hello there",
        "model": "gpt-x",
        "route": "/v1/chat/completions",
        "requestId": "r-1",
        "taskId": "t-1",
        "status": "ok",
        "timestamp": ts,
        "latencyMs": 12,
        "tokensIn": 3,
        "tokensOut": 5,
        "truncated": False,
    }
    props.update(overrides)
    return props


def obj(props, id=None, cls="MemoryEvent"):
    return {"class": cls, "id": id or str(uuid.uuid4()), "properties": props}


def call(w, method, path, body=None, key=None, headers=None, timeout=20):
    hdrs = dict(headers or {})
    if body is not None:
        hdrs.setdefault("Content-Type", "application/json")
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
    if key is not None:
        hdrs["Authorization"] = f"Bearer {key}"
    return request(w.port, method, path, headers=hdrs, body=body, timeout=timeout)


def batch(w, objects, **kw):
    resp = call(w, "POST", "/v1/batch/objects", {"objects": objects}, **kw)
    assert resp.status == 200, resp
    return resp.json()


def graphql(w, query, **kw):
    resp = call(w, "POST", "/v1/graphql", {"query": query}, **kw)
    assert resp.status == 200, resp
    body = resp.json()
    CONTRACT.check(body, "GraphQLResponse")
    return body


def statuses(reply):
    return [r["result"]["status"] for r in reply]


@pytest.fixture
def weaviate():
    with Weaviate() as w:
        yield w


@pytest.fixture
def memory(weaviate):
    weaviate.add_class(MEMORY_EVENT)
    return weaviate


# -- the contract validator ----------------------------------------------------------


def test_contract_resolves_definitions_and_inline_bodies():
    assert CONTRACT.validate(MEMORY_EVENT, "Class") == []
    assert CONTRACT.validate({"objects": [obj(event())]}, "BatchObjects") == []
    assert CONTRACT.validate({"objects": [obj(event())]}, "batch.objects.create") == []
    assert CONTRACT.validate({"query": QUERY}, "GraphQLQuery") == []

    body = {"objects": [{"class": "A", "id": "not-a-uuid"}], "fields": ["x"]}
    errors = CONTRACT.validate(body, "BatchObjects")
    assert any(e.startswith("$.objects[0].id:") for e in errors), errors
    assert any(e.startswith("$.fields[0]:") for e in errors), errors

    errors = CONTRACT.validate({"class": "A", "properties": [{"name": "x", "dataType": "text"}]}, "Class")
    assert errors == ["$.properties[0].dataType: 'text' is not of type 'array'"]
    with pytest.raises(KeyError):
        CONTRACT.validate({}, "NoSuchDefinition")


def test_contract_swagger_nullable_and_formats():
    # x-nullable admits null; fields without it do not.
    nullable = {"class": "A", "properties": [{"name": "x", "dataType": ["text"], "indexFilterable": None}]}
    assert CONTRACT.validate(nullable, "Class") == []
    assert CONTRACT.validate({"class": "A", "description": None}, "Class") != []
    # int64 is a range, date-time is RFC 3339, unknown formats pass.
    assert CONTRACT.validate({"creationTimeUnix": 2**63}, "Object") != []
    assert CONTRACT.validate({"creationTimeUnix": 1.5}, "Object") != []
    assert CONTRACT.validate({"sinceTime": "2025-01-01"}, "Deprecation") != []
    assert CONTRACT.validate({"sinceTime": "2025-01-01T10:00:00+02:00"}, "Deprecation") == []
    assert CONTRACT.validate({"hostname": "not a url at all"}, "Meta") == []


def test_contract_path_override(tmp_path, monkeypatch):
    doc = json.loads(CONTRACT.path.read_text())
    doc["definitions"]["GraphQLQuery"]["required"] = ["query"]
    alt = tmp_path / "weaviate.json"
    alt.write_text(json.dumps(doc))
    monkeypatch.setenv(weaviate_contract.CONTRACT_ENV, str(alt))
    assert weaviate_contract.contract_path() == alt
    assert weaviate_contract.validate({}, "GraphQLQuery") == ["$: 'query' is a required property"]
    monkeypatch.delenv(weaviate_contract.CONTRACT_ENV)
    assert weaviate_contract.contract_path().name == "weaviate-openapi.json"
    assert weaviate_contract.validate({}, "GraphQLQuery") == []


# -- roundtrip ---------------------------------------------------------------------------


def test_class_batch_graphql_roundtrip(weaviate):
    w = weaviate
    ready = call(w, "GET", "/v1/.well-known/ready")
    assert ready.status == 200 and ready.body == b""
    meta = call(w, "GET", "/v1/meta")
    assert meta.status == 200
    CONTRACT.check(meta.json(), "Meta")
    assert call(w, "GET", "/v1/schema/MemoryEvent").status == 404

    created = call(w, "POST", "/v1/schema", MEMORY_EVENT)
    assert created.status == 200, created
    CONTRACT.check(created.json(), "Class")
    assert created.json()["class"] == "MemoryEvent"
    schema = call(w, "GET", "/v1/schema").json()
    CONTRACT.check(schema, "Schema")
    assert [c["class"] for c in schema["classes"]] == ["MemoryEvent"]
    one = call(w, "GET", "/v1/schema/MemoryEvent").json()
    by_name = {p["name"]: p for p in one["properties"]}
    assert by_name["user"]["tokenization"] == "field"
    assert by_name["content"]["tokenization"] == "word"  # Weaviate's default

    ids = [str(uuid.uuid4()) for _ in range(3)]
    reply = batch(
        w,
        [
            obj(event(ts="2025-01-01T00:00:01Z", content="first"), ids[0]),
            obj(event(ts="2025-01-01T00:00:03Z", content="third"), ids[1]),
            obj(event(session="s2", ts="2025-01-01T00:00:02Z"), ids[2]),
        ],
    )
    for item in reply:
        CONTRACT.check(item, "ObjectsGetResponse")
    assert statuses(reply) == ["SUCCESS"] * 3
    assert [r["id"] for r in reply] == ids
    assert w.batch_count == 1 and set(w.objects) == set(ids)

    body = graphql(w, QUERY)
    rows = body["data"]["Get"]["MemoryEvent"]
    assert [r["_additional"]["id"] for r in rows] == [ids[1], ids[0]]
    assert rows[0]["content"] == "third" and rows[0]["latencyMs"] == 12 and rows[0]["truncated"] is False
    assert list(rows[0]) == SELECTION.replace(" { id }", "").split()

    recorded = w.requests_to("/v1/batch/objects", "POST")[0]
    assert recorded.body["objects"][0]["id"] == ids[0]
    assert recorded.header("content-type") == "application/json"
    assert recorded.status == 200
    w.assert_clean()


# -- schema refusals -----------------------------------------------------------------


def bad(*props, **fields):
    return {"class": "Bad", "properties": list(props), **fields}


@pytest.mark.parametrize(
    "cls, source",
    [
        (bad({"name": "x", "dataType": "text"}), "contract"),
        (bad(text("x", indexFilterable="yes")), "contract"),
        (bad(text("x", tokenization="words")), "contract"),
        ({"class": 7}, "contract"),
        (bad({"name": "x", "dataType": ["txt"]}), "weaviate"),  # unknown data type
        (bad({"name": "x", "dataType": ["int"], "tokenization": "word"}), "weaviate"),
        (bad({"name": "x", "dataType": ["int"], "indexSearchable": True}), "weaviate"),
        (bad(text("id")), "weaviate"),  # reserved
        (bad(text("x"), {"name": "X", "dataType": ["int"]}), "weaviate"),  # duplicate
        (bad({"name": "x"}), "weaviate"),  # no dataType
        (bad({"name": "x", "dataType": ["Elsewhere"]}), "weaviate"),  # reference to nothing
        ({"class": "Bad-Name"}, "weaviate"),
        ({"properties": [text("x")]}, "weaviate"),
        (bad(vectorizer="text2vec-openai"), "weaviate"),  # no modules here
    ],
)
def test_invalid_class_is_refused_and_recorded(weaviate, cls, source):
    resp = call(weaviate, "POST", "/v1/schema", cls)
    assert resp.status == 422, resp
    CONTRACT.check(resp.json(), "ErrorResponse")
    assert resp.json()["error"][0]["message"]
    [violation] = weaviate.violations
    assert violation.source == source and violation.path == "/v1/schema", violation
    assert call(weaviate, "GET", "/v1/schema").json() == {"classes": []}


def test_existing_class_is_refused_without_violation(memory):
    resp = call(memory, "POST", "/v1/schema", MEMORY_EVENT)
    assert resp.status == 422 and "already exists" in resp.json()["error"][0]["message"], resp
    resp = call(memory, "POST", "/v1/schema", dict(MEMORY_EVENT, **{"class": "memoryevent"}))
    assert resp.status == 422, resp
    assert memory.violations == []


def test_a_property_is_added_to_an_existing_class(memory):
    path = "/v1/schema/MemoryEvent/properties"
    prop = text("tool", tokenization="field")
    resp = call(memory, "POST", path, prop)
    assert resp.status == 200, resp
    CONTRACT.check(resp.json(), "Property")
    assert resp.json() == prop
    stored = {p["name"]: p for p in memory.classes["MemoryEvent"]["properties"]}
    assert stored["tool"]["tokenization"] == "field" and stored["tool"]["indexFilterable"] is True
    resp = call(memory, "POST", path, {"name": "isError", "dataType": ["boolean"]})
    assert resp.status == 200, resp
    got = call(memory, "GET", "/v1/schema/MemoryEvent").json()
    CONTRACT.check(got, "Class")
    assert [p["name"] for p in got["properties"]][-2:] == ["tool", "isError"]
    # Objects may carry them now, and queries select them.
    reply = batch(memory, [obj(event(tool="echo", isError=False))])
    assert statuses(reply) == ["SUCCESS"]
    rows = graphql(memory, "{ Get { MemoryEvent { tool isError } } }")["data"]["Get"]["MemoryEvent"]
    assert rows == [{"tool": "echo", "isError": False}]
    assert memory.violations == []


def test_adding_a_property_is_refused_with_422(memory):
    path = "/v1/schema/MemoryEvent/properties"
    for prop in (text("user"), text("User", tokenization="field")):
        resp = call(memory, "POST", path, prop)
        assert resp.status == 422 and "already exists" in resp.json()["error"][0]["message"], resp
        CONTRACT.check(resp.json(), "RestrictionViolationResponse")
    resp = call(memory, "POST", "/v1/schema/Elsewhere/properties", text("tool"))
    assert resp.status == 422 and "not found" in resp.json()["error"][0]["message"], resp
    assert memory.violations == [], "a refusal Weaviate gives is no fault of the caller's"
    for prop, source in (
        ({"name": "tool", "dataType": "text"}, "contract"),
        ({"name": "tool", "dataType": ["int"], "tokenization": "field"}, "weaviate"),
        (text("id"), "weaviate"),
    ):
        resp = call(memory, "POST", path, prop)
        assert resp.status == 422, resp
        assert memory.violations[-1].source == source, memory.violations
        assert memory.violations[-1].path == path
    names = [p["name"] for p in memory.classes["MemoryEvent"]["properties"]]
    assert names == [p["name"] for p in MEMORY_EVENT["properties"]]


def test_body_framing_is_checked(weaviate):
    plain = {"Content-Type": "text/plain"}
    resp = call(weaviate, "POST", "/v1/schema", json.dumps(MEMORY_EVENT), headers=plain)
    assert resp.status == 415, resp
    resp = call(weaviate, "POST", "/v1/schema", "{not json")
    assert resp.status == 400, resp
    headers = {"Content-Type": "application/json"}
    resp = request(weaviate.port, "POST", "/v1/batch/objects", headers=headers, body=b"")
    assert resp.status == 422, resp
    assert [v.source for v in weaviate.violations] == ["http", "http", "contract"]
    assert weaviate.classes == {}


# -- batches -----------------------------------------------------------------------------


def test_batch_objects_must_fit_the_class(memory):
    good = obj(event())
    bad = [
        obj(event(mood="happy")),  # undeclared property (auto-schema is off)
        obj(event(latencyMs="12")),  # int given as a string
        obj(event(latencyMs=12.5)),  # int given a fraction
        obj(event(tokensIn=True)),  # int given a boolean
        obj(event(content=42)),  # text given a number
        obj(event(truncated="false")),  # boolean given a string
        obj(event(timestamp="2025-01-01 00:00:00")),  # not RFC 3339
        obj(event(timestamp="2025-01-01T00:00:00")),  # no zone
    ]
    reply = batch(memory, [good] + bad)
    for item in reply:
        CONTRACT.check(item, "ObjectsGetResponse")
    assert statuses(reply) == ["SUCCESS"] + ["FAILED"] * len(bad)
    assert "no such prop with name 'mood'" in reply[1]["result"]["errors"]["error"][0]["message"]
    assert set(memory.objects) == {good["id"]}
    assert len(memory.violations) == len(bad)
    assert all(v.source == "weaviate" for v in memory.violations)
    assert [f.id for f in memory.failures] == [o["id"] for o in bad]


def test_batch_against_missing_class_fails_object_only(memory):
    reply = batch(memory, [obj({"name": "x"}, cls="Elsewhere"), obj(event())])
    assert statuses(reply) == ["FAILED", "SUCCESS"]
    assert "not found in schema" in reply[0]["result"]["errors"]["error"][0]["message"]
    assert memory.violations == []
    assert len(memory.failures) == 1 and not memory.failures[0].injected


def test_batch_body_breaking_the_contract_is_refused_whole(memory):
    resp = call(memory, "POST", "/v1/batch/objects", {"objects": [obj(event()), obj(event(), id="42")]})
    assert resp.status == 422, resp
    assert "$.objects[1].id" in resp.json()["error"][0]["message"]
    assert memory.objects == {} and memory.batch_count == 0
    assert [v.schema for v in memory.violations] == ["BatchObjects"]


def test_fail_objects_fails_exactly_those_once(memory):
    ids = [str(uuid.uuid4()) for _ in range(4)]
    objects = [obj(event(requestId=f"r-{i}"), ids[i]) for i in range(4)]
    memory.fail_objects([ids[1], ids[3].upper()])

    first = batch(memory, objects)
    assert statuses(first) == ["SUCCESS", "FAILED", "SUCCESS", "FAILED"]
    assert first[1]["result"]["errors"]["error"][0]["message"]
    assert set(memory.objects) == {ids[0], ids[2]}

    second = batch(memory, [objects[1], objects[3]])
    assert statuses(second) == ["SUCCESS", "SUCCESS"]
    assert set(memory.objects) == set(ids)
    assert [f.id for f in memory.failures] == [ids[1], ids[3]]
    assert all(f.injected for f in memory.failures)
    memory.assert_clean()


def test_fail_objects_by_predicate_and_times(memory):
    memory.fail_objects(lambda o: o["properties"].get("role") == "assistant", times=2)
    reply_obj = obj(event(role="assistant"))
    prompt_obj = obj(event(role="user"))
    assert statuses(batch(memory, [prompt_obj, reply_obj])) == ["SUCCESS", "FAILED"]
    assert statuses(batch(memory, [reply_obj])) == ["FAILED"]
    assert statuses(batch(memory, [reply_obj])) == ["SUCCESS"]
    assert memory.batch_count == 3


def test_batch_upserts_by_id(memory):
    oid = str(uuid.uuid4())
    first = batch(memory, [obj(event(content="draft"), oid)])[0]
    time.sleep(0.01)
    second = batch(memory, [obj(event(content="final", status="done"), oid.upper())])[0]
    assert second["id"] == oid
    stored = memory.objects
    assert list(stored) == [oid]
    assert stored[oid]["properties"]["content"] == "final"
    assert stored[oid]["properties"]["status"] == "done"
    assert stored[oid]["creationTimeUnix"] == first["creationTimeUnix"]
    assert stored[oid]["lastUpdateTimeUnix"] >= second["creationTimeUnix"]
    assert len(memory.find("MemoryEvent", content="final")) == 1


# -- controls ------------------------------------------------------------------------------


def test_api_key_is_required_when_set():
    with Weaviate(api_key="sekrit") as w:
        assert call(w, "GET", "/v1/meta").status == 401
        assert call(w, "GET", "/v1/meta", key="wrong").status == 401
        assert call(w, "GET", "/v1/meta", headers={"Authorization": "Basic sekrit"}).status == 401
        assert call(w, "POST", "/v1/schema", MEMORY_EVENT).status == 401
        assert w.classes == {}
        assert call(w, "GET", "/v1/meta", key="sekrit").status == 200
        assert call(w, "POST", "/v1/schema", MEMORY_EVENT, key="sekrit").status == 200
        # Readiness probes stay open, as in Weaviate.
        assert call(w, "GET", "/v1/.well-known/ready").status == 200
        w.api_key = None
        assert call(w, "GET", "/v1/schema").status == 200
        assert [r.status for r in w.requests_to("/v1/meta")] == [401, 401, 401, 200]


def test_down_refuses_connections_then_up_serves_same_data(memory):
    memory.add_object("MemoryEvent", event())
    memory.down()
    assert not memory.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", memory.port), timeout=2).close()
    with pytest.raises(ConnectionRefusedError):
        call(memory, "GET", "/v1/.well-known/ready")
    memory.up()
    assert call(memory, "GET", "/v1/.well-known/ready").status == 200
    assert len(graphql(memory, QUERY)["data"]["Get"]["MemoryEvent"]) == 1


def test_down_drops_kept_alive_connections(memory):
    conn = http.client.HTTPConnection("127.0.0.1", memory.port, timeout=5)
    try:
        conn.request("GET", "/v1/meta")
        assert json.loads(conn.getresponse().read())["version"]
        memory.down()
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            conn.request("GET", "/v1/meta")
            conn.getresponse().read()
    finally:
        conn.close()


def test_fail_and_recover(memory):
    memory.fail(503)
    resp = call(memory, "POST", "/v1/batch/objects", {"objects": [obj(event())]})
    assert resp.status == 503 and resp.json()["error"], resp
    assert call(memory, "GET", "/v1/.well-known/ready").status == 503
    memory.recover()
    assert call(memory, "GET", "/v1/.well-known/ready").status == 200
    assert memory.objects == {}

    memory.fail(500, times=1, path="/v1/batch/objects")
    assert call(memory, "GET", "/v1/meta").status == 200
    assert call(memory, "POST", "/v1/batch/objects", {"objects": [obj(event())]}).status == 500
    assert statuses(batch(memory, [obj(event())])) == ["SUCCESS"]
    assert memory.batch_count == 1


def test_stall_holds_answers(memory):
    memory.stall(0.6)
    started = time.monotonic()
    assert call(memory, "GET", "/v1/meta").status == 200
    assert time.monotonic() - started >= 0.55
    with pytest.raises(TimeoutError):
        call(memory, "GET", "/v1/meta", timeout=0.2)
    memory.stall(0)
    started = time.monotonic()
    assert call(memory, "GET", "/v1/meta").status == 200
    assert time.monotonic() - started < 0.5


def test_reset_forgets_everything(memory):
    memory.add_object("MemoryEvent", event())
    memory.fail(503)
    memory.reset()
    assert memory.objects == {} and memory.classes == {} and memory.requests == []
    assert call(memory, "GET", "/v1/schema").json() == {"classes": []}


# -- GraphQL -------------------------------------------------------------------------------


def seed(w):
    rows = [
        ("alice", "s1", "2025-03-01T10:00:00Z", "hello world"),
        ("alice", "s1", "2025-03-01T09:00:00+00:00", "Hello, again"),
        ("alice", "s1", "2025-03-01T10:45:00+01:00", "third"),  # 09:45Z: sorts by instant, not text
        ("alice", "s2", "2025-03-01T12:00:00Z", "other session"),
        ("alice smith", "s1", "2025-03-01T13:00:00Z", "field tokenization keeps names whole"),
        ("bob", "s1", "2025-03-01T14:00:00Z", "bob says hello"),
    ]
    return [w.add_object("MemoryEvent", event(u, s, t, content=c)) for u, s, t, c in rows]


def get(w, args, selection="content _additional { id }"):
    body = graphql(w, "{ Get { MemoryEvent(" + args + ") { " + selection + " } } }")
    assert "errors" not in body, body
    return body["data"]["Get"]["MemoryEvent"]


def test_graphql_where_limit_sort(memory):
    ids = seed(memory)
    where_alice_s1 = (
        'where: {operator: And, operands: [{path: ["user"], operator: Equal, valueText: "alice"}, '
        '{path: ["session"], operator: Equal, valueText: "s1"}]}'
    )
    rows = get(memory, where_alice_s1 + ', sort: [{path: ["timestamp"], order: desc}]')
    assert [r["_additional"]["id"] for r in rows] == [ids[0], ids[2], ids[1]]
    rows = get(memory, where_alice_s1 + ', sort: {path: "timestamp", order: asc}, limit: 2')
    assert [r["_additional"]["id"] for r in rows] == [ids[1], ids[2]]
    rows = get(memory, where_alice_s1 + ", limit: 0")
    assert rows == []

    # A single operand; field tokenization matches the whole value only.
    rows = get(memory, 'where: {path: ["user"], operator: Equal, valueText: "alice smith"}')
    assert [r["_additional"]["id"] for r in rows] == [ids[4]]
    # Word tokenization (content): every token of the value must occur.
    hello = 'where: {path: ["content"], operator: Equal, valueText: "HELLO"}'
    rows = get(memory, hello + ', sort: [{path: ["timestamp"]}]')
    assert [r["content"] for r in rows] == ["Hello, again", "hello world", "bob says hello"]
    rows = get(memory, 'where: {path: ["content"], operator: Equal, valueText: "hello bob"}')
    assert [r["content"] for r in rows] == ["bob says hello"]

    # The object id itself, as path ["id"], combined with the owner.
    by_id = (
        'where: {operator: And, operands: [{path: ["user"], operator: Equal, valueText: "alice"}, '
        '{path: ["id"], operator: Equal, valueText: "' + ids[2].upper() + '"}]}'
    )
    assert [r["_additional"]["id"] for r in get(memory, by_id)] == [ids[2]]
    not_owner = by_id.replace('"alice"', '"bob"')
    assert get(memory, not_owner) == []

    # String escapes, comments and the default limit.
    memory.add_object("MemoryEvent", event('qu"ote\\d', "s\u00e9"))
    quoted = '# a comment\n where: {path: ["user"], operator: Equal, valueText: "qu\\"ote\\\\d"}'
    rows = get(memory, quoted, "user session")
    assert rows == [{"user": 'qu"ote\\d', "session": "s\u00e9"}]
    for i in range(12):
        memory.add_object("MemoryEvent", event("carol", f"c{i}"))
    assert len(get(memory, 'where: {path: ["user"], operator: Equal, valueText: "carol"}')) == 10
    memory.assert_clean()


def where(path, value, operator="Equal", kind="valueText"):
    return f"where: {{path: [{json.dumps(path)}], operator: {operator}, {kind}: {value}}}"


def query(args="", selection="content"):
    return "{ Get { MemoryEvent" + (f"({args})" if args else "") + " { " + selection + " } } }"


@pytest.mark.parametrize(
    "source, unsupported",
    [
        ("{ Get { MemoryEvent { content } }", False),  # unbalanced
        (query(where("user", '"a"', operator='"Equal"')), False),  # enum as a string
        (query('sort: [{path: ["timestamp"], order: "desc"}]'), False),
        (query('limit: "5"'), False),
        (query("limit: 5abc"), False),
        (query(selection="nope"), False),
        ("{ Get { Nothing { content } } }", False),
        (query(where("latencyMs", '"5"')), False),  # valueText on an int
        (query(where("nope", '"5"')), False),
        (query(where("user", '"a\\q"')), False),  # bad escape
        (query(where("user", '"a"') + ", where: {}"), False),  # argument twice
        (query(where("latencyMs", "5", operator="GreaterThan", kind="valueInt")), True),
        (query("where: {operator: Or, operands: []}"), True),
        (query('nearText: {concepts: ["x"]}'), True),
        (query('sort: [{path: ["user"]}, {path: ["session"]}]'), True),
        (query(selection="content _additional { id distance }"), True),
        ("{ Aggregate { MemoryEvent { meta { count } } } }", True),
        ("query Q($u: String) { Get { MemoryEvent { content } } }", True),
        (query(selection="c: content"), True),
        (query(selection="... on MemoryEvent { content }"), True),
    ],
)
def test_graphql_outside_the_subset_gets_errors(memory, source, unsupported):
    body = graphql(memory, source)
    assert "data" not in body and body["errors"][0]["message"], body
    assert memory.graphql_errors[-1][0] == source
    assert bool(memory.unsupported) == unsupported, memory.unsupported
    assert memory.violations == []


def test_graphql_body_must_match_the_contract(memory):
    resp = call(memory, "POST", "/v1/graphql", {"query": {"Get": {}}})
    assert resp.status == 422, resp
    assert [v.schema for v in memory.violations] == ["GraphQLQuery"]


def test_graphql_parser_shapes():
    source = 'query Named {\n Get { C(limit: 5, where: {a: [1, 2.5, true, null, E, "s"]}) { x } } }'
    [get_field] = parse_graphql(source)
    [cls] = get_field.selections
    assert cls.args["limit"].plain() == 5
    assert cls.args["where"].plain() == {"a": [1, 2.5, True, None, "E", "s"]}
    assert cls.args["where"].value["a"].value[4].kind == "enum"
    assert [s.name for s in cls.selections] == ["x"]


def test_unknown_endpoints_are_recorded(memory):
    resp = call(memory, "DELETE", "/v1/schema/MemoryEvent")
    assert resp.status == 404
    resp = call(memory, "POST", "/v1/objects", obj(event()))
    assert resp.status == 404
    assert [(u.method, u.path) for u in memory.unsupported] == [
        ("DELETE", "/v1/schema/MemoryEvent"),
        ("POST", "/v1/objects"),
    ]
    with pytest.raises(AssertionError):
        memory.assert_clean()
