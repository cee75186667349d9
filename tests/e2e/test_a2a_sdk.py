"""A2A through the gateway with the official Python SDK on both sides.

Client (a2a-sdk) -> Envoy + filter -> attach-a2a -> downstream agent (a2a-sdk
server). The service's card is public; everything else needs a token.
Protocol 1.0 (A2A-Version: 1.0) and 0.3 are both spoken by the SDK: the 1.0
client through the card's 1.0 interface, the 0.3 client through its 0.3
one (the SDK's compat transport, which sends A2A-Version: 0.3); 0.3 without
any version header is checked with raw JSON-RPC.
"""

import asyncio
import time

import httpx
import pytest
from google.protobuf import json_format
from a2a.types import a2a_pb2 as pb
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError

from a2a_agents import (
    SdkAgent,
    agent_base,
    resolve_card,
    sdk_client,
    send,
    task_texts,
)
from stack import launch_stack

TERMINAL = (
    pb.TaskState.TASK_STATE_COMPLETED,
    pb.TaskState.TASK_STATE_FAILED,
    pb.TaskState.TASK_STATE_CANCELED,
    pb.TaskState.TASK_STATE_REJECTED,
)


@pytest.fixture(scope="module")
def a2a(tmp_path_factory, artifacts):
    with SdkAgent("upper") as agent:
        agents = f"upper={agent.url};protocol=1.0,upper03={agent.url};protocol=0.3"
        workdir = tmp_path_factory.mktemp("a2a-sdk")
        with launch_stack(workdir, a2a=True, env={"A2A_AGENTS": agents}) as s:
            s.agent = agent
            yield s


def run(coro):
    return asyncio.run(coro)


async def _client(s, name, version, sub="alice"):
    card = await resolve_card(s.gateway, name)
    return sdk_client(card, s.token(sub=sub), version)


async def _wait_settled(client, task_id, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        task = await client.get_task(pb.GetTaskRequest(id=task_id))
        if task.status.state in TERMINAL or time.monotonic() > deadline:
            return task
        await asyncio.sleep(0.2)


# -- cards -------------------------------------------------------------------


def test_card_is_public_through_the_sdk_resolver(a2a):
    card = run(resolve_card(a2a.gateway, "upper"))
    assert card.name == "upper"
    assert card.skills[0].id == "upper", "the downstream card's skills are kept"
    urls = {(i.protocol_binding, i.protocol_version, i.url) for i in card.supported_interfaces}
    base = agent_base(a2a.gateway, "upper")
    assert ("JSONRPC", "1.0", base) in urls
    assert ("JSONRPC", "0.3", base) in urls
    assert card.capabilities.streaming
    assert "bearer" in card.security_schemes


def test_card_parses_as_a_1_0_card_without_legacy_mapping(a2a):
    """The raw card read by the 1.0 schema alone (no 0.3 compatibility step)."""
    raw = a2a.get("/a2a/agents/upper/.well-known/agent-card.json").json()
    card = json_format.ParseDict(raw, pb.AgentCard(), ignore_unknown_fields=True)
    bearer = card.security_schemes["bearer"]
    assert bearer.WhichOneof("scheme") == "http_auth_security_scheme", bearer
    assert bearer.http_auth_security_scheme.scheme == "bearer"
    assert bearer.http_auth_security_scheme.bearer_format == "JWT"
    assert [list(r.schemes) for r in card.security_requirements][0] == ["bearer"]
    assert {i.protocol_version for i in card.supported_interfaces} == {"1.0", "0.3"}
    # The 0.3 shape is served at the 0.3 card path only.
    assert "type" not in raw["securitySchemes"]["bearer"] and "security" not in raw
    legacy = a2a.get("/a2a/agents/upper/.well-known/agent.json").json()
    assert legacy["securitySchemes"]["bearer"]["type"] == "http"
    assert legacy["security"][0] == {"bearer": []}


def test_only_card_paths_are_public(a2a):
    base = "/a2a/agents/upper"
    r = a2a.get(f"{base}/.well-known/agent-card.json")
    assert r.status == 200, r
    assert r.json()["supportedInterfaces"][0]["url"].endswith(base)
    r = a2a.get(f"{base}/.well-known/agent.json")
    assert r.status == 200, r
    assert r.json()["url"].endswith(base)
    # The JSON-RPC endpoint, unregistered agents' cards, the other routes: token needed.
    body = b'{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"id":"x"}}'
    assert a2a.request("POST", base, body=body, headers={"Content-Type": "application/json"}).status == 401
    assert a2a.get("/a2a/agents/nobody/.well-known/agent-card.json").status == 401
    assert a2a.get("/a2a/tasks/status/x").status == 401
    assert a2a.get("/mem/events").status == 401
    assert a2a.upstream.requests == [], "A2A paths must not reach the engine"


def test_healthz_stays_on_the_engine_route(a2a):
    a2a.upstream.clear()
    r = a2a.get("/healthz")
    assert [q.path for q in a2a.upstream.requests] == ["/healthz"], r
    assert a2a.get("/metrics", token=a2a.token()).status == 200
    assert a2a.upstream.last().path == "/metrics", "service metrics are not exposed"


# -- protocol 1.0 ------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0", "0.3"])
def test_blocking_send_and_get(a2a, version):
    async def go():
        client, http = await _client(a2a, "upper", version)
        async with http:
            task = await send(client, f"hello {version}")
            assert isinstance(task, pb.Task), task
            assert task.status.state == pb.TaskState.TASK_STATE_COMPLETED, task
            assert f"HELLO {version}" in task_texts(task), task
            again = await client.get_task(pb.GetTaskRequest(id=task.id))
            assert again.id == task.id
            assert again.status.state == pb.TaskState.TASK_STATE_COMPLETED
            assert f"HELLO {version}" in task_texts(again)
            return task

    task = run(go())
    assert any(text == f"hello {version}" for text, _ in a2a.agent.executor.seen)
    assert task.context_id


@pytest.mark.parametrize("version", ["1.0", "0.3"])
def test_non_blocking_send_then_poll(a2a, version):
    async def go():
        client, http = await _client(a2a, "upper", version)
        async with http:
            task = await send(client, "sleep 0.5", return_immediately=True)
            assert task.status.state in (
                pb.TaskState.TASK_STATE_SUBMITTED,
                pb.TaskState.TASK_STATE_WORKING,
            ), task
            done = await _wait_settled(client, task.id)
            assert done.status.state == pb.TaskState.TASK_STATE_COMPLETED, done
            assert "SLEEP 0.5" in task_texts(done)

    run(go())


@pytest.mark.parametrize("version", ["1.0", "0.3"])
def test_cancel_a_running_task(a2a, version):
    async def go():
        client, http = await _client(a2a, "upper", version)
        async with http:
            task = await send(client, "sleep 2", return_immediately=True)
            canceled = await client.cancel_task(pb.CancelTaskRequest(id=task.id))
            assert canceled.id == task.id
            assert canceled.status.state == pb.TaskState.TASK_STATE_CANCELED, canceled
            # The agent's late answer does not bring the task back.
            await asyncio.sleep(2.5)
            after = await client.get_task(pb.GetTaskRequest(id=task.id))
            assert after.status.state == pb.TaskState.TASK_STATE_CANCELED, after
            # A finished task cannot be canceled again (-32002, typed by the SDK).
            with pytest.raises(TaskNotCancelableError):
                await client.cancel_task(pb.CancelTaskRequest(id=task.id))

    run(go())


def test_v1_list_tasks(a2a):
    async def go():
        client, http = await _client(a2a, "upper", "1.0", sub="lister")
        async with http:
            ids = [(await send(client, f"item {n}")).id for n in range(3)]
            listed = await client.list_tasks(pb.ListTasksRequest(page_size=2))
            assert listed.total_size == 3, listed
            assert len(listed.tasks) == 2
            assert listed.next_page_token
            rest = await client.list_tasks(
                pb.ListTasksRequest(page_size=2, page_token=listed.next_page_token)
            )
            assert len(rest.tasks) == 1
            assert not rest.next_page_token
            assert {t.id for t in listed.tasks} | {t.id for t in rest.tasks} == set(ids)
            done = await client.list_tasks(
                pb.ListTasksRequest(status=pb.TaskState.TASK_STATE_COMPLETED)
            )
            assert {t.id for t in done.tasks} == set(ids)

    run(go())


def test_unknown_task_is_task_not_found(a2a):
    async def go():
        client, http = await _client(a2a, "upper", "1.0")
        async with http:
            # -32001, typed by the SDK.
            with pytest.raises(TaskNotFoundError):
                await client.get_task(pb.GetTaskRequest(id="no-such-task"))

    run(go())


def test_agent_registered_as_0_3_is_reached_with_0_3(a2a):
    """The service speaks 0.3 to `upper03` and 1.0 to the caller."""
    async def go():
        client, http = await _client(a2a, "upper03", "1.0")
        async with http:
            task = await send(client, "old protocol")
            assert task.status.state == pb.TaskState.TASK_STATE_COMPLETED, task
            assert "OLD PROTOCOL" in task_texts(task)

    run(go())


# -- raw JSON-RPC: 0.3 without a version header, and errors --------------------


def _rpc(s, name, method, params, version=None, sub="alice"):
    headers = {"Authorization": f"Bearer {s.token(sub=sub)}"}
    if version:
        headers["A2A-Version"] = version
    r = httpx.post(
        agent_base(s.gateway, name),
        json={"jsonrpc": "2.0", "id": 7, "method": method, "params": params},
        headers=headers,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["id"] == 7, body
    return body


def test_v03_without_version_header(a2a):
    message = {
        "kind": "message",
        "messageId": "raw-1",
        "role": "user",
        "parts": [{"kind": "text", "text": "no header"}],
    }
    body = _rpc(a2a, "upper", "message/send", {"message": message})
    task = body["result"]
    assert task["kind"] == "task", body
    assert task["status"]["state"] == "completed", body
    got = _rpc(a2a, "upper", "tasks/get", {"id": task["id"]})["result"]
    assert got["id"] == task["id"] and got["status"]["state"] == "completed"
    # 1.0 method names are not 0.3 methods.
    err = _rpc(a2a, "upper", "GetTask", {"id": task["id"]})["error"]
    assert err["code"] == -32601, err


def test_v1_raw_shapes(a2a):
    message = {"messageId": "raw-2", "role": "ROLE_USER", "parts": [{"text": "raw one"}]}
    body = _rpc(a2a, "upper", "SendMessage", {"message": message}, version="1.0")
    task = body["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED", body
    err = _rpc(a2a, "upper", "GetTask", {"id": "missing"}, version="1.0")["error"]
    assert err["code"] == -32001, err
    err = _rpc(a2a, "upper", "GetTask", {"id": "x"}, version="2.0")["error"]
    assert err["code"] == -32009, err
