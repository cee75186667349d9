"""The A2A 1.0 HTTP+JSON binding (specification section 11) through the real
Envoy, filter and service: the official SDK (a2a-sdk) with its REST
transport, picked from the card's HTTP+JSON interface, for the operations,
and raw httpx for the shapes of errors (google.rpc.Status with ErrorInfo,
section 11.6, at the HTTP statuses of section 5.4). Documents are validated
against schemas/a2a-1.0.json where the specification has a message for them.
"""

import asyncio
import json
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
from a2a.client import ClientConfig, ClientFactory
from a2a.client.transports.rest import RestTransport
from a2a.types import a2a_pb2 as pb
from a2a.utils.constants import TransportProtocol
from a2a.utils.errors import (
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
)

from a2a_agents import SdkAgent, agent_base, resolve_card, send, task_texts
from stack import launch_stack

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "a2a-1.0.json").read_text())
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def assert_valid(document, message):
    """document is a valid lf.a2a.v1.<message> in ProtoJSON."""
    schema = {"$ref": f"#/$defs/lf.a2a.v1.{message}", "$defs": SCHEMA["$defs"]}
    jsonschema.Draft202012Validator(schema).validate(document)


@pytest.fixture(scope="module")
def a2a(tmp_path_factory, artifacts):
    with SdkAgent("upper") as upper:
        workdir = tmp_path_factory.mktemp("a2a-rest")
        with launch_stack(workdir, a2a=True, env={"A2A_AGENTS": f"upper={upper.url}"}) as s:
            yield s


def run(coro):
    return asyncio.run(coro)


def rest_client(card, token):
    """An SDK client that speaks the card's HTTP+JSON interface only."""
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    config = ClientConfig(
        streaming=False,
        httpx_client=http,
        supported_protocol_bindings=[TransportProtocol.HTTP_JSON],
    )
    client = ClientFactory(config).create(card)
    assert isinstance(client._transport, RestTransport), client._transport
    return client, http


def call(s, method, path, sub="alice", version="1.0", **kw):
    """A raw request to the agent's REST path through the gateway."""
    headers = {"Authorization": f"Bearer {s.token(sub=sub)}", **kw.pop("headers", {})}
    if version:
        headers["A2A-Version"] = version
    url = agent_base(s.gateway, "upper") + path
    return httpx.request(method, url, headers=headers, timeout=60, **kw)


def message(text, context_id=None):
    m = {"messageId": f"m-{time.monotonic_ns()}", "role": "ROLE_USER", "parts": [{"text": text}]}
    if context_id:
        m["contextId"] = context_id
    return m


def status_error(r, status):
    """The google.rpc.Status of an error response (section 11.6), checked."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/a2a+json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == status, body
    assert isinstance(error["status"], str) and error["status"].isupper(), body
    assert isinstance(error["message"], str) and error["message"], body
    assert all("@type" in d for d in error["details"]), body
    return error


def reason(error):
    infos = [d for d in error["details"] if d["@type"] == ERROR_INFO]
    assert len(infos) == 1, error
    assert infos[0]["domain"] == "a2a-protocol.org", error
    return infos[0]["reason"]


# -- section 5.2: the card declares the binding ----------------------------------


def test_section_5_2_card_lists_the_http_json_interface(a2a):
    r = httpx.get(f"{agent_base(a2a.gateway, 'upper')}/.well-known/agent-card.json", timeout=20)
    assert r.status_code == 200, r.text
    card = r.json()
    assert_valid(card, "AgentCard")
    base = agent_base(a2a.gateway, "upper")
    assert {"url": base, "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"} in card[
        "supportedInterfaces"
    ], card
    # JSON-RPC stays first, for clients that take the first interface.
    assert card["supportedInterfaces"][0]["protocolBinding"] == "JSONRPC"


# -- section 11.3: the operations, with the SDK's REST transport ---------------


def test_section_11_3_sdk_rest_client_sends_gets_lists_and_cancels(a2a):
    async def go():
        card = await resolve_card(a2a.gateway, "upper")
        client, http = rest_client(card, a2a.token(sub="rest-sdk"))
        async with http:
            task = await send(client, "hello rest")
            assert isinstance(task, pb.Task), task
            assert task.status.state == pb.TaskState.TASK_STATE_COMPLETED, task
            assert "HELLO REST" in task_texts(task)
            again = await client.get_task(pb.GetTaskRequest(id=task.id, history_length=1))
            assert again.id == task.id and len(again.history) == 1, again
            listed = await client.list_tasks(pb.ListTasksRequest(page_size=1))
            assert listed.total_size == 1 and [t.id for t in listed.tasks] == [task.id]
            assert not listed.next_page_token
            running = await send(client, "sleep 2", return_immediately=True)
            canceled = await client.cancel_task(pb.CancelTaskRequest(id=running.id))
            assert canceled.id == running.id
            assert canceled.status.state == pb.TaskState.TASK_STATE_CANCELED, canceled
            both = await client.list_tasks(
                pb.ListTasksRequest(status=pb.TaskState.TASK_STATE_CANCELED)
            )
            assert [t.id for t in both.tasks] == [running.id], both
            # The A2A errors come back typed: the SDK reads their ErrorInfo.
            with pytest.raises(TaskNotCancelableError):
                await client.cancel_task(pb.CancelTaskRequest(id=running.id))
            with pytest.raises(TaskNotFoundError):
                await client.get_task(pb.GetTaskRequest(id="no-such-task"))
            with pytest.raises(PushNotificationNotSupportedError):
                await client.create_task_push_notification_config(
                    pb.TaskPushNotificationConfig(task_id=task.id, url="https://hook.example/")
                )

    run(go())


def test_section_11_4_responses_validate(a2a):
    sub = "rest-shapes"
    r = call(a2a, "POST", "/message:send", sub=sub, json={"message": message("shape")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/a2a+json")
    assert_valid(r.json(), "SendMessageResponse")
    task_id = r.json()["task"]["id"]
    r = call(a2a, "GET", f"/tasks/{task_id}", sub=sub, params={"historyLength": "1"})
    assert r.status_code == 200, r.text
    assert_valid(r.json(), "Task")
    assert len(r.json()["history"]) == 1
    r = call(a2a, "GET", "/tasks", sub=sub, params={"includeArtifacts": "true", "pageSize": "5"})
    assert r.status_code == 200, r.text
    assert_valid(r.json(), "ListTasksResponse")
    assert r.json()["tasks"][0]["artifacts"], "includeArtifacts=true keeps them"
    r = call(a2a, "GET", "/tasks", sub=sub)
    assert "artifacts" not in r.json()["tasks"][0], "left out by default (section 3.1.4)"
    # A request without A2A-Version is read as 1.0: this binding is 1.0 only.
    r = call(a2a, "GET", f"/tasks/{task_id}", sub=sub, version=None)
    assert r.status_code == 200, r.text


def test_section_11_3_same_store_as_json_rpc(a2a):
    sub = "both-bindings"
    r = httpx.post(
        agent_base(a2a.gateway, "upper"),
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendMessage",
            "params": {"message": message("over json-rpc")},
        },
        headers={"Authorization": f"Bearer {a2a.token(sub=sub)}", "A2A-Version": "1.0"},
        timeout=60,
    )
    rpc_task = r.json()["result"]["task"]
    rest_task = call(a2a, "GET", f"/tasks/{rpc_task['id']}", sub=sub).json()
    assert rest_task == rpc_task


# -- sections 11.6 and 5.4: errors ------------------------------------------------


def test_section_11_6_unknown_task_is_404_with_error_info(a2a):
    error = status_error(call(a2a, "GET", "/tasks/no-such-task"), 404)
    assert error["status"] == "NOT_FOUND"
    assert reason(error) == "TASK_NOT_FOUND"
    cancel = status_error(call(a2a, "POST", "/tasks/no-such-task:cancel"), 404)
    assert cancel == error


def test_section_13_1_users_are_isolated(a2a):
    r = call(a2a, "POST", "/message:send", sub="owner", json={"message": message("mine")})
    task_id = r.json()["task"]["id"]
    unknown = call(a2a, "GET", "/tasks/00000000-0000-4000-8000-000000000000", sub="intruder")
    theirs = call(a2a, "GET", f"/tasks/{task_id}", sub="intruder")
    # Another user's task answers exactly as one that does not exist.
    assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json())
    status_error(theirs, 404)
    theirs = call(a2a, "POST", f"/tasks/{task_id}:cancel", sub="intruder")
    assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json())
    listed = call(a2a, "GET", "/tasks", sub="intruder").json()
    assert listed["tasks"] == [] and listed["totalSize"] == 0, listed
    mine = call(a2a, "GET", f"/tasks/{task_id}", sub="owner")
    assert mine.status_code == 200 and mine.json()["status"]["state"] == "TASK_STATE_COMPLETED"


def test_section_5_4_a_finished_task_is_not_cancelable_400(a2a):
    r = call(a2a, "POST", "/message:send", sub="done", json={"message": message("done")})
    task_id = r.json()["task"]["id"]
    error = status_error(call(a2a, "POST", f"/tasks/{task_id}:cancel", sub="done"), 400)
    assert (error["status"], reason(error)) == ("FAILED_PRECONDITION", "TASK_NOT_CANCELABLE")


@pytest.mark.parametrize(
    "method,path,kw",
    [
        ("GET", "/tasks", {"params": {"pageSize": "many"}}),
        ("GET", "/tasks", {"params": {"pageSize": "0"}}),
        ("GET", "/tasks", {"params": {"includeArtifacts": "yes"}}),
        ("GET", "/tasks", {"params": {"status": "TASK_STATE_RUNNING"}}),
        ("GET", "/tasks", {"params": [("pageSize", "1"), ("pageSize", "2")]}),
        ("GET", "/tasks/some-task", {"params": {"historyLength": "-1"}}),
        ("POST", "/message:send", {"json": []}),
        ("POST", "/message:send", {"json": {}}),
        ("POST", "/message:send", {"json": {"message": {"role": 7, "parts": "x"}}}),
        ("POST", "/message:send", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}),
        ("POST", "/tasks/a:cancel", {"json": {"id": "b"}}),
        ("GET", "/tasks/a%20b", {}),
        ("GET", "/tasks/%FF", {}),
        ("POST", "/tasks/a.b~c_d-%24:cancel", {}),
    ],
)
def test_section_11_6_malformed_requests_are_400(a2a, method, path, kw):
    error = status_error(call(a2a, method, path, **kw), 400)
    assert error["status"] == "INVALID_ARGUMENT", error
    assert reason(error) in ("INVALID_PARAMS", "INVALID_REQUEST"), error


def test_section_11_3_2_unknown_task_method_is_404(a2a):
    error = status_error(call(a2a, "POST", "/tasks/some-task:frobnicate"), 404)
    assert reason(error) == "METHOD_NOT_FOUND"


def test_section_11_6_unsupported_version_is_refused(a2a):
    for version in ("0.3", "2.0"):
        error = status_error(call(a2a, "GET", "/tasks", version=version), 400)
        assert reason(error) == "VERSION_NOT_SUPPORTED", error


# -- section 3.3.4: capabilities the card does not declare ----------------------


@pytest.mark.parametrize(
    "method,path,expected",
    [
        ("GET", "/extendedAgentCard", "UNSUPPORTED_OPERATION"),
        ("POST", "/tasks/t-1/pushNotificationConfigs", "PUSH_NOTIFICATION_NOT_SUPPORTED"),
        ("GET", "/tasks/t-1/pushNotificationConfigs", "PUSH_NOTIFICATION_NOT_SUPPORTED"),
        ("GET", "/tasks/t-1/pushNotificationConfigs/c-1", "PUSH_NOTIFICATION_NOT_SUPPORTED"),
        ("DELETE", "/tasks/t-1/pushNotificationConfigs/c-1", "PUSH_NOTIFICATION_NOT_SUPPORTED"),
    ],
)
def test_section_3_3_4_undeclared_capabilities(a2a, method, path, expected):
    error = status_error(call(a2a, method, path), 400)
    assert (error["status"], reason(error)) == ("FAILED_PRECONDITION", expected)


# -- the gateway in front: a token is needed, the engine is never reached ---------


def test_rest_paths_need_a_token_and_stay_off_the_engine(a2a):
    a2a.upstream.clear()
    base = agent_base(a2a.gateway, "upper")
    for method, path in (
        ("POST", "/message:send"),
        ("GET", "/tasks"),
        ("GET", "/tasks/x"),
        ("POST", "/tasks/x:cancel"),
        ("GET", "/extendedAgentCard"),
    ):
        r = httpx.request(method, base + path, json={} if method == "POST" else None, timeout=20)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
    assert a2a.upstream.requests == [], "A2A paths must not reach the engine"
