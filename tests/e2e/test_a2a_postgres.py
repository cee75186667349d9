"""Two gateways, each with its own Envoy, filter and service replica, over one
PostgreSQL: whatever one replica wrote, the other reads and changes.

The server is the one `a2a-service/tests/pg.sh` starts for `make test`
(A2A_TEST_DATABASE_URL); each module run gets a database of its own.
"""

import glob
import json
import os
import subprocess
import time
import uuid

import pytest

from a2a_agents import SdkAgent
from idp import IdP
from stack import launch_stack

JSON = {"Content-Type": "application/json"}
V1 = {"Content-Type": "application/json", "A2A-Version": "1.0"}


def _fresh_database():
    url = os.environ.get("A2A_TEST_DATABASE_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("A2A_TEST_DATABASE_URL is not set; make test runs this suite under pg.sh")
        pytest.skip("no PostgreSQL: run under a2a-service/tests/pg.sh (make test does)")
    psql = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    subprocess.run(
        [psql[-1] if psql else "psql", url, "-v", "ON_ERROR_STOP=1", "-qc", f"CREATE DATABASE {name}"],
        check=True,
        capture_output=True,
    )
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, artifacts):
    database = _fresh_database()
    idp = IdP(keys=("ES256",))
    with SdkAgent("upper") as agent:
        env = {"A2A_AGENTS": f"upper={agent.url};timeout=20", "A2A_DATABASE_URL": database}
        with launch_stack(tmp_path_factory.mktemp("pg-a"), idp=idp, a2a=True, env=env) as a:
            with launch_stack(
                tmp_path_factory.mktemp("pg-b"), idp=idp, idp_up=False, a2a=True, env=env
            ) as b:
                yield a, b


def rpc(stack, method, params, sub="alice"):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    r = stack.request("POST", "/a2a/agents/upper", headers=V1, body=body, token=stack.token(sub=sub))
    assert r.status == 200, r
    return r.json()


def message(text):
    return {"messageId": str(uuid.uuid4()), "role": "ROLE_USER", "parts": [{"text": text}]}


def test_a_task_sent_through_one_replica_is_read_through_the_other(replicas):
    a, b = replicas
    sent = rpc(a, "SendMessage", {"message": message("hello")})
    task = sent["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED", sent

    got = rpc(b, "GetTask", {"id": task["id"]})["result"]
    assert got["status"]["state"] == "TASK_STATE_COMPLETED"
    assert got["artifacts"][0]["parts"][0]["text"] == "HELLO"
    listed = rpc(b, "ListTasks", {})["result"]["tasks"]
    assert task["id"] in [t["id"] for t in listed]

    # Owner scoping holds on every replica.
    assert rpc(b, "GetTask", {"id": task["id"]}, sub="bob")["error"]["code"] == -32001
    assert task["id"] not in [t["id"] for t in rpc(a, "ListTasks", {}, sub="bob")["result"]["tasks"]]


def test_a_task_started_on_one_replica_is_canceled_on_the_other(replicas):
    a, b = replicas
    params = {"message": message("sleep 2"), "configuration": {"returnImmediately": True}}
    task = rpc(a, "SendMessage", params)["result"]["task"]
    assert task["status"]["state"] in ("TASK_STATE_SUBMITTED", "TASK_STATE_WORKING"), task

    canceled = rpc(b, "CancelTask", {"id": task["id"]})
    assert canceled["result"]["status"]["state"] == "TASK_STATE_CANCELED", canceled
    # Replica a's exchange ends after the cancel; its late answer must not
    # overwrite the canceled state.
    time.sleep(3)
    for stack in (a, b):
        assert rpc(stack, "GetTask", {"id": task["id"]})["result"]["status"]["state"] == "TASK_STATE_CANCELED"
    assert rpc(a, "CancelTask", {"id": task["id"]})["error"]["code"] == -32002


def test_memory_written_through_one_replica_is_read_through_the_other(replicas):
    a, b = replicas
    doc = {"kind": "plan", "content": {"steps": ["parse", "sort"]}}
    r = a.request("POST", "/mem/events", headers=JSON, body=json.dumps(doc).encode(), token=a.token(sub="alice"))
    assert r.status == 200, r
    mem_id = r.json()["mem_id"]

    r = b.get(f"/mem/events/{mem_id}", token=b.token(sub="alice"))
    assert r.status == 200, r
    assert r.json()["content"] == doc["content"]
    assert b.get(f"/mem/events/{mem_id}", token=b.token(sub="bob")).status == 404
