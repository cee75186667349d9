"""X-Attach-* identity headers: stamped from the verified token, never spoofable."""

import pytest

from httpc import assert_passed, assert_refused, session_id

SPOOFED = [
    ("X-Attach-User", "mallory"),
    ("x-attach-user", "mallory-2"),
    ("X-ATTACH-SESSION", "0000000000000000"),
    ("x-Attach-Role", "admin"),
    ("X-Attach-Tenant", "other-tenant"),
    ("x-attach-assertion", "forged"),
    ("X-Attach-Identity", "forged.identity.token"),
]

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def attach_headers(headers):
    return [(k.lower(), v) for k, v in headers if k.lower().startswith("x-attach-")]


def identity_headers(headers):
    """The stamped headers but the signed identity token, which must be one
    and the gateway's (test_identity_token.py checks what it says)."""
    stamped = attach_headers(headers)
    tokens = [v for k, v in stamped if k == "x-attach-identity"]
    assert len(tokens) == 1 and tokens[0].count(".") == 2 and "forged" not in tokens[0], stamped
    return sorted((k, v) for k, v in stamped if k != "x-attach-identity")


def test_session_formula_known_values():
    """First 16 hex digits of sha256("{sub}:{user_agent}"), lowercase."""
    assert session_id("alice", "curl/8.0") == "2d5bbd54eeab1ae2"
    assert session_id("alice", "") == "a343e93196f9e943"
    assert session_id("user-42") == "33ac2fda47bec749"


@pytest.mark.parametrize("ua", ["curl/8.0", BROWSER_UA, None], ids=["curl", "browser", "no-ua"])
def test_session_matches_formula(gw, ua):
    headers = {"User-Agent": ua} if ua is not None else {}
    resp = gw.get("/", token=gw.token(sub="alice"), headers=headers)
    assert_passed(resp, gw.upstream, "alice", ua or "")


def test_same_token_different_user_agents_get_different_sessions(gw):
    token = gw.token(sub="alice")
    sessions = []
    for ua in ("agent-one/1", "agent-two/2"):
        gw.upstream.clear()
        resp = gw.get("/", token=token, headers={"User-Agent": ua})
        assert_passed(resp, gw.upstream, "alice", ua)
        sessions.append(resp.header("x-attach-session"))
    assert sessions[0] != sessions[1]


def test_subject_with_punctuation_is_passed_verbatim(gw):
    sub = "alice@example.com|tenant:7/a+b=c"
    resp = gw.get("/", token=gw.token(sub=sub), headers={"User-Agent": "x"})
    assert_passed(resp, gw.upstream, sub, "x")


def test_spoofed_identity_headers_are_replaced(gw):
    headers = SPOOFED + [("User-Agent", "curl/8.0"), ("X-Attachment-Id", "keep-me")]
    resp = gw.get("/", token=gw.token(sub="alice"), headers=headers)
    rec = assert_passed(resp, gw.upstream, "alice", "curl/8.0")
    assert identity_headers(rec.headers) == [
        ("x-attach-session", session_id("alice", "curl/8.0")),
        ("x-attach-user", "alice"),
    ], rec
    # Only the x-attach- prefix is reserved.
    assert rec.header_values("x-attachment-id") == ["keep-me"]


def test_underscore_spellings_never_reach_the_upstream(gw):
    """CGI- and WSGI-style servers fold `x_attach_user` into X-Attach-User
    (HTTP_X_ATTACH_USER): the gateway refuses such a request outright."""
    for name in ("x_attach_user", "X_Attach_User", "x-attach_user", "x_attach-session"):
        gw.upstream.clear()
        resp = gw.get("/", token=gw.token(sub="bob"), headers=[(name, "alice")])
        assert resp.status == 400, (name, resp)
        assert resp.header("x-attach-user") is None, resp
        assert gw.upstream.requests == [], (name, gw.upstream.requests)
    # An underscore anywhere else is refused alike (Envoy's edge setting).
    resp = gw.get("/", token=gw.token(sub="bob"), headers=[("api_key", "x")])
    assert resp.status == 400, resp
    assert gw.upstream.requests == []
    # The gateway still answers.
    assert_passed(gw.get("/", token=gw.token(sub="bob")), gw.upstream, "bob")


def test_spoofed_headers_stripped_on_public_path(gw):
    resp = gw.get("/healthz", headers=SPOOFED)
    assert resp.status == 200, resp
    rec = gw.upstream.last()
    assert rec.path == "/healthz"
    assert attach_headers(rec.headers) == [], rec
    assert resp.header("x-attach-user") is None


def test_spoofed_headers_stripped_on_public_path_with_token(gw):
    """A public path with a token: whatever identity reaches the upstream is the real one."""
    resp = gw.get("/healthz", token=gw.token(sub="alice"), headers=SPOOFED)
    assert resp.status == 200, resp
    rec = gw.upstream.last()
    for name, value in attach_headers(rec.headers):
        assert (name, value) in (
            ("x-attach-user", "alice"),
            ("x-attach-session", session_id("alice")),
        ), rec


def test_spoofed_headers_stripped_on_cors_preflight(gw):
    headers = SPOOFED + [
        ("Origin", "http://app.example.test"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "authorization, content-type"),
    ]
    resp = gw.request("OPTIONS", "/v1/items", headers=headers)
    assert resp.status == 200, f"a preflight must pass without a token: {resp!r}"
    rec = gw.upstream.last()
    assert rec.method == "OPTIONS" and rec.path == "/v1/items"
    assert attach_headers(rec.headers) == [], rec
    assert resp.header("x-attach-user") is None


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("Origin", "http://app.example.test")],
        [("Access-Control-Request-Method", "POST")],
    ],
    ids=["bare-options", "origin-only", "method-only"],
)
def test_options_that_is_not_a_preflight_needs_a_token(gw, headers):
    resp = gw.request("OPTIONS", "/v1/items", headers=headers)
    assert_refused(resp, gw.resource, 401, None)
    assert gw.upstream.requests == []


def test_spoofed_headers_on_refused_request_go_nowhere(gw):
    resp = gw.get("/v1/items", headers=SPOOFED)
    assert_refused(resp, gw.resource, 401, None)
    assert gw.upstream.requests == []


def test_identity_on_response_can_be_disabled_and_authorization_forwarding_enabled(make_stack):
    s = make_stack(config={"response_headers": False, "forward_authorization": True})
    token = s.token(sub="alice")
    resp = s.get("/", token=token, headers=SPOOFED)
    assert resp.status == 200, resp
    rec = s.upstream.last()
    assert identity_headers(rec.headers) == [
        ("x-attach-session", session_id("alice")),
        ("x-attach-user", "alice"),
    ], rec
    assert rec.header("authorization") == f"Bearer {token}", rec
    assert attach_headers(resp.headers) == [], resp


def test_identity_assertion_is_an_hmac_over_the_stamped_headers(make_stack):
    """With assertion_key set, services behind the gateway can check that
    X-Attach-User/-Session came from the filter:
    v2.<exp>.<audience>.<HMAC-SHA256>, only on the routes that name an audience."""
    import base64
    import hashlib
    import hmac
    import time

    key = bytes(range(32))
    encoded = base64.urlsafe_b64encode(key).rstrip(b"=").decode()
    routes = [{"path": "/svc/*", "audience": "svc"}]
    s = make_stack(config={"assertion_key": encoded, "assertion_routes": routes})
    resp = s.get("/svc/x", token=s.token(sub="alice"), headers=SPOOFED + [("User-Agent", "ua")])
    assert resp.status == 200, resp
    rec = s.upstream.last()
    value = rec.header("x-attach-assertion")
    assert value and value != "forged", rec
    version, exp, audience, mac = value.split(".")
    assert (version, audience) == ("v2", "svc")
    assert time.time() < int(exp) <= time.time() + 61
    message = f"v2\nsvc\n{exp}\nalice\n{session_id('alice', 'ua')}".encode()
    want = base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).rstrip(b"=")
    assert mac.encode() == want
    assert resp.header("x-attach-assertion") is None, "the assertion is for upstreams only"
    # Any other route (the model engine's) gets none, and no spoofed one either.
    s.upstream.clear()
    resp = s.get("/api/chat", token=s.token(sub="alice"), headers=SPOOFED)
    assert resp.status == 200, resp
    assert s.upstream.last().header("x-attach-assertion") is None
