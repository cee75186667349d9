"""The example planner and coder hand off by delegation, through the real
gateway and companion service: each agent has a did:key of its own
(W3C did:key, Ed25519), is registered with it (`did=`), takes its task
with the gateway's identity token for that DID, calls the gateway with the
token delegated to it, and the planner hands the work to the coder with a
token it exchanged for its own (RFC 8693 section 2.1, its DID-JWT as the
actor token). Every request into and out of each agent passes a recording
proxy, so the test sees the agents' whole traffic: the user's token is in
none of it, and the model engine sees the user as X-Attach-User and
`coder, planner` as X-Attach-Actor (RFC 8693 section 4.1, current actor
first)."""

import base64
import http.client
import json
import os
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from a2a_agents import agent_base
from did_key import ED25519_PUB, did_key
from engine import Engine
from gateway import REPO
from idp import DEFAULT_AUDIENCE, b64url
from netutil import HOST, QuietHandler
from stack import launch_stack

AGENT_BIN = REPO / "target/release/attach-agent"
# One reply for every model call: the planner's plan and the coder's code.
REPLY = "1. Take the list.\n2. Return it sorted.\n\n```python\nprint(sorted([3, 1, 2]))\n```"
def claims_of(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def identity_file(path):
    """A did:key identity file as the launcher writes one (mode 0600); the
    DID and the private key."""
    seed = os.urandom(32)
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    did = did_key(ED25519_PUB, public)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"did": did, "seed": b64url(seed)}, f)
    return did, key


class _ProxyHandler(QuietHandler):
    def _forward(self):
        body = self.read_body()
        proxy = self.server.proxy
        # Recorded before it is forwarded, so that a request whose answer
        # never comes is in the log too.
        entry = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
            "status": None,
            "reply": "",
        }
        proxy.record(entry)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        target = urlsplit(proxy.target)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            reply = response.read()
            reply_headers = response.getheaders()
        finally:
            conn.close()
        entry.update(status=response.status, reply=reply.decode("utf-8", "replace"))
        self.send_response(response.status)
        for name, value in reply_headers:
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = _forward


class RecordingProxy:
    """Forwards every request to `target` (set before use) and records it
    with its reply: one side of an agent's traffic."""

    def __init__(self):
        self.target = None
        self._log = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((HOST, 0), _ProxyHandler)
        self._server.daemon_threads = True
        self._server.proxy = self
        self.url = f"http://{HOST}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def record(self, entry):
        with self._lock:
            self._log.append(entry)

    @property
    def log(self):
        with self._lock:
            return list(self._log)

    def close(self):
        self._server.shutdown()
        self._server.server_close()


class Agent:
    """One attach-agent process, its inbound proxy (from the service) and
    its outbound proxy (to the gateway)."""

    def __init__(self, role, workdir):
        self.role = role
        self.identity = workdir / f"agent-{role}.json"
        self.did, self.key = identity_file(self.identity)
        self.inbound = RecordingProxy()
        self.outbound = RecordingProxy()
        self.process = None

    def start(self, gateway):
        self.outbound.target = gateway.base_url
        env = dict(
            os.environ,
            AGENT_ROLE=self.role,
            AGENT_PORT="0",
            GATEWAY_URL=self.outbound.url,
            GATEWAY_ISSUER=gateway.resource,
            # DID sign-in's audience: the stack's OIDC_AUD (README, DID_AUD).
            AGENT_TOKEN_AUDIENCE=DEFAULT_AUDIENCE,
            AGENT_IDENTITY=str(self.identity),
            MODEL="test-model",
        )
        self.process = subprocess.Popen(
            [str(AGENT_BIN)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.process.stdout.readline()
        assert " listening on " in line, f"{self.role}: {line!r} {self.process.stderr.read()}"
        self.inbound.target = line.rsplit(" ", 1)[1].strip()

    def traffic(self):
        return self.inbound.log + self.outbound.log

    def stop(self):
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.inbound.close()
        self.outbound.close()


@pytest.fixture(scope="module")
def handoff(tmp_path_factory, artifacts):
    if not os.access(AGENT_BIN, os.X_OK):
        pytest.fail(f"the agents {AGENT_BIN} are not built (make launcher)", pytrace=False)
    workdir = tmp_path_factory.mktemp("agent-delegation")
    planner, coder = Agent("planner", workdir), Agent("coder", workdir)
    registry = ",".join(
        f"{a.role}={a.inbound.url};did={a.did};timeout=60" for a in (planner, coder)
    )
    # The stack has an OIDC issuer, whose user signs in; the agents' actor
    # tokens are DID-JWTs, so DID sign-in admits their keys.
    env = {"A2A_AGENTS": registry, "DID_ALLOW": "did:key:*"}
    try:
        with Engine(reply=REPLY) as engine, launch_stack(
            workdir / "stack", a2a=True, upstream=engine, env=env
        ) as s:
            planner.start(s.gateway)
            coder.start(s.gateway)
            s.engine, s.planner, s.coder = engine, planner, coder
            s.user_token = s.token(sub="alice")
            message = {
                "messageId": "m-1",
                "role": "ROLE_USER",
                "parts": [{"text": "Sort a list in Python."}],
            }
            r = httpx.post(
                agent_base(s.gateway, "planner"),
                json={"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                      "params": {"message": message}},
                headers={"Authorization": f"Bearer {s.user_token}", "A2A-Version": "1.0"},
                timeout=120,
            )
            assert r.status_code == 200, r.text
            s.task = r.json()["result"]["task"]
            yield s
    finally:
        planner.stop()
        coder.stop()


def test_the_hand_off_completes(handoff):
    task = handoff.task
    assert task["status"]["state"] == "TASK_STATE_COMPLETED", json.dumps(task)
    code = [a for a in task["artifacts"] if a["name"] == "code"]
    assert code and code[0]["parts"] == [{"text": REPLY}], json.dumps(task)


def test_the_engine_sees_the_user_and_the_chain_of_agents(handoff):
    s = handoff
    chats = [r for r in s.engine.requests if r.path.split("?")[0] == "/api/chat"]
    assert len(chats) == 2, chats
    planner_chat, coder_chat = chats
    assert planner_chat.header("x-attach-user") == "alice"
    assert coder_chat.header("x-attach-user") == "alice"
    # RFC 8693 section 4.1: the current actor first, then who delegated to it.
    assert planner_chat.header("x-attach-actor") == s.planner.did
    assert coder_chat.header("x-attach-actor") == f"{s.coder.did}, {s.planner.did}"
    # One session for the whole hand-off: the delegated tokens carry it.
    assert planner_chat.header("x-attach-session") == coder_chat.header("x-attach-session")


def test_no_user_token_anywhere_in_the_agents_traffic(handoff):
    s = handoff
    signature = s.user_token.split(".")[2]
    for agent in (s.planner, s.coder):
        traffic = agent.traffic()
        assert traffic, f"the {agent.role} saw no traffic"
        everything = json.dumps(traffic)
        assert s.user_token not in everything, f"the user's token reached the {agent.role}"
        assert signature not in everything, f"the user's signature reached the {agent.role}"
        for entry in agent.inbound.log:
            assert "authorization" not in entry["headers"], entry
            assert "x-attach-assertion" not in entry["headers"], entry
        for entry in agent.outbound.log:
            bearer = entry["headers"].get("authorization")
            if entry["path"].startswith("/.well-known/") or entry["path"] == "/oauth/token":
                assert bearer is None, entry
                continue
            # Every call back is made with a token the gateway issued, for
            # the user, naming this agent as its current actor.
            claims = claims_of(bearer.removeprefix("Bearer "))
            assert claims["iss"] == s.gateway.resource, claims
            assert claims["sub"] == "alice", claims
            assert claims["act"]["sub"] == agent.did, claims


def test_the_planner_hands_off_with_a_token_only_it_could_get(handoff):
    s = handoff
    (received,) = [e for e in s.planner.inbound.log if e["method"] == "POST"]
    delegated = received["headers"]["x-attach-delegation"]
    (exchange,) = [e for e in s.planner.outbound.log if e["path"] == "/oauth/token"]
    assert exchange["status"] == 200, exchange
    form = dict(x.split("=", 1) for x in exchange["body"].split("&"))
    assert form["grant_type"] == "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
    assert form["subject_token"] == delegated
    actor = claims_of(form["actor_token"])
    assert actor["iss"] == actor["sub"] == s.planner.did
    issued = json.loads(exchange["reply"])
    assert issued["token_type"] == "Bearer"
    assert issued["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    (hand_off,) = [e for e in s.planner.outbound.log if e["path"] == "/a2a/agents/coder"]
    assert hand_off["headers"]["authorization"] == f"Bearer {issued['access_token']}"
    assert issued["access_token"] != delegated

    (coder_task,) = [e for e in s.coder.inbound.log if e["method"] == "POST"]
    assert claims_of(coder_task["headers"]["x-attach-delegation"])["act"] == {
        "sub": s.coder.did,
        "act": {"sub": s.planner.did},
    }

    # The exchanged token is the planner's alone: the coder, with its own
    # DID-JWT, cannot exchange it (RFC 8693 section 2.2.2, RFC 6749 5.2).
    now = int(time.time())
    coder_credential = jwt.encode(
        {"iss": s.coder.did, "sub": s.coder.did, "aud": DEFAULT_AUDIENCE,
         "iat": now, "exp": now + 60},
        s.coder.key,
        algorithm="EdDSA",
        headers={"kid": f"{s.coder.did}#{s.coder.did.removeprefix('did:key:')}"},
    )
    r = httpx.post(
        s.gateway.base_url + "/oauth/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": issued["access_token"],
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "actor_token": coder_credential,
            "actor_token_type": "urn:ietf:params:oauth:token-type:jwt",
        },
        timeout=20,
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request", r.text
    assert "delegated to another actor" in r.json()["error_description"], r.text
