"""A2A streaming through the gateway (A2A 1.0 sections 3.1.2 and 3.1.6, the
JSON-RPC binding's server-sent events in section 9.4, the HTTP+JSON
binding's in section 11.7; 0.3's message/stream and tasks/resubscribe),
through the real Envoy, filter and service, with a2a-sdk 1.3 as client and
as the downstream agents: one whose card declares streaming (the gateway
relays its stream), one whose card does not (the gateway makes the events
itself), one that answers with a direct message.

Every event the gateway sends is validated against schemas/a2a-1.0.json
(see test_a2a_conformance.py for where the schema comes from).
"""

import asyncio
import json
import time

import httpx
import pytest
from a2a.client import ClientConfig, ClientFactory
from a2a.types import a2a_pb2 as pb

from a2a_agents import SdkAgent, agent_base, resolve_card, sdk_client, text_message
from stack import launch_stack
from test_a2a_conformance import assert_valid, error_info

TERMINAL = {"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED"}


@pytest.fixture(scope="module")
def a2a(tmp_path_factory, artifacts):
    with (
        SdkAgent("upper") as upper,
        SdkAgent("plain", streaming=False) as plain,
        SdkAgent("talk", reply="message") as talk,
    ):
        agents = ",".join(
            [
                f"upper={upper.url}",
                f"upper03={upper.url};protocol=0.3",
                f"plain={plain.url}",
                f"talk={talk.url}",
            ]
        )
        workdir = tmp_path_factory.mktemp("a2a-streaming")
        with launch_stack(workdir, a2a=True, env={"A2A_AGENTS": agents}) as s:
            yield s


def run(coro):
    return asyncio.run(coro)


def headers(s, sub="alice", version="1.0"):
    h = {"Authorization": f"Bearer {s.token(sub=sub)}"}
    if version:
        h["A2A-Version"] = version
    return h


def v1_message(text, task_id=None):
    message = {"messageId": f"m-{time.monotonic_ns()}", "role": "ROLE_USER", "parts": [{"text": text}]}
    if task_id:
        message["taskId"] = task_id
    return message


def v03_message(text):
    return {
        "kind": "message",
        "messageId": f"m-{time.monotonic_ns()}",
        "role": "user",
        "parts": [{"kind": "text", "text": text}],
    }


def events_of(response):
    """(seconds since the request, parsed data) of each event of an SSE answer."""
    started = time.monotonic()
    assert response.status_code == 200, response.read()
    assert response.headers["content-type"].startswith("text/event-stream"), response.headers
    data = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield time.monotonic() - started, json.loads("\n".join(data))
            data = []


def stream_rpc(s, agent, method, params, sub="alice", version="1.0", rpc_id="s-1"):
    """A JSON-RPC streaming call: every event's result, with its arrival time."""
    body = {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": params}
    out = []
    with httpx.stream(
        "POST", agent_base(s.gateway, agent), json=body, headers=headers(s, sub, version), timeout=60
    ) as r:
        for at, event in events_of(r):
            assert event["jsonrpc"] == "2.0" and event["id"] == rpc_id, event
            assert "result" in event, event
            out.append((at, event["result"]))
    return out


def rpc(s, agent, method, params, sub="alice", version="1.0"):
    r = httpx.post(
        agent_base(s.gateway, agent),
        json={"jsonrpc": "2.0", "id": "c-1", "method": method, "params": params},
        headers=headers(s, sub, version),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    return r.json()


def kind(event):
    """Which member of a 1.0 StreamResponse an event holds."""
    (member,) = event.keys()
    return member


def state_of(event):
    member = kind(event)
    if member == "task":
        return event["task"]["status"]["state"]
    if member == "statusUpdate":
        return event["statusUpdate"]["status"]["state"]
    return None


def artifact_texts(event):
    return [p["text"] for p in event["artifactUpdate"]["artifact"]["parts"]]


def wait_for_state(s, agent, task_id, state, sub="alice", timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = rpc(s, agent, "GetTask", {"id": task_id}, sub=sub)["result"]
        if task["status"]["state"] == state:
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} never reached {state}: {task}")


# -- section 3.1.2: a streaming send ---------------------------------------------


def test_section_3_1_2_a_streaming_agent_is_relayed_in_order_as_it_streams(a2a):
    events = stream_rpc(a2a, "upper", "SendStreamingMessage", {"message": v1_message("chunks 3 0.8")})
    for _, event in events:
        assert_valid(event, "StreamResponse")
    kinds = [kind(e) for _, e in events]
    # The task first, as submitted; the agent's chunks in order; the end last.
    assert kinds[0] == "task", kinds
    assert state_of(events[0][1]) == "TASK_STATE_SUBMITTED"
    chunks = [(at, artifact_texts(e)) for at, e in events if kind(e) == "artifactUpdate"]
    assert [texts for _, texts in chunks] == [["c0"], ["c1"], ["c2"]], events
    updates = [e["artifactUpdate"] for _, e in events if kind(e) == "artifactUpdate"]
    assert [u["append"] for u in updates] == [False, True, True]
    assert [u["lastChunk"] for u in updates] == [False, False, True]
    states = [state_of(e) for _, e in events if kind(e) == "statusUpdate"]
    assert states[0] == "TASK_STATE_WORKING" and states[-1] == "TASK_STATE_COMPLETED", states
    assert kinds[-1] == "statusUpdate"
    # Every event names the gateway's task, never the agent's.
    task_id = events[0][1]["task"]["id"]
    for _, e in events[1:]:
        assert e[kind(e)]["taskId"] == task_id, e
    # Relayed as streamed, not held until the end: the first chunk arrived
    # well before the last (the agent waits 0.8 s between chunks).
    assert chunks[-1][0] - chunks[0][0] > 1.2, chunks
    # What passed was recorded: the task holds the whole artifact.
    task = rpc(a2a, "upper", "GetTask", {"id": task_id})["result"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    (artifact,) = task["artifacts"]
    assert [p["text"] for p in artifact["parts"]] == ["c0", "c1", "c2"]


def test_section_3_1_2_the_sdk_client_streams_through_the_gateway(a2a):
    async def go():
        card = await resolve_card(a2a.gateway, "upper")
        assert card.capabilities.streaming
        client, http = sdk_client(card, a2a.token(sub="alice"), "1.0", streaming=True)
        async with http:
            request = pb.SendMessageRequest(message=text_message("chunks 2 0.2"))
            return [e async for e in client.send_message(request)]

    events = run(go())
    assert events[0].HasField("task"), events
    chunks = [e.artifact_update.artifact.parts[0].text for e in events if e.HasField("artifact_update")]
    assert chunks == ["c0", "c1"]
    assert events[-1].status_update.status.state == pb.TaskState.TASK_STATE_COMPLETED


def test_section_3_1_2_events_of_an_agent_that_does_not_stream_are_made_by_the_gateway(a2a):
    events = [e for _, e in stream_rpc(a2a, "plain", "SendStreamingMessage", {"message": v1_message("hello")})]
    for event in events:
        assert_valid(event, "StreamResponse")
    states = [state_of(e) for e in events if state_of(e)]
    assert states == ["TASK_STATE_SUBMITTED", "TASK_STATE_WORKING", "TASK_STATE_COMPLETED"], events
    final = events[-1]["statusUpdate"]["status"]
    assert [p["text"] for p in final["message"]["parts"]] == ["HELLO"]


def test_section_3_1_2_a_direct_message_ends_the_streamed_task(a2a):
    events = [e for _, e in stream_rpc(a2a, "talk", "SendStreamingMessage", {"message": v1_message("hi")})]
    for event in events:
        assert_valid(event, "StreamResponse")
    assert kind(events[0]) == "task"
    final = events[-1]["statusUpdate"]["status"]
    assert final["state"] == "TASK_STATE_COMPLETED"
    assert [p["text"] for p in final["message"]["parts"]] == ["HI"]


def test_section_3_1_2_a_0_3_agent_is_streamed_too(a2a):
    events = [e for _, e in stream_rpc(a2a, "upper03", "SendStreamingMessage", {"message": v1_message("chunks 2 0.1")})]
    chunks = [artifact_texts(e) for e in events if kind(e) == "artifactUpdate"]
    assert chunks == [["c0"], ["c1"]], events
    assert state_of(events[-1]) == "TASK_STATE_COMPLETED"


def test_section_3_1_2_bad_input_is_refused_before_any_event(a2a):
    body = rpc(a2a, "upper", "SendStreamingMessage", {"message": {"role": "ROLE_USER"}})
    assert body["error"]["code"] == -32602, body


# -- section 3.1.6: subscribing to a task -----------------------------------------


async def subscribe_sdk(s, task_id, sub, received, stop_after=None):
    card = await resolve_card(s.gateway, "upper")
    client, http = sdk_client(card, s.token(sub=sub), "1.0", streaming=True)
    async with http:
        async for event in client.subscribe(pb.SubscribeToTaskRequest(id=task_id)):
            received.append(event)
            if stop_after and len(received) >= stop_after:
                return


def test_section_3_1_6_subscribers_early_and_late_see_the_task_to_its_end(a2a):
    sent = rpc(
        a2a,
        "upper",
        "SendMessage",
        {"message": v1_message("chunks 4 0.8"), "configuration": {"returnImmediately": True}},
    )
    task_id = sent["result"]["task"]["id"]

    async def go():
        early, also_early, late = [], [], []
        first = asyncio.create_task(subscribe_sdk(a2a, task_id, "alice", early))
        second = asyncio.create_task(subscribe_sdk(a2a, task_id, "alice", also_early))
        # The late one joins once a chunk has passed.
        while not any(e.HasField("artifact_update") for e in early):
            await asyncio.sleep(0.05)
        third = asyncio.create_task(subscribe_sdk(a2a, task_id, "alice", late))
        await asyncio.wait_for(asyncio.gather(first, second, third), 30)
        return early, also_early, late

    early, also_early, late = run(go())
    for events in (early, also_early, late):
        # The task as it stands first, the terminal event last.
        assert events[0].HasField("task"), events
        assert events[-1].status_update.status.state == pb.TaskState.TASK_STATE_COMPLETED, events
        # What streamed before the subscriber joined is in its opening task;
        # the rest follows, nothing twice, nothing lost.
        held = [p.text for a in events[0].task.artifacts for p in a.parts]
        later = [e.artifact_update.artifact.parts[0].text for e in events if e.HasField("artifact_update")]
        assert held + later == ["c0", "c1", "c2", "c3"], (held, later)
    opening = late[0].task
    assert opening.status.state == pb.TaskState.TASK_STATE_WORKING
    assert len(opening.artifacts) == 1, opening


def test_section_3_1_6_a_finished_task_cannot_be_subscribed_to(a2a):
    sent = rpc(a2a, "upper", "SendMessage", {"message": v1_message("done already")})
    task_id = sent["result"]["task"]["id"]
    assert sent["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    body = rpc(a2a, "upper", "SubscribeToTask", {"id": task_id})
    assert body["error"]["code"] == -32004, body
    assert error_info(body["error"]) == "UNSUPPORTED_OPERATION"
    r = httpx.post(
        agent_base(a2a.gateway, "upper") + f"/tasks/{task_id}:subscribe",
        headers=headers(a2a),
        timeout=20,
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"][0]["reason"] == "UNSUPPORTED_OPERATION"


def test_section_3_1_6_another_users_task_is_not_found(a2a):
    sent = rpc(
        a2a,
        "upper",
        "SendMessage",
        {"message": v1_message("chunks 2 1.5"), "configuration": {"returnImmediately": True}},
    )
    task_id = sent["result"]["task"]["id"]
    theirs = rpc(a2a, "upper", "SubscribeToTask", {"id": task_id}, sub="bob")
    unknown = rpc(a2a, "upper", "SubscribeToTask", {"id": "no-such-task"}, sub="bob")
    assert theirs["error"] == unknown["error"], (theirs, unknown)
    assert theirs["error"]["code"] == -32001
    # A follow-up message from bob, streamed, does not reach alice's task either.
    theirs = rpc(a2a, "upper", "SendStreamingMessage", {"message": v1_message("x", task_id=task_id)}, sub="bob")
    assert theirs["error"]["code"] == -32001, theirs
    wait_for_state(a2a, "upper", task_id, "TASK_STATE_COMPLETED")


def subscriptions(s):
    text = httpx.get(f"http://127.0.0.1:{s.gateway.a2a_port}/metrics", timeout=10).text
    (line,) = [l for l in text.splitlines() if l.startswith("attach_a2a_stream_subscriptions ")]
    return int(line.split()[1])


def test_section_3_1_6_a_client_that_goes_away_leaks_nothing_and_the_task_goes_on(a2a):
    body = {"jsonrpc": "2.0", "id": "gone", "method": "SendStreamingMessage", "params": {"message": v1_message("chunks 3 0.7")}}
    with httpx.stream("POST", agent_base(a2a.gateway, "upper"), json=body, headers=headers(a2a), timeout=30) as r:
        events = events_of(r)
        _, first = next(events)
        task_id = first["result"]["task"]["id"]
        assert subscriptions(a2a) == 1
    # The connection is gone; the task is not.
    task = wait_for_state(a2a, "upper", task_id, "TASK_STATE_COMPLETED")
    assert [p["text"] for p in task["artifacts"][0]["parts"]] == ["c0", "c1", "c2"]
    deadline = time.monotonic() + 10
    while subscriptions(a2a) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert subscriptions(a2a) == 0


# -- A2A 0.3: message/stream and tasks/resubscribe --------------------------------


def test_0_3_message_stream_and_resubscribe(a2a):
    events = [e for _, e in stream_rpc(a2a, "upper", "message/stream", {"message": v03_message("chunks 2 0.1")}, version=None)]
    assert events[0]["kind"] == "task" and events[0]["status"]["state"] == "submitted", events
    chunks = [e["artifact"]["parts"][0]["text"] for e in events if e["kind"] == "artifact-update"]
    assert chunks == ["c0", "c1"]
    last = events[-1]
    assert last["kind"] == "status-update" and last["status"]["state"] == "completed" and last["final"] is True
    assert all(e["final"] is False for e in events[:-1] if e["kind"] == "status-update")

    sent = rpc(
        a2a,
        "upper",
        "message/send",
        {"message": v03_message("chunks 2 1.0"), "configuration": {"blocking": False}},
        version=None,
    )
    task_id = sent["result"]["id"]
    events = [e for _, e in stream_rpc(a2a, "upper", "tasks/resubscribe", {"id": task_id}, version=None)]
    assert events[0]["kind"] == "task" and events[0]["id"] == task_id
    assert events[-1]["status"]["state"] == "completed" and events[-1]["final"] is True
    done = rpc(a2a, "upper", "tasks/resubscribe", {"id": task_id}, version=None)
    assert done["error"]["code"] == -32004, done


def test_0_3_sdk_client_streams(a2a):
    async def go():
        card = await resolve_card(a2a.gateway, "upper")
        client, http = sdk_client(card, a2a.token(sub="alice"), "0.3", streaming=True)
        async with http:
            request = pb.SendMessageRequest(message=text_message("chunks 2 0.1"))
            return [e async for e in client.send_message(request)]

    events = run(go())
    chunks = [e.artifact_update.artifact.parts[0].text for e in events if e.HasField("artifact_update")]
    assert chunks == ["c0", "c1"], events
    assert events[-1].status_update.status.state == pb.TaskState.TASK_STATE_COMPLETED


# -- section 11.7: the HTTP+JSON binding's streams --------------------------------


def test_section_11_7_rest_message_stream_and_subscribe(a2a):
    base = agent_base(a2a.gateway, "upper")
    with httpx.stream(
        "POST", base + "/message:stream", json={"message": v1_message("chunks 2 0.1")}, headers=headers(a2a), timeout=30
    ) as r:
        events = [e for _, e in events_of(r)]
    for event in events:
        assert_valid(event, "StreamResponse")
    assert kind(events[0]) == "task" and state_of(events[-1]) == "TASK_STATE_COMPLETED"
    assert [artifact_texts(e) for e in events if kind(e) == "artifactUpdate"] == [["c0"], ["c1"]]

    for method in ("POST", "GET"):
        sent = rpc(
            a2a,
            "upper",
            "SendMessage",
            {"message": v1_message("chunks 2 0.8"), "configuration": {"returnImmediately": True}},
        )
        task_id = sent["result"]["task"]["id"]
        with httpx.stream(method, base + f"/tasks/{task_id}:subscribe", headers=headers(a2a), timeout=30) as r:
            events = [e for _, e in events_of(r)]
        assert kind(events[0]) == "task" and events[0]["task"]["id"] == task_id, (method, events)
        assert state_of(events[-1]) in TERMINAL, (method, events)


def test_section_11_7_the_sdk_rest_client_streams(a2a):
    from a2a.client.transports.rest import RestTransport
    from a2a.utils.constants import TransportProtocol

    async def go():
        card = await resolve_card(a2a.gateway, "upper")
        http = httpx.AsyncClient(headers={"Authorization": f"Bearer {a2a.token(sub='alice')}"}, timeout=60)
        config = ClientConfig(
            streaming=True, httpx_client=http, supported_protocol_bindings=[TransportProtocol.HTTP_JSON]
        )
        client = ClientFactory(config).create(card)
        assert isinstance(client._transport, RestTransport), client._transport
        async with http:
            request = pb.SendMessageRequest(message=text_message("chunks 2 0.1"))
            return [e async for e in client.send_message(request)]

    events = run(go())
    chunks = [e.artifact_update.artifact.parts[0].text for e in events if e.HasField("artifact_update")]
    assert chunks == ["c0", "c1"], events
    assert events[-1].status_update.status.state == pb.TaskState.TASK_STATE_COMPLETED
