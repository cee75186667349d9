"""Bodies past the companion service's limit (A2A_MAX_BODY) sent through the
gateway come back as the service's own 413 with its JSON error body, not as
Envoy's 503 for a connection the service reset while the body was still
arriving; the gateway serves the next request as usual. RFC 9110 §15.5.14:
413 (Content Too Large) is the answer for content larger than the server is
willing to process."""

import http.client
import json

import pytest

from httpc import assert_error_body
from netutil import HOST

LIMIT = 64 * 1024
# Far past the limit: most of it is still on its way when the service
# decides, which is what made the answer a reset.
BIG = 8 << 20
STACK = {
    "a2a": True,
    "env": {"A2A_MAX_BODY": str(LIMIT), "A2A_AGENTS": "echo=http://127.0.0.1:9"},
}
JSON = {"Content-Type": "application/json"}
PATHS = ["/mem/ingest", "/mem/events", "/a2a/agents/echo", "/a2a/tasks/send"]


@pytest.fixture(autouse=True)
def issuer_keys_loaded(gw):
    """Each test starts once the filter holds the IdP's keys. A request that
    arrives before (just after start-up) waits for them with its body held
    by Envoy, up to the listener's buffer limit (README, security model):
    an 8 MiB body would get Envoy's own 413 before the service saw it."""
    r = gw.get("/mem/events", token=gw.token(sub="alice"))
    assert r.status == 200, r


def oversized(size):
    return json.dumps({"events": [], "pad": "x" * size}).encode()


def post_chunked(port, path, token, body, piece=16 * 1024):
    """POSTs body in chunked transfer encoding (no Content-Length)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        chunks = (body[i : i + piece] for i in range(0, len(body), piece))
        conn.request(
            "POST", path, body=chunks, encode_chunked=True,
            headers=dict(JSON, Authorization=f"Bearer {token}"),
        )
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type") or "", resp.read()
    finally:
        conn.close()


def assert_still_served(gw, token):
    """The next request, with a body of exactly the limit, is read and stored."""
    doc = {"kind": "note", "content": ""}
    doc["content"] = "y" * (LIMIT - len(json.dumps(doc)))
    data = json.dumps(doc)
    assert len(data) == LIMIT
    r = gw.request("POST", "/mem/events", headers=JSON, token=token, body=data)
    assert r.status == 200, r
    mem_id = r.json()["mem_id"]
    r = gw.get(f"/mem/events/{mem_id}", token=token)
    assert r.status == 200, r
    assert r.json()["content"] == doc["content"]


@pytest.mark.parametrize("path", PATHS)
def test_oversized_body_gets_the_service_413(gw, path):
    token = gw.token(sub="alice")
    r = gw.request("POST", path, headers=JSON, token=token, body=oversized(BIG))
    assert r.status == 413, r
    body = assert_error_body(r)
    assert body["error"] == "payload_too_large", r
    assert str(LIMIT) in body["message"], r
    assert_still_served(gw, token)


@pytest.mark.parametrize("path", ["/mem/ingest", "/a2a/agents/echo"])
def test_oversized_chunked_body_gets_the_service_413(gw, path):
    token = gw.token(sub="alice")
    status, ctype, data = post_chunked(gw.gateway.port, path, token, oversized(BIG))
    assert status == 413, (status, data[:300])
    assert ctype.startswith("application/json"), ctype
    assert json.loads(data)["error"] == "payload_too_large"
    assert_still_served(gw, token)
