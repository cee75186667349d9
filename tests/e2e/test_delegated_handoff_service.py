"""Hand-offs without the user's token, through the real gateway: an agent
registered with a DID (`A2A_AGENTS=name=url;did=did:key:...`) gets, from
the companion service, an identity token for its DID and a token delegated
to it (RFC 8693 section 4.1: `act` names it), which the agent checks the
way any upstream would, with PyJWT and its PyJWKClient knowing only the
gateway's `/.well-known/openid-configuration` and the JWKS it names
(RFC 7519 section 7.2). The user's own bearer token never reaches it; the
A2A message carries the chain in `metadata.actorChain` (an extension
named after A2A issue 2028). A hand-off that would loop is refused."""

import json
import threading
from http.server import ThreadingHTTPServer

import httpx
import jwt
import pytest

from a2a_agents import agent_base
from netutil import HOST, QuietHandler
from stack import launch_stack

AGENT_DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


class _RecordingHandler(QuietHandler):
    """Records every request whole; answers A2A 1.0 SendMessage with a
    completed task, and has no card (the service makes one)."""

    def do_GET(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        raw = self.read_body()
        self.server.agent.requests.append(
            {"headers": {k.lower(): v for k, v in self.headers.items()}, "raw": raw}
        )
        request = json.loads(raw)
        task = {
            "id": "agent-task-1",
            "contextId": request["params"]["message"].get("contextId", "ctx"),
            "status": {"state": "TASK_STATE_COMPLETED",
                       "message": {"messageId": "r1", "role": "ROLE_AGENT",
                                   "parts": [{"text": "done"}]}},
        }
        reply = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {"task": task}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class RecordingAgent:
    def __init__(self):
        self.requests = []
        self._server = ThreadingHTTPServer((HOST, 0), _RecordingHandler)
        self._server.daemon_threads = True
        self._server.agent = self
        self.url = f"http://{HOST}:{self._server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def handoff(tmp_path_factory, artifacts):
    with RecordingAgent() as agent:
        workdir = tmp_path_factory.mktemp("delegated-handoff")
        env = {"A2A_AGENTS": f"handy={agent.url};did={AGENT_DID};timeout=10"}
        with launch_stack(workdir, a2a=True, env=env) as s:
            s.agent = agent
            yield s


def verified(s, token, audience):
    """The claims of token, checked from the gateway's issuer URL alone."""
    r = httpx.get(s.gateway.base_url + "/.well-known/openid-configuration", timeout=10)
    assert r.status_code == 200, r.text
    doc = r.json()
    key = jwt.PyJWKClient(doc["jwks_uri"], cache_keys=False).get_signing_key_from_jwt(token)
    return doc["issuer"], jwt.decode(
        token,
        key.key,
        algorithms=["EdDSA", "ES256"],
        audience=audience,
        issuer=doc["issuer"],
        options={"require": ["iss", "sub", "aud", "iat", "exp", "jti"]},
    )


def send(s, bearer, text):
    message = {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}]}
    return httpx.post(
        agent_base(s.gateway, "handy"),
        json={"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}},
        headers={"Authorization": f"Bearer {bearer}", "A2A-Version": "1.0"},
        timeout=60,
    )


def test_the_agent_gets_tokens_of_its_own_and_never_the_users(handoff):
    s = handoff
    user_token = s.token(sub="alice")
    r = send(s, user_token, "hello")
    assert r.status_code == 200, r.text
    assert r.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED", r.text
    (seen,) = s.agent.requests
    headers = seen["headers"]

    # Who the user is, for this agent's DID only (RFC 7519 section 4.1.3).
    issuer, identity = verified(s, headers["x-attach-identity"], AGENT_DID)
    assert identity["sub"] == "alice"
    assert identity["sid"] == headers["x-attach-session"]
    assert "act" not in identity, "the user asked the service alone"
    with pytest.raises(jwt.InvalidAudienceError):
        verified(s, headers["x-attach-identity"], "attach-a2a")

    # The agent's bearer token toward the gateway: the user as subject, the
    # agent as the actor (RFC 8693 section 4.1), for the gateway itself.
    _, delegated = verified(s, headers["x-attach-delegation"], issuer)
    assert delegated["sub"] == "alice"
    assert delegated["act"] == {"sub": AGENT_DID}
    assert delegated["exp"] - delegated["iat"] <= 300

    # Nothing of the user's credential, anywhere in what the agent received.
    assert "authorization" not in headers
    assert "x-attach-assertion" not in headers
    everything = json.dumps(headers) + seen["raw"].decode()
    assert user_token not in everything
    assert user_token.split(".")[2] not in everything, "not even the signature"

    body = json.loads(seen["raw"])
    assert body["params"]["message"]["metadata"]["actorChain"] == [AGENT_DID]


def test_a_handoff_back_to_an_agent_already_in_the_chain_is_refused(handoff):
    """The agent calls the gateway with its delegated token and hands the
    task to itself: the chain would name it twice, so the service refuses
    before the task exists, and the agent gets nothing."""
    s = handoff
    r = send(s, s.token(sub="bob"), "first")
    assert r.status_code == 200, r.text
    delegated = s.agent.requests[-1]["headers"]["x-attach-delegation"]
    before = len(s.agent.requests)

    r = send(s, delegated, "again")
    assert r.status_code == 200, r.text
    error = r.json()["error"]
    assert error["code"] == -32602, error
    assert error["data"][0]["reason"] == "DELEGATION_REFUSED", error
    assert len(s.agent.requests) == before, "nothing was sent to the agent"
    listed = httpx.post(
        agent_base(s.gateway, "handy"),
        json={"jsonrpc": "2.0", "id": 2, "method": "ListTasks", "params": {}},
        headers={"Authorization": f"Bearer {s.token(sub='bob')}", "A2A-Version": "1.0"},
        timeout=30,
    ).json()["result"]
    assert len(listed["tasks"]) == 1, listed
