"""The gateway's A2A endpoints held to the A2A 1.0 specification, through the
real Envoy, filter and service, with the official SDK (a2a-sdk) as client
where it applies and raw JSON-RPC for the shapes of errors.

Documents are validated against schemas/a2a-1.0.json, a JSON Schema of the
specification's protobuf messages (lf.a2a.v1). It is generated, not
written: schemas/generate_a2a_schema.py derives it from the descriptors the
pinned a2a-sdk compiles from a2a.proto (field names, REQUIRED field
behaviours, oneofs, enums); rerun it after changing the pin.
"""

import asyncio
import json
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
from a2a.client import A2ACardResolver
from a2a.compat.v0_3 import conversions
from a2a.compat.v0_3 import types as types_v03
from a2a.types import a2a_pb2 as pb

from a2a_agents import SdkAgent, agent_base, resolve_card, sdk_client, send, texts
from stack import launch_stack

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "a2a-1.0.json").read_text())
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
AGENTS = ("upper", "talk", "talk03")


def assert_valid(document, message):
    """document is a valid lf.a2a.v1.<message> in ProtoJSON."""
    schema = {"$ref": f"#/$defs/lf.a2a.v1.{message}", "$defs": SCHEMA["$defs"]}
    jsonschema.Draft202012Validator(schema).validate(document)


@pytest.fixture(scope="module")
def a2a(tmp_path_factory, artifacts):
    with SdkAgent("upper") as upper, SdkAgent("talk", reply="message") as talk:
        agents = ",".join(
            [
                f"upper={upper.url}",
                f"talk={talk.url}",
                f"talk03={talk.url};protocol=0.3",
            ]
        )
        workdir = tmp_path_factory.mktemp("a2a-conformance")
        with launch_stack(workdir, a2a=True, env={"A2A_AGENTS": agents}) as s:
            yield s


def run(coro):
    return asyncio.run(coro)


def rpc(s, method, params, path=None, version="1.0", sub="alice", status=200):
    """A raw JSON-RPC call through the gateway; the parsed response."""
    headers = {"Authorization": f"Bearer {s.token(sub=sub)}"}
    if version:
        headers["A2A-Version"] = version
    r = httpx.post(
        path or agent_base(s.gateway, "upper"),
        json={"jsonrpc": "2.0", "id": "c-1", "method": method, "params": params},
        headers=headers,
        timeout=60,
    )
    assert r.status_code == status, r.text
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["id"] == "c-1", body
    return body


def v1_message(text, context_id=None, message_id=None):
    message = {
        "messageId": message_id or f"m-{time.monotonic_ns()}",
        "role": "ROLE_USER",
        "parts": [{"text": text}],
    }
    if context_id:
        message["contextId"] = context_id
    return message


# -- section 9: the JSON-RPC endpoint is the interface URL, slash or not --------


def test_section_9_endpoint_answers_with_or_without_trailing_slash(a2a):
    card = run(resolve_card(a2a.gateway, "upper"))
    url = card.supported_interfaces[0].url

    async def go():
        token = a2a.token()
        # httpx joins base_url and "/" into the URL plus a slash.
        headers = {"Authorization": f"Bearer {token}", "A2A-Version": "1.0"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "SendMessage",
                "params": {"message": v1_message("slash")},
            }
            r = await http.post("/", json=body)
            assert r.request.url.path.endswith("/upper/"), r.request.url
            assert r.status_code == 200, (r.status_code, r.text)
            assert r.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
        # The SDK given the slashed URL as the interface reaches the same endpoint.
        slashed = pb.AgentCard()
        slashed.CopyFrom(card)
        for interface in slashed.supported_interfaces:
            interface.url = interface.url + "/"
        client, http = sdk_client(slashed, token, "1.0")
        async with http:
            task = await send(client, "sdk slash")
            assert task.status.state == pb.TaskState.TASK_STATE_COMPLETED, task
            again = await client.get_task(pb.GetTaskRequest(id=task.id))
            assert again.id == task.id

    run(go())


def test_section_9_unmatched_a2a_paths_answer_json(a2a):
    base = agent_base(a2a.gateway, "upper")
    auth = {"Authorization": f"Bearer {a2a.token()}"}
    for path in (f"{base}/nothing", f"{a2a.gateway.base_url}/a2a/agents/"):
        r = httpx.post(
            path,
            json={"jsonrpc": "2.0", "id": 9, "method": "GetTask", "params": {"id": "x"}},
            headers=auth,
            timeout=20,
        )
        assert r.status_code == 404, (path, r.status_code, r.text)
        body = r.json()
        assert body["jsonrpc"] == "2.0" and body["id"] == 9, body
        assert isinstance(body["error"]["code"], int) and body["error"]["message"], body
        assert body["error"]["code"] != -32601, "GetTask is a method the protocol defines"
    r = httpx.get(f"{a2a.gateway.base_url}/a2a/nothing/here", headers=auth, timeout=20)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found", r.text


# -- section 4.4.1: the card is a 1.0 AgentCard; 0.3 readers keep working ------


def fetch_card(s, name, path="agent-card.json", headers=None):
    """The response to a public GET of one of the agent's card paths."""
    url = f"{agent_base(s.gateway, name)}/.well-known/{path}"
    return httpx.get(url, headers=headers or {}, timeout=20)


def test_section_4_4_1_card_is_a_valid_1_0_agent_card(a2a):
    for name in AGENTS:
        r = fetch_card(a2a, name)
        assert r.status_code == 200, r.text
        card = r.json()
        assert_valid(card, "AgentCard")
        base = agent_base(a2a.gateway, name)
        assert card["supportedInterfaces"] == [
            {"url": base, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": base, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
            {"url": base, "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
        ], card
        assert card["capabilities"] == {
            "streaming": True,
            "pushNotifications": False,
            "extendedAgentCard": False,
        }
        assert card["securitySchemes"]["bearer"] == {
            "httpAuthSecurityScheme": {"scheme": "bearer", "bearerFormat": "JWT"}
        }
        assert "openIdConnectSecurityScheme" in card["securitySchemes"]["oidc"]
    upper = fetch_card(a2a, "upper").json()
    assert upper["skills"][0]["id"] == "upper", "the downstream card's skills are kept"


def test_section_4_4_1_0_3_clients_resolve_the_card(a2a):
    async def go():
        for name in AGENTS:
            base = agent_base(a2a.gateway, name)
            # The SDK's own resolution, then its 0.3 view of the card.
            card = await resolve_card(a2a.gateway, name)
            legacy_view = conversions.to_compat_agent_card(card)
            assert legacy_view.url == base and legacy_view.protocol_version == "0.3"
            # A 0.3 reader of the 0.3 card path: the 0.3 card, by the 0.3 schema.
            r = fetch_card(a2a, name, "agent.json")
            assert r.status_code == 200, r.text
            legacy = types_v03.AgentCard.model_validate(r.json())
            assert legacy.url == base, legacy
            assert legacy.protocol_version == "0.3.0"
            assert legacy.security == [{"bearer": []}, {"oidc": []}], legacy.security
            assert legacy.security_schemes["bearer"].root.type == "http"
            async with httpx.AsyncClient(timeout=20) as http:
                old = await A2ACardResolver(
                    http, base, agent_card_path=".well-known/agent.json"
                ).get_agent_card()
            assert [(i.url, i.protocol_version) for i in old.supported_interfaces] == [
                (base, "0.3.0")
            ]
        # And a 0.3 SDK client works from the 1.0 card's 0.3 interface.
        card = await resolve_card(a2a.gateway, "upper")
        client, http = sdk_client(card, a2a.token(), "0.3")
        async with http:
            task = await send(client, "legacy")
            assert task.status.state == pb.TaskState.TASK_STATE_COMPLETED, task

    run(go())


# -- section 8.6.1: cards are cacheable ------------------------------------------


def test_section_8_6_1_cards_carry_etag_and_max_age(a2a):
    for path in ("agent-card.json", "agent.json"):
        first = fetch_card(a2a, "upper", path)
        tag = first.headers.get("etag")
        assert tag and tag.startswith('"') and tag.endswith('"'), first.headers
        cache = first.headers.get("cache-control", "")
        assert "max-age=" in cache and int(cache.split("max-age=")[1].split(",")[0]) > 0, cache
        again = fetch_card(a2a, "upper", path)
        assert again.headers["etag"] == tag, "the tag follows the content"
        fresh = fetch_card(a2a, "upper", path, headers={"If-None-Match": tag})
        assert fresh.status_code == 304, fresh
        assert fresh.content == b""
        assert fresh.headers["etag"] == tag
        stale = fetch_card(a2a, "upper", path, headers={"If-None-Match": '"other"'})
        assert stale.status_code == 200 and stale.json() == first.json()
    one = fetch_card(a2a, "upper").headers["etag"]
    assert fetch_card(a2a, "upper", "agent.json").headers["etag"] != one
    assert fetch_card(a2a, "talk").headers["etag"] != one


# -- section 3.1.1: a direct Message reply stays a Message -----------------------


@pytest.mark.parametrize("agent,version", [("talk", "1.0"), ("talk", "0.3"), ("talk03", "1.0")])
def test_section_3_1_1_direct_message_reply_is_returned_as_a_message(a2a, agent, version):
    sub = f"talker-{agent}-{version}"

    async def go():
        card = await resolve_card(a2a.gateway, agent)
        client, http = sdk_client(card, a2a.token(sub=sub), version)
        async with http:
            answer = await send(client, f"say {version}")
            assert isinstance(answer, pb.Message), answer
            assert answer.role == pb.Role.ROLE_AGENT
            assert texts(answer.parts) == [f"SAY {version}"], answer
            assert not answer.task_id, "no task was made, so none is named"

    run(go())
    # No task was invented for the caller ...
    listed = rpc(a2a, "ListTasks", {}, path=agent_base(a2a.gateway, agent), sub=sub)
    assert listed["result"]["totalSize"] == 0, listed
    # ... and the exchange is in the caller's memory, as before.
    r = httpx.get(
        f"{a2a.gateway.base_url}/mem/events",
        headers={"Authorization": f"Bearer {a2a.token(sub=sub)}"},
        timeout=20,
    )
    assert r.status_code == 200, r.text
    kinds = sorted(e["kind"] for e in r.json()["events"])
    assert kinds == ["task_result", "task_sent"], kinds


def test_section_3_1_1_responses_validate(a2a):
    body = rpc(
        a2a,
        "SendMessage",
        {"message": v1_message("shape")},
        path=agent_base(a2a.gateway, "talk"),
        sub="shapes",
    )
    assert "message" in body["result"], body
    assert_valid(body["result"], "SendMessageResponse")
    body = rpc(a2a, "SendMessage", {"message": v1_message("shape")}, sub="shapes")
    assert "task" in body["result"], body
    assert_valid(body["result"], "SendMessageResponse")
    task_id = body["result"]["task"]["id"]
    assert_valid(rpc(a2a, "GetTask", {"id": task_id}, sub="shapes")["result"], "Task")
    assert_valid(rpc(a2a, "ListTasks", {}, sub="shapes")["result"], "ListTasksResponse")


# -- sections 3.3.4 and 5.4: methods for capabilities the card does not declare -


UNDECLARED_V1 = {
    "GetExtendedAgentCard": -32004,
    "CreateTaskPushNotificationConfig": -32003,
    "GetTaskPushNotificationConfig": -32003,
    "ListTaskPushNotificationConfigs": -32003,
    "DeleteTaskPushNotificationConfig": -32003,
}
UNDECLARED_V0_3 = {
    "agent/getAuthenticatedExtendedCard": -32004,
    "tasks/pushNotificationConfig/set": -32003,
    "tasks/pushNotificationConfig/get": -32003,
    "tasks/pushNotificationConfig/list": -32003,
    "tasks/pushNotificationConfig/delete": -32003,
}


@pytest.mark.parametrize(
    "version,methods", [("1.0", UNDECLARED_V1), ("0.3", UNDECLARED_V0_3), (None, UNDECLARED_V0_3)]
)
def test_section_3_3_4_undeclared_capabilities_get_a2a_errors(a2a, version, methods):
    params = {"id": "t-1", "message": v1_message("x")}
    for method, code in methods.items():
        error = rpc(a2a, method, params, version=version)["error"]
        assert error["code"] == code, (method, error)
    # -32601 is kept for methods the protocol does not define.
    for method in ("Frobnicate", "tasks/frobnicate"):
        assert rpc(a2a, method, {}, version=version)["error"]["code"] == -32601


# -- section 9.5: A2A errors carry a google.rpc.ErrorInfo ------------------------


def error_info(error):
    details = error.get("data")
    assert isinstance(details, list) and details, error
    infos = [d for d in details if d.get("@type") == ERROR_INFO]
    assert len(infos) == 1, error
    assert infos[0]["domain"] == "a2a-protocol.org", error
    return infos[0]["reason"]


def test_section_9_5_a2a_errors_carry_error_info(a2a):
    error = rpc(a2a, "GetTask", {"id": "no-such-task"})["error"]
    assert error["code"] == -32001
    assert error_info(error) == "TASK_NOT_FOUND"
    # Another user's task is answered exactly like a task that does not exist.
    mine = rpc(a2a, "SendMessage", {"message": v1_message("mine")}, sub="owner")
    task_id = mine["result"]["task"]["id"]
    theirs = rpc(a2a, "GetTask", {"id": task_id}, sub="intruder")["error"]
    assert theirs == error, (theirs, error)
    cancel = rpc(a2a, "CancelTask", {"id": task_id}, sub="owner")["error"]
    assert (cancel["code"], error_info(cancel)) == (-32002, "TASK_NOT_CANCELABLE")
    push = rpc(a2a, "GetTaskPushNotificationConfig", {"taskId": task_id})["error"]
    assert error_info(push) == "PUSH_NOTIFICATION_NOT_SUPPORTED"
    # A finished task has no updates to follow (section 3.1.6).
    stream = rpc(a2a, "SubscribeToTask", {"id": task_id}, sub="owner")["error"]
    assert (stream["code"], error_info(stream)) == (-32004, "UNSUPPORTED_OPERATION")
    version = rpc(a2a, "GetTask", {"id": "x"}, version="2.0")["error"]
    assert (version["code"], error_info(version)) == (-32009, "VERSION_NOT_SUPPORTED")
    for error in (error, cancel, push, stream, version):
        assert "store" not in error["message"].lower() and "sql" not in error["message"].lower()


# -- section 5.5: ProtoJSON readers accept proto field names too -----------------


def test_section_5_5_proto_field_names_are_read(a2a):
    sub = "snake"
    context = f"ctx-{time.monotonic_ns()}"
    first = rpc(a2a, "SendMessage", {"message": v1_message("one", context)}, sub=sub)
    task_id = first["result"]["task"]["id"]
    rpc(a2a, "SendMessage", {"message": v1_message("two")}, sub=sub)
    full = rpc(a2a, "GetTask", {"id": task_id}, sub=sub)["result"]
    assert len(full["history"]) > 1, full
    short = rpc(a2a, "GetTask", {"id": task_id, "history_length": 1}, sub=sub)["result"]
    assert len(short["history"]) == 1, short
    listed = rpc(a2a, "ListTasks", {"context_id": context}, sub=sub)["result"]
    assert [t["id"] for t in listed["tasks"]] == [task_id], listed
    snake_message = {
        "message_id": f"m-{time.monotonic_ns()}",
        "role": "ROLE_USER",
        "parts": [{"text": "snake"}],
        "context_id": context,
    }
    sent = rpc(
        a2a,
        "SendMessage",
        {"message": snake_message, "configuration": {"history_length": 1}},
        sub=sub,
    )["result"]["task"]
    assert sent["contextId"] == context and len(sent["history"]) == 1, sent
    # A value of the wrong type, or two spellings that disagree, is refused.
    for params in (
        {"id": task_id, "history_length": "all"},
        {"id": task_id, "historyLength": 1, "history_length": 2},
    ):
        error = rpc(a2a, "GetTask", params, sub=sub)["error"]
        assert error["code"] == -32602, (params, error)
    for params in ({"context_id": 7}, {"contextId": context, "context_id": "other"}):
        error = rpc(a2a, "ListTasks", params, sub=sub)["error"]
        assert error["code"] == -32602, (params, error)
