"""The A2A service's own routes through the gateway: the seed task routes
with an `http` agent, memory documents, isolation between users, and the
gateway's identity token that makes a direct call to the service's port
useless, even with the assertion key."""

import base64
import hashlib
import hmac
import json
import os
import time

import httpx
import pytest

from a2a_agents import JsonAgent, SdkAgent, agent_base
from stack import launch_stack


@pytest.fixture(scope="module")
def svc(tmp_path_factory, artifacts):
    with JsonAgent() as seed, SdkAgent("upper") as upper:
        agents = f"seed={seed.url};kind=http;timeout=10,upper={upper.url}"
        workdir = tmp_path_factory.mktemp("a2a-service")
        with launch_stack(workdir, a2a=True, env={"A2A_AGENTS": agents}) as s:
            s.seed = seed
            yield s


JSON = {"Content-Type": "application/json"}


def call(s, method, path, sub="alice", body=None, headers=None):
    h = dict(JSON)
    h.update(headers or {})
    data = None if body is None else json.dumps(body).encode()
    return s.request(method, path, headers=h, body=data, token=s.token(sub=sub))


def wait_status(s, task_id, sub="alice", timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        r = call(s, "GET", f"/a2a/tasks/status/{task_id}", sub=sub)
        assert r.status == 200, r
        doc = r.json()
        if doc["state"] not in ("submitted", "working") or time.monotonic() > deadline:
            return doc
        time.sleep(0.1)


# -- seed routes with an http agent --------------------------------------------


def test_seed_send_and_status(svc):
    r = call(svc, "POST", "/a2a/tasks/send", body={"target": "seed", "input": {"q": [1, 2]}})
    assert r.status == 200, r
    started = r.json()
    assert started["state"] in ("submitted", "working", "completed"), started
    doc = wait_status(svc, started["task_id"])
    assert doc["state"] == "completed", doc
    assert doc["agent"] == "seed"
    assert doc["result"] == {"echo": {"q": [1, 2]}, "user": "alice"}, doc
    # The agent saw the caller's identity, asserted by the service, not the token.
    seen = svc.seed.requests[-1]
    assert seen["user"] == "alice"
    assert seen["headers"].get("x-attach-assertion", "").startswith("v2.")
    assert "authorization" not in seen["headers"], "no forward_bearer: no token downstream"


def test_seed_refuses_unregistered_targets(svc):
    r = call(svc, "POST", "/a2a/tasks/send", body={"target": "nobody", "input": 1})
    assert r.status == 404, r
    r = call(
        svc, "POST", "/a2a/tasks/send", body={"target_url": "http://127.0.0.1:9/", "input": 1}
    )
    assert r.status == 400, r
    assert svc.seed.requests == [] or all(q["body"] != 1 for q in svc.seed.requests)


# -- memory --------------------------------------------------------------------


def test_memory_create_fetch_and_list(svc):
    sub = "memo"
    ids = {}
    for kind, task in (("note", "t-1"), ("note", "t-2"), ("fact", "t-1")):
        r = call(
            svc, "POST", "/mem/events", sub=sub,
            body={"kind": kind, "content": {"text": f"{kind} {task}"}, "task_id": task},
        )
        assert r.status == 200, r
        ids[(kind, task)] = r.json()["mem_id"]

    r = call(svc, "GET", f"/mem/events/{ids[('fact', 't-1')]}", sub=sub)
    assert r.status == 200, r
    doc = r.json()
    assert doc["mem_id"] == ids[("fact", "t-1")]
    assert doc["kind"] == "fact" and doc["task_id"] == "t-1"
    assert doc["content"] == {"text": "fact t-1"}
    session = doc["session"]
    assert session, "the filter's session is recorded"

    def listed(query=""):
        r = call(svc, "GET", f"/mem/events{query}", sub=sub)
        assert r.status == 200, r
        return [e["mem_id"] for e in r.json()["events"]]

    assert sorted(listed()) == sorted(ids.values())
    assert listed()[0] == ids[("fact", "t-1")], "newest first"
    assert sorted(listed("?kind=note")) == sorted([ids[("note", "t-1")], ids[("note", "t-2")]])
    assert sorted(listed("?task_id=t-1")) == sorted([ids[("note", "t-1")], ids[("fact", "t-1")]])
    assert listed("?kind=fact&task_id=t-2") == []
    assert len(listed("?limit=2")) == 2
    assert sorted(listed(f"?session={session}")) == sorted(ids.values())
    assert listed("?session=other") == []
    assert call(svc, "GET", "/mem/events?limit=0", sub=sub).status == 400


# -- isolation between users ------------------------------------------------------


def _rpc(s, sub, method, params):
    r = httpx.post(
        agent_base(s.gateway, "upper"),
        json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
        headers={"Authorization": f"Bearer {s.token(sub=sub)}", "A2A-Version": "1.0"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_users_cannot_see_each_others_tasks_or_memory(svc):
    message = {"messageId": "iso-1", "role": "ROLE_USER", "parts": [{"text": "mine"}]}
    task = _rpc(svc, "alice", "SendMessage", {"message": message})["result"]["task"]
    assert _rpc(svc, "alice", "GetTask", {"id": task["id"]})["result"]["id"] == task["id"]
    for method in ("GetTask", "CancelTask"):
        err = _rpc(svc, "bob", method, {"id": task["id"]})["error"]
        assert err["code"] == -32001, (method, err)
    listed = _rpc(svc, "bob", "ListTasks", {})["result"]
    assert all(t["id"] != task["id"] for t in listed["tasks"]), listed

    r = call(svc, "POST", "/a2a/tasks/send", body={"target": "seed", "input": "x"})
    seed_task = r.json()["task_id"]
    assert call(svc, "GET", f"/a2a/tasks/status/{seed_task}", sub="bob").status == 404

    r = call(svc, "POST", "/mem/events", body={"kind": "secret", "content": "alice only"})
    mem_id = r.json()["mem_id"]
    assert call(svc, "GET", f"/mem/events/{mem_id}", sub="bob").status == 404
    bobs = call(svc, "GET", "/mem/events?kind=secret", sub="bob").json()["events"]
    assert bobs == []


def test_identity_headers_cannot_be_forged_through_the_gateway(svc):
    forged = {"X-Attach-User": "carol", "X-Attach-Session": "s", "X-Attach-Assertion": "v1.1.x"}
    r = call(svc, "POST", "/mem/events", sub="dave", body={"kind": "k", "content": 1},
             headers=forged)
    assert r.status == 200, r
    mem_id = r.json()["mem_id"]
    assert call(svc, "GET", f"/mem/events/{mem_id}", sub="dave").status == 200
    assert call(svc, "GET", f"/mem/events/{mem_id}", sub="carol").status == 404


# -- the service's port, reached directly ---------------------------------------------


def _assertion(key, user, session, exp, audience="attach-a2a"):
    mac = hmac.new(key, f"v2\n{audience}\n{exp}\n{user}\n{session}".encode(), hashlib.sha256)
    return f"v2.{exp}.{audience}.{base64.urlsafe_b64encode(mac.digest()).rstrip(b'=').decode()}"


def test_direct_calls_without_a_valid_assertion_are_refused(svc):
    port = svc.gateway.a2a_port
    direct = f"http://127.0.0.1:{port}"
    exp = int(time.time()) + 60
    wrong_key = os.urandom(32)
    attempts = [
        {"X-Attach-User": "mallory", "X-Attach-Session": "s1"},
        {"X-Attach-User": "mallory", "X-Attach-Session": "s1", "X-Attach-Assertion": "v2.1.attach-a2a.AAAA"},
        {
            "X-Attach-User": "mallory",
            "X-Attach-Session": "s1",
            "X-Attach-Assertion": _assertion(wrong_key, "mallory", "s1", exp),
        },
    ]
    message = {"messageId": "d-1", "role": "ROLE_USER", "parts": [{"text": "direct"}]}
    requests = [
        ("POST", "/mem/events", {"kind": "forged", "content": "x"}),
        ("POST", "/a2a/tasks/send", {"target": "seed", "input": "forged"}),
        ("POST", "/a2a/agents/upper", {
            "jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message},
        }),
        ("GET", "/mem/events", None),
    ]
    before = len(svc.seed.requests)
    for headers in attempts:
        for method, path, body in requests:
            h = dict(headers, **({"A2A-Version": "1.0"} if path.startswith("/a2a/agents") else {}))
            r = httpx.request(method, direct + path, json=body, headers=h, timeout=10)
            assert r.status_code == 401, (headers, path, r.status_code, r.text)
    # Nothing was written for mallory, and nothing was forwarded.
    assert call(svc, "GET", "/mem/events", sub="mallory").json()["events"] == []
    listed = _rpc(svc, "mallory", "ListTasks", {})["result"]
    assert listed["tasks"] == [] and listed["totalSize"] == 0, listed
    assert len(svc.seed.requests) == before
    # The card needs no identity, directly or not; health is for the launcher.
    assert httpx.get(direct + "/healthz", timeout=10).status_code == 200


def test_the_shared_key_is_private_and_named_in_the_plugin_config(svc):
    data = svc.gateway.data_dir
    key_file = data / "assertion.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert len(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))) == 32
    plugin = json.loads((data / f"run-{svc.gateway.port}" / "plugin.json").read_text())
    # The plugin configuration names the variable of Envoy's environment that
    # holds the key, never the key itself (Envoy's admin can print it).
    assert plugin["assertion_key_env"] == "ATTACH_ASSERTION_KEY"
    assert plugin.get("assertion_key") is None
    assert key not in json.dumps(plugin)
    assert "/a2a/agents/seed/.well-known/agent-card.json" in plugin["public_paths"]
    assert not any(p.startswith("/a2a") and p.endswith("*") for p in plugin["public_paths"])
    # Even with the key, a direct call is refused: the service has the
    # gateway's signing keys, and then only the gateway's identity token
    # (X-Attach-Identity, signed for attach-a2a) names a caller.
    exp = int(time.time()) + 60
    r = httpx.get(
        f"http://127.0.0.1:{svc.gateway.a2a_port}/mem/events",
        headers={
            "X-Attach-User": "alice",
            "X-Attach-Session": "s1",
            "X-Attach-Assertion": _assertion(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)),
                                             "alice", "s1", exp),
        },
        timeout=10,
    )
    assert r.status_code == 401, r.text
    assert "X-Attach-Identity" in r.json()["message"], r.text


def _key(svc):
    text = (svc.gateway.data_dir / "assertion.key").read_text().strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_an_agent_calling_back_continues_its_callers_session(svc):
    """An agent behind the gateway that calls it again for the same caller
    (same token) presents the session and assertion it was given: the
    gateway keeps that session. Anything less gets the usual derived one."""
    key, now = _key(svc), int(time.time())

    def stamped(sub, headers):
        svc.upstream.clear()
        r = svc.request("GET", "/api/tags", headers=list(headers.items()), token=svc.token(sub=sub))
        assert r.status == 200, r
        seen = svc.upstream.last().header("x-attach-session")
        assert r.header("x-attach-session") == seen
        return seen

    derived = stamped("alice", {})
    carried = {"X-Attach-Session": "planner-run-1",
               "X-Attach-Assertion": _assertion(key, "alice", "planner-run-1", now + 60)}
    assert stamped("alice", carried) == "planner-run-1"
    # Long after the assertion's own expiry (a slow model call) it still carries the session.
    old = dict(carried, **{"X-Attach-Assertion": _assertion(key, "alice", "planner-run-1", now - 3600)})
    assert stamped("alice", old) == "planner-run-1"
    # Not for another user, not with another key, not for another session.
    assert stamped("bob", carried) != "planner-run-1"
    forged = dict(carried, **{"X-Attach-Assertion": _assertion(os.urandom(32), "alice", "planner-run-1", now + 60)})
    assert stamped("alice", forged) == derived
    swapped = dict(carried, **{"X-Attach-Session": "planner-run-2"})
    assert stamped("alice", swapped) == derived
