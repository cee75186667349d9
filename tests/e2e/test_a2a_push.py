"""Push notifications through the real Envoy, filter and service, with
A2A_PUSH=on and 127.0.0.1 allow-listed as a webhook target.

A receiver on 127.0.0.1 records every POST. The cases follow the A2A 1.0
specification: the config methods (sections 3.1.7 to 3.1.10), the payload
and its credentials (section 4.3.3), scoping to the caller (section 13.1)
and the webhook URL guard (section 13.2). With push off (the default) the
card declares no push and the methods answer -32003: see
test_a2a_conformance.py. Documents are validated against
schemas/a2a-1.0.json.
"""

import asyncio
import json
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import jsonschema
import pytest
from a2a.compat.v0_3 import types as types_v03
from a2a.types import a2a_pb2 as pb
from google.protobuf.json_format import MessageToDict

from a2a_agents import SdkAgent, agent_base, resolve_card, sdk_client, text_message
from netutil import HOST, QuietHandler, free_port, wait_until
from stack import launch_stack

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "a2a-1.0.json").read_text())


def assert_valid(document, message):
    schema = {"$ref": f"#/$defs/lf.a2a.v1.{message}", "$defs": SCHEMA["$defs"]}
    jsonschema.Draft202012Validator(schema).validate(document)


class _Recorder(QuietHandler):
    def do_POST(self):
        body = self.read_body()
        self.server.seen.append(
            {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": json.loads(body),
            }
        )
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Receiver:
    """A webhook on 127.0.0.1 that records what it is sent."""

    def __init__(self):
        self.server = ThreadingHTTPServer((HOST, free_port()), _Recorder)
        self.server.seen = []
        self.url = f"http://{HOST}:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def at(self, path):
        return [n for n in self.server.seen if n["path"] == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def a2a(tmp_path_factory, artifacts):
    with SdkAgent("upper") as upper:
        env = {
            "A2A_AGENTS": f"upper={upper.url}",
            "A2A_PUSH": "on",
            "A2A_PUSH_ALLOW": "127.0.0.1",
        }
        workdir = tmp_path_factory.mktemp("a2a-push")
        with launch_stack(workdir, a2a=True, env=env) as s:
            yield s


def run(coro):
    return asyncio.run(coro)


def rpc(s, method, params, version="1.0", sub="alice"):
    headers = {"Authorization": f"Bearer {s.token(sub=sub)}"}
    if version:
        headers["A2A-Version"] = version
    r = httpx.post(
        agent_base(s.gateway, "upper"),
        json={"jsonrpc": "2.0", "id": "p-1", "method": method, "params": params},
        headers=headers,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.json()


def message(text):
    return {"messageId": f"m-{time.monotonic_ns()}", "role": "ROLE_USER", "parts": [{"text": text}]}


def new_task(s, text="sleep 0.5", sub="alice", configuration=None):
    params = {"message": message(text), "configuration": {"returnImmediately": True}}
    params["configuration"].update(configuration or {})
    body = rpc(s, "SendMessage", params, sub=sub)
    assert "result" in body, body
    return body["result"]["task"]["id"]


def states_at(receiver, path):
    return [n["body"]["task"]["status"]["state"] for n in receiver.at(path)]


def test_section_4_4_1_card_declares_push_when_on(a2a):
    card = httpx.get(
        agent_base(a2a.gateway, "upper") + "/.well-known/agent-card.json", timeout=20
    ).json()
    assert_valid(card, "AgentCard")
    assert card["capabilities"]["pushNotifications"] is True
    legacy = httpx.get(
        agent_base(a2a.gateway, "upper") + "/.well-known/agent.json", timeout=20
    ).json()
    assert legacy["capabilities"]["pushNotifications"] is True


def test_section_4_3_3_every_state_change_reaches_the_webhook_with_its_credentials(
    a2a, receiver
):
    """A config sent with the message (SendMessageConfiguration) sees the
    task from its first state on; the SDK client sends it."""
    card = run(resolve_card(a2a.gateway, "upper"))

    async def go():
        client, http = sdk_client(card, a2a.token(sub="alice"), "1.0")
        async with http:
            push = pb.TaskPushNotificationConfig(
                url=receiver.url + "/alice",
                token="tok-alice",
                authentication=pb.AuthenticationInfo(scheme="Bearer", credentials="cred-alice"),
            )
            request = pb.SendMessageRequest(
                message=text_message("sleep 0.5"),
                configuration=pb.SendMessageConfiguration(
                    return_immediately=True, task_push_notification_config=push
                ),
            )
            answers = [a async for a in client.send_message(request)]
            return answers[0].task.id

    task_id = run(go())
    # Bob's task has a webhook of its own, on another path.
    bob_task = new_task(
        a2a,
        "sleep 0.2",
        sub="bob",
        configuration={"taskPushNotificationConfig": {"url": receiver.url + "/bob"}},
    )
    final = ["TASK_STATE_SUBMITTED", "TASK_STATE_WORKING", "TASK_STATE_COMPLETED"]
    assert wait_until(lambda: states_at(receiver, "/alice") == final, 20), receiver.at("/alice")
    assert wait_until(lambda: states_at(receiver, "/bob") == final, 20), receiver.at("/bob")
    for n in receiver.at("/alice"):
        assert_valid(n["body"], "StreamResponse")
        assert n["body"]["task"]["id"] == task_id
        assert n["headers"]["authorization"] == "Bearer cred-alice"
        assert n["headers"]["x-a2a-notification-token"] == "tok-alice"
        assert n["headers"]["content-type"] == "application/json"
    completed = receiver.at("/alice")[-1]["body"]["task"]
    assert completed["artifacts"][0]["parts"] == [{"text": "SLEEP 0.5"}]
    for n in receiver.at("/bob"):
        assert n["body"]["task"]["id"] == bob_task
        assert "authorization" not in n["headers"]
    # Nothing of Bob's task went to Alice's webhook, nor the reverse.
    assert all(n["body"]["task"]["id"] != bob_task for n in receiver.at("/alice"))


def test_section_3_1_7_config_on_a_running_task_gets_the_rest(a2a, receiver):
    task_id = new_task(a2a, "sleep 1.5")
    body = rpc(
        a2a,
        "CreateTaskPushNotificationConfig",
        {"taskId": task_id, "url": receiver.url + "/late"},
    )
    assert_valid(body["result"], "TaskPushNotificationConfig")
    assert wait_until(lambda: "TASK_STATE_COMPLETED" in states_at(receiver, "/late"), 20)
    assert all(n["body"]["task"]["id"] == task_id for n in receiver.at("/late"))


def test_sections_3_1_7_to_3_1_10_config_methods_with_the_sdk(a2a, receiver):
    card = run(resolve_card(a2a.gateway, "upper"))
    task_id = new_task(a2a)

    async def go():
        client, http = sdk_client(card, a2a.token(sub="alice"), "1.0")
        async with http:
            created = await client.create_task_push_notification_config(
                pb.TaskPushNotificationConfig(
                    task_id=task_id,
                    id="hook-1",
                    url=receiver.url + "/crud",
                    authentication=pb.AuthenticationInfo(scheme="Basic", credentials="YTpi"),
                )
            )
            assert (created.id, created.task_id) == ("hook-1", task_id)
            assert created.authentication.scheme == "Basic"
            unnamed = await client.create_task_push_notification_config(
                pb.TaskPushNotificationConfig(task_id=task_id, url=receiver.url + "/crud2")
            )
            assert unnamed.id, "the service assigns an id"
            got = await client.get_task_push_notification_config(
                pb.GetTaskPushNotificationConfigRequest(task_id=task_id, id="hook-1")
            )
            assert got.url == receiver.url + "/crud"
            listed = await client.list_task_push_notification_configs(
                pb.ListTaskPushNotificationConfigsRequest(task_id=task_id)
            )
            assert_valid(MessageToDict(listed), "ListTaskPushNotificationConfigsResponse")
            assert [c.id for c in listed.configs] == ["hook-1", unnamed.id]
            await client.delete_task_push_notification_config(
                pb.DeleteTaskPushNotificationConfigRequest(task_id=task_id, id="hook-1")
            )
            # Deleting again is no error (section 3.1.10: idempotent).
            await client.delete_task_push_notification_config(
                pb.DeleteTaskPushNotificationConfigRequest(task_id=task_id, id="hook-1")
            )
            return unnamed.id

    left = run(go())
    body = rpc(a2a, "GetTaskPushNotificationConfig", {"taskId": task_id, "id": "hook-1"})
    assert body["error"]["code"] == -32001, body
    body = rpc(a2a, "ListTaskPushNotificationConfigs", {"taskId": task_id})
    assert_valid(body["result"], "ListTaskPushNotificationConfigsResponse")
    assert [c["id"] for c in body["result"]["configs"]] == [left]
    assert body["result"]["nextPageToken"] == ""
    body = rpc(a2a, "GetTaskPushNotificationConfig", {"taskId": task_id, "id": left})
    assert_valid(body["result"], "TaskPushNotificationConfig")


def test_section_13_1_another_users_configs_answer_as_unknown(a2a, receiver):
    task_id = new_task(a2a)
    rpc(
        a2a,
        "CreateTaskPushNotificationConfig",
        {"taskId": task_id, "id": "mine", "url": receiver.url + "/scoped"},
    )

    def error(method, params, sub):
        body = rpc(a2a, method, params, sub=sub)
        assert "error" in body, body
        return body["error"]

    unknown = {"taskId": "no-such-task", "id": "mine"}
    theirs = {"taskId": task_id, "id": "mine"}
    for method in ("GetTaskPushNotificationConfig", "DeleteTaskPushNotificationConfig"):
        assert error(method, theirs, "bob") == error(method, unknown, "bob")
        assert error(method, theirs, "bob")["code"] == -32001
    listing = "ListTaskPushNotificationConfigs"
    assert error(listing, {"taskId": task_id}, "bob") == error(
        listing, {"taskId": "no-such-task"}, "bob"
    )
    create = {"taskId": task_id, "url": receiver.url + "/bob-hijack"}
    assert error("CreateTaskPushNotificationConfig", create, "bob") == error(
        "CreateTaskPushNotificationConfig", dict(create, taskId="no-such-task"), "bob"
    )
    # Alice's config is untouched by Bob's delete.
    body = rpc(a2a, "GetTaskPushNotificationConfig", theirs)
    assert body["result"]["id"] == "mine", body


def name_resolving_to_loopback():
    """A host name other than `localhost` that resolves to 127.0.0.1 here
    without a network: from /etc/hosts, else `localhost.`."""
    names = []
    for line in Path("/etc/hosts").read_text().splitlines():
        fields = line.split("#")[0].split()
        if fields and fields[0].startswith("127."):
            names += [n for n in fields[1:] if n != "localhost"]
    for name in names + ["localhost."]:
        try:
            if {a[4][0] for a in socket.getaddrinfo(name, 80)} & {"127.0.0.1"}:
                return name
        except OSError:
            continue
    pytest.skip("no name resolves to 127.0.0.1 here")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "http://127.0.0.2:9/hook",
        "http://2130706434/hook",
        "http://user:pw@127.0.0.1:9/hook",
        "ftp://127.0.0.1/hook",
        "resolving",
    ],
)
def test_section_13_2_internal_webhooks_are_refused_at_create_time(a2a, url):
    if url == "resolving":
        url = f"http://{name_resolving_to_loopback()}:9/hook"
    task_id = new_task(a2a)
    body = rpc(a2a, "CreateTaskPushNotificationConfig", {"taskId": task_id, "url": url})
    assert body["error"]["code"] == -32602, body
    assert "webhook URL" in body["error"]["message"], body
    assert "127.0.0" not in body["error"]["message"], "no resolved address is shown"
    listed = rpc(a2a, "ListTaskPushNotificationConfigs", {"taskId": task_id})["result"]
    assert listed["configs"] == []
    # The same URL inside a send is refused before any task exists.
    params = {
        "message": message("refused"),
        "configuration": {"taskPushNotificationConfig": {"url": url}},
    }
    assert rpc(a2a, "SendMessage", params)["error"]["code"] == -32602


def test_0_3_methods(a2a, receiver):
    task_id = new_task(a2a)
    hook = {
        "id": "h03",
        "url": receiver.url + "/v03",
        "token": "t03",
        "authentication": {"schemes": ["Bearer"], "credentials": "c03"},
    }
    body = rpc(
        a2a,
        "tasks/pushNotificationConfig/set",
        {"taskId": task_id, "pushNotificationConfig": hook},
        version=None,
    )
    config = types_v03.TaskPushNotificationConfig.model_validate(body["result"])
    assert config.task_id == task_id and config.push_notification_config.id == "h03"
    got = rpc(
        a2a,
        "tasks/pushNotificationConfig/get",
        {"id": task_id, "pushNotificationConfigId": "h03"},
        version=None,
    )
    assert got["result"] == body["result"]
    listed = rpc(a2a, "tasks/pushNotificationConfig/list", {"id": task_id}, version=None)
    assert listed["result"] == [body["result"]]
    gone = rpc(
        a2a,
        "tasks/pushNotificationConfig/delete",
        {"id": task_id, "pushNotificationConfigId": "h03"},
        version=None,
    )
    assert gone["result"] is None, gone
    listed = rpc(a2a, "tasks/pushNotificationConfig/list", {"id": task_id}, version=None)
    assert listed["result"] == []
    refused = rpc(
        a2a,
        "tasks/pushNotificationConfig/set",
        {"taskId": task_id, "pushNotificationConfig": {"url": "http://10.0.0.1/"}},
        version=None,
    )
    assert refused["error"]["code"] == -32602, refused


def test_0_3_payload_is_the_0_3_task(a2a, receiver):
    task_id = new_task(a2a, "sleep 1")
    rpc(
        a2a,
        "tasks/pushNotificationConfig/set",
        {"taskId": task_id, "pushNotificationConfig": {"url": receiver.url + "/v03task"}},
        version=None,
    )

    def last_state():
        seen = receiver.at("/v03task")
        return seen[-1]["body"]["status"]["state"] if seen else None

    assert wait_until(lambda: last_state() == "completed", 20), receiver.at("/v03task")
    task = types_v03.Task.model_validate(receiver.at("/v03task")[-1]["body"])
    assert task.id == task_id
