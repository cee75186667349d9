"""MCP servers behind the gateway, end to end with the official MCP Python SDK.

A real MCP server built with the SDK (mcp_server.py) is registered with
`attach run` (MCP_CONFIG, and MCP_SERVERS in one test) and reached at
/mcp/{name}; the SDK's own client, with its OAuth client credentials
provider, finds the test identity provider from the gateway's 401 and the
protected resource metadata it points at. Crafted requests (raw httpx) check
the refusals. The specifications followed are MCP 2026-07-28
`basic/authorization` and `basic/transports/streamable-http` (with the
2025-06-18 and 2025-11-25 revisions for older clients), RFC 9728 (protected
resource metadata), RFC 8707 (resource indicators), RFC 6750 (bearer
challenges) and RFC 8414 (authorization server metadata).
"""

import asyncio
import base64
import json
import re
import time

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client

from gateway import run_launcher
from httpc import parse_challenge, unique
from idp import DEFAULT_AUDIENCE, IdP
from mcp_server import RESOURCE_TEXT, RESOURCE_URI, McpServer
from netutil import wait_until
from stack import launch_stack

MODERN = "2026-07-28"
SERVER = "tools"
NARROW = "narrow"
USE, ADMIN = "tools:use", "tools:admin"
TOOLS = {"echo", "countdown", "whoami", "admin_reset"}
# JSON-RPC codes: HeaderMismatch (streamable-http, Server Validation) and
# the invalid-params code the gateway answers a refused tool with.
HEADER_MISMATCH = -32020
TOOL_NOT_PERMITTED = -32602
ACCEPT = "application/json, text/event-stream"


def registry(url):
    """The MCP_CONFIG document: `tools` needs tools:use, and its admin_*
    tools tools:admin and an ops-* user; `narrow`, the same server under
    another name, lets only echo through and lists only what may be called."""
    return {
        "servers": [
            {
                "name": SERVER,
                "url": url,
                "scopes": [USE],
                "tools": [{"match": "admin_*", "scopes": [ADMIN], "users": ["ops-*"]}],
            },
            {
                "name": NARROW,
                "url": url,
                "tools_list": "callable",
                "default": "deny",
                "tools": [{"match": "echo"}],
            },
        ]
    }


class Mcp:
    """The module's world: IdP, MCP server, gateway, and what they are called."""

    def __init__(self, stack, server):
        self.stack = stack
        self.idp = stack.idp
        self.gateway = stack.gateway
        self.server = server
        self.base = stack.gateway.resource

    def canonical(self, name=SERVER):
        return f"{self.base}/mcp/{name}"

    def metadata_url(self, name=SERVER):
        return f"{self.base}/.well-known/oauth-protected-resource/mcp/{name}"

    def token(self, sub, scope=USE, name=SERVER, **claims):
        """An access token for the server name (aud = its canonical URI)."""
        claims.setdefault("aud", self.canonical(name))
        return self.idp.token(sub=sub, scope=scope, **claims)

    def memory_token(self, sub):
        """A token for the same user on the gateway's other routes."""
        return self.idp.token(sub=sub, aud=DEFAULT_AUDIENCE)


@pytest.fixture(scope="module")
def world(tmp_path_factory, artifacts):
    workdir = tmp_path_factory.mktemp("mcp")
    with McpServer() as server:
        config = workdir / "mcp-servers.json"
        config.write_text(json.dumps(registry(server.url)))
        with launch_stack(workdir, idp=IdP(), a2a=True, env={"MCP_CONFIG": str(config)}) as s:
            w = Mcp(s, server)
            server.issuer = w.base
            server.audience = w.canonical()
            yield w


@pytest.fixture
def mcp(world):
    world.server.clear()
    return world


# -- the SDK's client --------------------------------------------------------------


class MemoryTokens:
    """The SDK's TokenStorage, in memory."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


def provider(w, client, name=SERVER):
    """The SDK's client credentials provider for a registered client, told
    only the MCP server's URL and which issuer its credentials belong to."""
    return ClientCredentialsOAuthProvider(
        server_url=w.canonical(name),
        storage=MemoryTokens(),
        client_id=client.client_id,
        client_secret=client.secret,
        issuer=w.idp.issuer,
    )


def with_client(w, client, work, name=SERVER, mode="auto"):
    """Runs work(sdk_client) in an SDK session with the server name, through the gateway."""

    async def go():
        async with httpx2.AsyncClient(auth=provider(w, client, name), timeout=30) as http:
            transport = streamable_http_client(w.canonical(name), http_client=http)
            async with Client(transport, mode=mode) as c:
                return await work(c)

    return asyncio.run(go())


def text_of(result):
    return "".join(block.text for block in result.content if block.type == "text")


# -- crafted requests ---------------------------------------------------------------


def modern_body(method, params=None, rpc_id=1, version=MODERN):
    params = dict(params or {})
    params["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": params}


def modern_headers(body, token=None, **overrides):
    """The request metadata headers a conforming 2026-07-28 client sends for body;
    overrides (name=value, None drops the header) craft the others."""
    headers = {
        "Content-Type": "application/json",
        "Accept": ACCEPT,
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": body["method"],
    }
    name = (body.get("params") or {}).get("name") or (body.get("params") or {}).get("uri")
    if name is not None:
        headers["Mcp-Name"] = name
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    for key, value in overrides.items():
        key = key.replace("_", "-")
        for existing in [k for k in headers if k.lower() == key.lower()]:
            del headers[existing]
        if value is not None:
            headers[key] = value
    return headers


def post(w, body, headers, name=SERVER):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(w.canonical(name), content=data, headers=headers, timeout=30)


def call(w, body, token, name=SERVER, **overrides):
    return post(w, body, modern_headers(body, token, **overrides), name)


def rpc_message(resp):
    """The JSON-RPC response in resp, whether a JSON body or the last SSE message."""
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        messages = [
            json.loads(line[5:])
            for line in resp.text.splitlines()
            if line.startswith("data:") and line[5:].strip()
        ]
        return [m for m in messages if "id" in m][-1]
    return resp.json()


def challenge(resp):
    values = resp.headers.get_list("www-authenticate")
    assert len(values) == 1, f"expected one challenge: {resp.headers!r}"
    scheme, params = parse_challenge(values[0])
    assert scheme.lower() == "bearer", values[0]
    return params


def assert_never_arrived(w, tool=None):
    """The MCP server received no request at all, or none calling tool."""
    seen = w.server.posts("tools/call", tool) if tool else w.server.requests
    assert seen == [], f"the MCP server received {seen!r}"


# -- discovery and use through the SDK ----------------------------------------------


def test_the_sdk_finds_the_identity_provider_from_the_401_and_uses_the_server(mcp):
    """MCP authorization, Authorization Server Discovery and Resource Parameter
    Implementation: the SDK client, given only the server's URL, follows the
    401's resource_metadata (RFC 9728 section 5.1) to the protected resource
    metadata, the issuer's RFC 8414 metadata, and asks the token endpoint for
    a token naming the canonical URI as resource (RFC 8707 section 2) with
    the challenge's scope (Scope Selection Strategy); then tools/list,
    tools/call (a plain and a streamed result) and resources work unchanged."""
    client = mcp.idp.register_client(sub=unique("sdk"), scopes=[USE])
    progress = []

    async def work(c):
        async def on_progress(done, total, message):
            progress.append((done, total, message))

        listed = await c.list_tools()
        echoed = await c.call_tool("echo", {"text": "through the gateway"})
        counted = await c.call_tool("countdown", {"steps": 3}, progress_callback=on_progress)
        who = await c.call_tool("whoami", {})
        resources = await c.list_resources()
        read = await c.read_resource(RESOURCE_URI)
        return listed, echoed, counted, who, resources, read

    listed, echoed, counted, who, resources, read = with_client(mcp, client, work)

    assert {t.name for t in listed.tools} == TOOLS
    assert text_of(echoed) == "through the gateway" and not echoed.is_error
    assert text_of(counted) == "counted 3"
    assert progress == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    assert text_of(who) == client.sub
    assert [r.uri for r in resources.resources] == [RESOURCE_URI]
    assert [c.text for c in read.contents] == [RESOURCE_TEXT]

    requests = [r for r in mcp.idp.token_requests if r["client_id"] == client.client_id]
    assert len(requests) == 1, requests
    (grant,) = requests
    assert grant["status"] == 200, grant
    assert grant["form"]["resource"] == [mcp.canonical()], grant
    assert grant["form"]["scope"] == [USE], grant
    assert grant["claims"]["aud"] == mcp.canonical()
    assert mcp.idp.count(mcp.idp.metadata_path) >= 1

    # The streamed answer stayed a stream: the server's SSE response went out as one.
    (streamed,) = mcp.server.posts("tools/call", "countdown")
    assert streamed.content_type.startswith("text/event-stream"), streamed
    # Only authorized requests got through: the SDK's first, tokenless try never did.
    for seen in mcp.server.requests:
        assert seen.header("x-attach-user") == client.sub, seen


def test_the_sdk_steps_up_to_the_scope_a_tool_needs(mcp):
    """MCP authorization, Step-Up Authorization Flow: a 403 insufficient_scope
    on admin_reset makes the SDK ask for the union of the scopes it had and
    the challenged ones, and the call then goes through."""
    client = mcp.idp.register_client(sub=unique("ops"), scopes=[USE, ADMIN])
    resets = mcp.server.resets

    async def work(c):
        return await c.call_tool("admin_reset", {})

    result = with_client(mcp, client, work)
    assert text_of(result) == "reset"
    assert mcp.server.resets == resets + 1
    scopes = [
        r["form"]["scope"][0].split()
        for r in mcp.idp.token_requests
        if r["client_id"] == client.client_id
    ]
    assert scopes[0] == [USE], scopes
    assert set(scopes[-1]) == {USE, ADMIN}, scopes


def test_an_older_sdk_client_with_the_initialize_handshake_still_works(mcp):
    """streamable-http Backward Compatibility (the 2025-11-25 transport):
    the SDK's legacy mode (initialize, Mcp-Session-Id, the GET stream, DELETE)
    through the gateway, whose checks read the method and tool from the body."""
    client = mcp.idp.register_client(sub=unique("legacy"), scopes=[USE])

    async def work(c):
        return c.protocol_version, await c.call_tool("echo", {"text": "old times"})

    version, result = with_client(mcp, client, work, mode="legacy")
    assert version == "2025-11-25"
    assert text_of(result) == "old times"
    methods = [s.json_body().get("method") for s in mcp.server.posts()]
    assert methods[0] == "initialize", methods
    assert any(s.header("mcp-session-id") for s in mcp.server.requests)


def test_a_2025_06_18_client_is_read_from_the_body(mcp):
    """MCP 2025-06-18 transports: an initialize handshake, then calls with
    MCP-Protocol-Version 2025-06-18 and no Mcp-Method / Mcp-Name; the tool
    rules apply all the same, read from the body."""
    sub = unique("v0618")
    token = mcp.token(sub, scope=f"{USE} {ADMIN}")
    auth = {"Authorization": f"Bearer {token}", "Accept": ACCEPT, "Content-Type": "application/json"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "old", "version": "1"},
        },
    }
    r = post(mcp, init, auth)
    assert r.status_code == 200, r.text
    assert rpc_message(r)["result"]["protocolVersion"] == "2025-06-18"
    session = r.headers["mcp-session-id"]
    legacy = dict(auth, **{"MCP-Protocol-Version": "2025-06-18", "Mcp-Session-Id": session})
    r = post(mcp, {"jsonrpc": "2.0", "method": "notifications/initialized"}, legacy)
    assert r.status_code == 202, r.text
    echo = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "june"}}}
    r = post(mcp, echo, legacy)
    assert r.status_code == 200, r.text
    assert rpc_message(r)["result"]["content"][0]["text"] == "june"

    admin = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
             "params": {"name": "admin_reset", "arguments": {}}}
    r = post(mcp, admin, legacy)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == TOOL_NOT_PERMITTED, r.text
    # A header an older client does send must still agree with the body.
    r = post(mcp, echo, dict(legacy, **{"Mcp-Name": "admin_reset"}))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == HEADER_MISMATCH, r.text
    assert_never_arrived(mcp, "admin_reset")
    assert len(mcp.server.posts("tools/call", "echo")) == 1


# -- the protected resource's documents and challenges --------------------------------


def test_protected_resource_metadata_names_the_canonical_uri(mcp):
    """RFC 9728 section 3 (path-inserted well-known URI, section 3.1) and
    section 3.3 (resource identical to the one the client used); MCP
    authorization, Canonical Server URI: one document per server."""
    for name, scopes in ((SERVER, {USE, ADMIN}), (NARROW, set())):
        r = httpx.get(mcp.metadata_url(name), timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        doc = r.json()
        assert doc["resource"] == mcp.canonical(name)
        assert doc["authorization_servers"] == [mcp.idp.issuer]
        assert set(doc.get("scopes_supported") or []) == scopes, doc
        assert doc["bearer_methods_supported"] == ["header"]
    assert_never_arrived(mcp)


def test_a_request_without_a_token_is_challenged_towards_the_metadata(mcp):
    """RFC 9728 section 5.1 and RFC 6750 section 3: 401 with resource_metadata
    pointing at the server's own document and scope= what it needs (MCP
    authorization, Scope Selection Strategy); no error code, as no token came."""
    body = modern_body("tools/list")
    r = call(mcp, body, None)
    assert r.status_code == 401, r.text
    params = challenge(r)
    assert params["realm"] == "attach"
    assert params["resource_metadata"] == mcp.metadata_url()
    assert params["scope"].split() == [USE]
    assert "error" not in params
    assert_never_arrived(mcp)


def test_a_token_for_another_audience_is_refused(mcp):
    """RFC 8707 section 2 and MCP authorization, Token Handling: a token is
    taken only when issued for this server's canonical URI, whatever else the
    gateway accepts elsewhere (attach-api), and not for a sibling server."""
    sub = unique("aud")
    body = modern_body("tools/list")
    for aud in (DEFAULT_AUDIENCE, mcp.canonical(NARROW), mcp.base):
        r = call(mcp, body, mcp.token(sub, aud=aud))
        assert r.status_code == 401, (aud, r.text)
        params = challenge(r)
        assert params["error"] == "invalid_token", (aud, params)
        assert params["resource_metadata"] == mcp.metadata_url(), (aud, params)
    assert_never_arrived(mcp)
    # The same user with this server's audience gets through.
    assert call(mcp, body, mcp.token(sub)).status_code == 200


def test_a_missing_scope_gets_403_with_every_scope_the_call_needs(mcp):
    """MCP authorization, Runtime Insufficient Scope Errors (RFC 6750 section
    3.1): 403, error="insufficient_scope", and scope= listing all the call
    needs in one challenge, with resource_metadata."""
    sub = unique("ops")
    admin = modern_body("tools/call", {"name": "admin_reset", "arguments": {}})
    r = call(mcp, admin, mcp.token(sub, scope=USE))
    assert r.status_code == 403, r.text
    params = challenge(r)
    assert params["error"] == "insufficient_scope"
    assert set(params["scope"].split()) == {USE, ADMIN}, params
    assert params["resource_metadata"] == mcp.metadata_url()

    r = call(mcp, modern_body("tools/list"), mcp.token(sub, scope=""))
    assert r.status_code == 403, r.text
    params = challenge(r)
    assert params["error"] == "insufficient_scope"
    assert params["scope"].split() == [USE], params
    assert_never_arrived(mcp)


def test_a_tool_the_rules_deny_never_reaches_the_server(mcp):
    """Tool-level authorization: admin_* needs an ops-* user; alice, with
    every scope, is refused with 403 and a JSON-RPC error, and the server's
    log shows the call never arrived."""
    resets = mcp.server.resets
    body = modern_body("tools/call", {"name": "admin_reset", "arguments": {}}, rpc_id=41)
    r = call(mcp, body, mcp.token("alice", scope=f"{USE} {ADMIN}"))
    assert r.status_code == 403, r.text
    answer = r.json()
    assert answer["jsonrpc"] == "2.0" and answer["id"] == 41, answer
    assert answer["error"]["code"] == TOOL_NOT_PERMITTED, answer
    assert mcp.server.resets == resets
    assert_never_arrived(mcp)


def test_tools_list_shows_only_what_the_caller_may_call_when_asked_to(mcp):
    """tools_list "callable" on `narrow` (default deny, echo allowed): the
    listing is filtered, echo works, whoami is refused before the server."""
    client = mcp.idp.register_client(sub=unique("narrow"))

    async def work(c):
        listed = await c.list_tools()
        echoed = await c.call_tool("echo", {"text": "narrowly"})
        return listed, echoed

    listed, echoed = with_client(mcp, client, work, name=NARROW)
    assert [t.name for t in listed.tools] == ["echo"]
    assert text_of(echoed) == "narrowly"
    body = modern_body("tools/call", {"name": "whoami", "arguments": {}})
    r = call(mcp, body, mcp.token(client.sub, scope="", name=NARROW), name=NARROW)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == TOOL_NOT_PERMITTED
    assert_never_arrived(mcp, "whoami")


# -- transport checks -------------------------------------------------------------------


def b64_sentinel(value):
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


def test_headers_that_disagree_with_the_body_are_refused_before_any_decision(mcp):
    """streamable-http, Standard Request Headers and Server Validation: a
    Mcp-Method or Mcp-Name that differs from the body, a missing one, or an
    MCP-Protocol-Version that differs from the body's _meta gets 400 with
    JSON-RPC error -32020 (HeaderMismatch), and never reaches the server;
    a Base64-sentinel Mcp-Name (Value Encoding) is decoded before comparing."""
    token = mcp.token(unique("hdr"))
    echo = modern_body("tools/call", {"name": "echo", "arguments": {"text": "x"}}, rpc_id=7)
    crafted = {
        "method differs": dict(Mcp_Method="tools/list"),
        "name differs": dict(Mcp_Name="admin_reset"),
        "name missing": dict(Mcp_Name=None),
        "method missing": dict(Mcp_Method=None),
        "version differs": dict(MCP_Protocol_Version="2025-11-25"),
        "sentinel of another name": dict(Mcp_Name=b64_sentinel("admin_reset")),
    }
    for case, overrides in crafted.items():
        r = call(mcp, echo, token, **overrides)
        assert r.status_code == 400, (case, r.text)
        answer = r.json()
        assert answer["error"]["code"] == HEADER_MISMATCH, (case, answer)
    assert_never_arrived(mcp)

    r = call(mcp, echo, token, Mcp_Name=b64_sentinel("echo"))
    assert r.status_code == 200, r.text
    assert rpc_message(r)["result"]["content"][0]["text"] == "x"


def test_an_oversized_request_body_gets_413(mcp):
    """MCP request bodies are buffered up to a cap (1 MiB by default): one
    below it passes (and, sent first, has the filter hold the IdP's keys, so
    the big one is judged by the cap alone); one above gets 413 and never
    reaches the server."""
    token = mcp.token(unique("big"))
    fits = modern_body("tools/call", {"name": "echo", "arguments": {"text": "b" * 200_000}})
    r = call(mcp, fits, token)
    assert r.status_code == 200, r.text[:200]
    assert rpc_message(r)["result"]["content"][0]["text"] == "b" * 200_000
    mcp.server.clear()
    big = modern_body("tools/call", {"name": "echo", "arguments": {"text": "a" * (1024 * 1024)}})
    r = call(mcp, big, token)
    assert r.status_code == 413, r.text[:200]
    assert_never_arrived(mcp)


# -- what the MCP server receives ----------------------------------------------------------


def test_the_server_never_sees_the_token_and_verifies_who_called(mcp):
    """MCP authorization, Token Handling ("MUST NOT accept or transit any
    other tokens") and security considerations on token passthrough: the
    caller's Authorization stops at the gateway; the server gets
    X-Attach-User / X-Attach-Session and an X-Attach-Identity that PyJWT
    verifies with the gateway's published keys and aud = the canonical URI.
    Identity headers the caller sent itself are not what arrives."""
    client = mcp.idp.register_client(sub=unique("who"), scopes=[USE])

    async def work(c):
        await c.list_tools()
        return await c.call_tool("whoami", {})

    assert text_of(with_client(mcp, client, work)) == client.sub
    body = modern_body("tools/call", {"name": "whoami", "arguments": {}})
    forged = call(mcp, body, mcp.token(client.sub), X_Attach_User="mallory",
                  X_Attach_Identity="forged.token.value")
    assert forged.status_code == 200, forged.text
    assert rpc_message(forged)["result"]["content"][0]["text"] == client.sub

    seen = mcp.server.requests
    assert seen, "the MCP server received nothing"
    for rec in seen:
        assert "authorization" not in rec.header_names(), rec
        assert rec.header_values("x-attach-user") == [client.sub], rec
        assert len(rec.header_values("x-attach-session")) == 1, rec
        assert len(rec.header_values("x-attach-identity")) == 1, rec
        assert rec.identity is not None and rec.identity["ok"], rec.identity
        claims = rec.identity["claims"]
        assert claims["aud"] == mcp.canonical()
        assert claims["iss"] == mcp.base
        assert claims["sub"] == client.sub


# -- tool calls in memory ------------------------------------------------------------------


def list_events(w, sub, **query):
    r = httpx.get(f"{w.base}/mem/events", params=query,
                  headers={"Authorization": f"Bearer {w.memory_token(sub)}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["events"]


def wait_events(w, sub, kind, n, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        events = list_events(w, sub, kind=kind)
        if len(events) >= n or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


def test_tool_calls_and_results_land_in_the_callers_memory_only(mcp):
    """tools/call requests and their results (a plain and a streamed one) are
    mirrored as tool_call / tool_result events into the caller's memory, with
    the server's route, the tool and the session; another user sees none."""
    client = mcp.idp.register_client(sub=unique("mem"), scopes=[USE])
    marker = unique("remember")

    async def work(c):
        await c.call_tool("echo", {"text": marker})
        await c.call_tool("countdown", {"steps": 2})

    with_client(mcp, client, work)
    session = mcp.server.posts("tools/call", "echo")[0].header("x-attach-session")

    calls = wait_events(mcp, client.sub, "tool_call", 2)
    results = wait_events(mcp, client.sub, "tool_result", 2)
    by_tool = {e.get("tool"): e for e in calls}
    assert set(by_tool) == {"echo", "countdown"}, calls
    assert marker in by_tool["echo"]["content"], by_tool["echo"]
    results_by_tool = {e.get("tool"): e for e in results}
    assert set(results_by_tool) == {"echo", "countdown"}, results
    assert marker in results_by_tool["echo"]["content"], results_by_tool["echo"]
    assert "counted 2" in results_by_tool["countdown"]["content"], results_by_tool["countdown"]
    for ev in calls + results:
        assert ev["route"] == f"/mcp/{SERVER}", ev
        assert ev["session"] == session, ev
    for ev in results:
        assert ev.get("is_error") is False, ev

    other = unique("other")
    for kind in ("tool_call", "tool_result"):
        assert not [e for e in list_events(mcp, other, kind=kind) if marker in e["content"]]


# -- decisions in Envoy's stats --------------------------------------------------------------

_STAT = re.compile(r"^(\S*attach_mcp\.(\w[\w.-]*)\.(allowed|denied)): (\d+)$")


def decisions(w):
    """{(server, "allowed" | "denied"): count} from Envoy's admin /stats, and the stat names."""
    r = w.gateway.admin("GET", "/stats?filter=attach_mcp")
    assert r.status == 200, r
    found, names = {}, []
    for line in r.text.splitlines():
        m = _STAT.match(line.strip())
        if m:
            names.append(m.group(1))
            found[(m.group(2), m.group(3))] = int(m.group(4))
    return found, names


def test_decisions_are_counted_per_server_without_user_ids(mcp):
    """Tool-level authorization decisions show in Envoy's stats as
    attach_mcp.<server>.allowed / .denied counters, with no user in the names."""
    sub = unique("stats")
    before, _ = decisions(mcp)
    echo = modern_body("tools/call", {"name": "echo", "arguments": {"text": "count me"}})
    assert call(mcp, echo, mcp.token(sub)).status_code == 200
    admin = modern_body("tools/call", {"name": "admin_reset", "arguments": {}})
    assert call(mcp, admin, mcp.token(sub, scope=f"{USE} {ADMIN}")).status_code == 403

    def moved():
        now, _ = decisions(mcp)
        allowed = now.get((SERVER, "allowed"), 0) - before.get((SERVER, "allowed"), 0)
        denied = now.get((SERVER, "denied"), 0) - before.get((SERVER, "denied"), 0)
        return (allowed, denied) if allowed >= 1 and denied >= 1 else None

    assert wait_until(moved, 5), f"counters did not move: {decisions(mcp)}"
    _, names = decisions(mcp)
    assert not [n for n in names if sub in n], names


# -- the list form of the registry -----------------------------------------------------------


def test_a_server_registered_in_mcp_servers_is_protected_and_usable(tmp_path, artifacts):
    """MCP_SERVERS=name=url;scopes=…: the list form registers a server with
    its scopes; the SDK client discovers and calls it as through MCP_CONFIG."""
    with McpServer() as server:
        env = {"MCP_SERVERS": f"{SERVER}={server.url};scopes={USE}"}
        with launch_stack(tmp_path, idp=IdP(), env=env) as s:
            w = Mcp(s, server)
            doc = httpx.get(w.metadata_url(), timeout=10).json()
            assert doc["resource"] == w.canonical()
            assert doc["scopes_supported"] == [USE]
            client = w.idp.register_client(sub=unique("list"), scopes=[USE])

            async def work(c):
                return await c.call_tool("echo", {"text": "listed"})

            assert text_of(with_client(w, client, work)) == "listed"
            assert [r["form"]["resource"] for r in w.idp.token_requests] == [[w.canonical()]]
            assert all(r.header("x-attach-user") == client.sub for r in server.requests)


def claims_of(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_attach_token_mints_a_did_token_for_a_registered_server(tmp_path, artifacts):
    """`attach token --mcp NAME`: a DID-JWT whose audience is the server's
    canonical URI, which its route accepts (RFC 8707 section 2), where the
    token for the gateway itself is refused; an unregistered name is an
    error naming the registry."""
    with McpServer() as server:
        env = {"MCP_SERVERS": f"{SERVER}={server.url}", "DID_ALLOW": "did:key:*"}
        with launch_stack(tmp_path, idp=IdP(), env=env) as s:
            w = Mcp(s, server)
            run = lambda *args: run_launcher(["token", *args], s.gateway.env(), cwd=s.gateway.workdir)
            rc, token, err = run("--mcp", SERVER)
            assert rc == 0, err
            token = token.strip()
            assert claims_of(token)["aud"] == w.canonical()
            body = modern_body("tools/call", {"name": "echo", "arguments": {"text": "minted"}})
            resp = call(w, body, token)
            assert resp.status_code == 200, resp.text
            assert rpc_message(resp)["result"]["content"][0]["text"] == "minted"
            rc, gateway_token, err = run()
            assert rc == 0, err
            server.clear()
            resp = call(w, body, gateway_token.strip())
            assert resp.status_code == 401, resp.text
            assert challenge(resp)["error"] == "invalid_token"
            assert_never_arrived(w)
            rc, out, err = run("--mcp", "nope")
            assert rc == 2 and "MCP_SERVERS" in err and '"nope"' in err, (rc, out, err)
