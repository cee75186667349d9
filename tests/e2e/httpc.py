"""A small HTTP/1.1 client with full control over the headers sent, plus the
checks every refused request must pass."""

import hashlib
import http.client
import json
import re
import uuid

from netutil import HOST

METADATA_PATH = "/.well-known/oauth-protected-resource"

# assert_refused(error=ANY_ERROR): the challenge's error code is not checked.
ANY_ERROR = object()


def unique(prefix):
    """A name no other test uses (a user, a session), so listings never mix tests."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def read_until(resp, terminator):
    """Reads a streaming response, as bytes arrive, until they end with terminator."""
    got = b""
    while not got.endswith(terminator):
        piece = resp.read1(1)
        if not piece:
            break
        got += piece
    return got


def session_id(sub, user_agent=""):
    """X-Attach-Session: the first 16 hex digits of sha256("{sub}:{user_agent}")."""
    return hashlib.sha256(f"{sub}:{user_agent}".encode()).hexdigest()[:16]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name, value)
        self.body = body

    def header(self, name):
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        body = self.text
        if len(body) > 600:
            body = body[:600] + "..."
        return f"<HTTP {self.status} {self.headers!r} {body!r}>"


def request(port, method="GET", path="/", headers=(), body=None, timeout=20):
    """Sends one request on a fresh connection; headers is a dict or a list of pairs
    (duplicates and exact spelling preserved). No User-Agent is added."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        skip_host = any(name.lower() == "host" for name, _ in headers)
        conn.putrequest(method, path, skip_host=skip_host, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            if isinstance(body, str):
                body = body.encode()
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.getheaders(), data)
    finally:
        conn.close()


_PARAM = re.compile(r'\s*([A-Za-z0-9_\-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(value):
    """Parses one ``WWW-Authenticate`` challenge into (scheme, {param: value})."""
    assert value, "no WWW-Authenticate header"
    scheme, _, rest = value.strip().partition(" ")
    params = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        assert m and m.end() > pos, f"unparsable WWW-Authenticate: {value!r}"
        quoted, token = m.group(2), m.group(3)
        val = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else token
        name = m.group(1).lower()
        assert name not in params, f"duplicate parameter {name} in {value!r}"
        params[name] = val
        pos = m.end()
    return scheme, params


# Fragments that would betray internals in an error body: URLs, Rust paths,
# Debug-formatted errors.
_LEAKS = ("http://", "https://", "127.0.0.1", "::", "Error(", "Error {", "panicked", "\\n")


def assert_error_body(resp, secrets=(), extra_keys=()):
    """The body of a refusal is a short JSON object {error, message} with nothing
    internal; extra_keys may also appear (a 403 may name the missing scope)."""
    ctype = resp.header("content-type") or ""
    assert ctype.startswith("application/json"), f"content-type {ctype!r}: {resp!r}"
    assert len(resp.body) <= 512, f"error body is not short ({len(resp.body)} bytes): {resp!r}"
    body = resp.json()
    assert isinstance(body, dict), resp
    assert {"error", "message"} <= set(body) <= {"error", "message", *extra_keys}, resp
    assert isinstance(body["error"], str) and body["error"], resp
    assert isinstance(body["message"], str) and body["message"], resp
    for leak in _LEAKS + tuple(s for s in secrets if s):
        assert leak not in resp.text, f"error body contains {leak!r}: {resp!r}"
    return body


def assert_refused(resp, resource, status=401, error=None, secrets=()):
    """A 401/403 carrying the RFC 6750/9728 Bearer challenge.

    error=None means the challenge must not carry an error code (no token was
    presented); otherwise it must be exactly error. resource is the protected
    resource identifier the challenge must point at.
    """
    assert resp.status == status, f"expected {status}, got {resp!r}"
    challenges = resp.header_values("www-authenticate")
    assert len(challenges) == 1, f"expected one WWW-Authenticate: {resp!r}"
    scheme, params = parse_challenge(challenges[0])
    assert scheme.lower() == "bearer", challenges[0]
    assert params.get("realm") == "attach", challenges[0]
    assert params.get("resource_metadata") == resource.rstrip("/") + METADATA_PATH, challenges[0]
    if error is ANY_ERROR:
        pass
    elif error is None:
        assert "error" not in params, f"no token was sent, yet: {challenges[0]}"
    else:
        assert params.get("error") == error, challenges[0]
    for leak in tuple(s for s in secrets if s):
        assert leak not in challenges[0], f"challenge contains {leak!r}"
    assert resp.header("x-attach-user") is None, f"refusal carries an identity: {resp!r}"
    assert resp.header("x-attach-session") is None, f"refusal carries an identity: {resp!r}"
    assert_error_body(resp, secrets, extra_keys=("scope",) if status == 403 else ())
    return params


def assert_passed(resp, upstream, sub, user_agent=""):
    """The request reached the upstream exactly once, stamped with sub's identity,
    and the response carries the same identity. Returns the upstream's record."""
    assert resp.status == 200, f"expected the upstream's 200, got {resp!r}"
    seen = upstream.requests
    assert len(seen) == 1, f"upstream saw {len(seen)} requests: {seen!r}"
    rec = seen[0]
    expected = {"x-attach-user": sub, "x-attach-session": session_id(sub, user_agent)}
    for name, value in expected.items():
        assert rec.header_values(name) == [value], f"upstream {name}: {rec!r}"
        assert resp.header_values(name) == [value], f"response {name}: {resp!r}"
    return rec
