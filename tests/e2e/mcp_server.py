"""A test MCP server built with the official MCP Python SDK (``mcp``), on 127.0.0.1.

The SDK's MCPServer serves streamable HTTP at ``/mcp`` through uvicorn in a
thread, with these tools and one resource:

- ``echo(text)``: the text back, as a plain result.
- ``countdown(steps)``: a progress notification per step before its result,
  so the answer is a ``text/event-stream`` that carries more than the result.
- ``whoami()``: the ``X-Attach-User`` the server received.
- ``admin_reset()``: a tool the gateway's rules keep for a few callers.
- the resource ``info://server``.

An ASGI layer in front of the SDK records every HTTP request as it arrives
(method, path, headers, body, and the response's status and content type),
before the SDK sees it, so a test can tell that a refused call never got here
and that no ``Authorization`` header ever did. When ``issuer`` and
``audience`` are set, each ``X-Attach-Identity`` is verified with PyJWT
against the keys the issuer publishes (found through its OpenID discovery
document) and the result is kept with the request.
"""

import asyncio
import json
import threading

import anyio
import httpx
import jwt
from mcp.server import MCPServer
from mcp.server.mcpserver import Context

from asgi_server import AsgiServer
from netutil import HOST, free_port
from upstream import Recorded

RESOURCE_URI = "info://server"
RESOURCE_TEXT = "a test MCP server behind the gateway"


class Seen(Recorded):
    """One HTTP request as the MCP server received it.

    status and content_type are the server's answer; identity is None when
    no X-Attach-Identity arrived (or nothing was set up to verify it),
    otherwise {"ok": True, "claims": {...}} or {"ok": False, "error": "..."}.
    """

    def __init__(self, method, path, headers, body):
        super().__init__(method, path, headers, body)
        self.status = None
        self.content_type = None
        self.identity = None

    def json_body(self):
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


def build_server(owner):
    """The SDK server with the test's tools; owner is the McpServer recording requests."""
    server = MCPServer("attach-test-tools", version="1.0.0", log_level="WARNING")

    @server.tool()
    def echo(text: str) -> str:
        """Returns the text unchanged."""
        return text

    @server.tool()
    async def countdown(steps: int, ctx: Context) -> str:
        """Reports one progress notification per step, then answers."""
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"step {i + 1}")
            await asyncio.sleep(0.02)
        return f"counted {steps}"

    @server.tool()
    def whoami(ctx: Context) -> str:
        """The X-Attach-User this request carried, or an empty string."""
        headers = ctx.headers or {}
        return headers.get("x-attach-user", "")

    @server.tool()
    def admin_reset() -> str:
        """Pretends to reset the server; only the gateway's rules keep callers out."""
        owner.resets += 1
        return "reset"

    @server.resource(RESOURCE_URI, mime_type="text/plain")
    def info() -> str:
        return RESOURCE_TEXT

    return server


class _Recorder:
    """ASGI middleware: records each request whole before the app sees it."""

    def __init__(self, app, owner):
        self.app = app
        self.owner = owner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        path = scope["path"] + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
        seen = Seen(scope["method"], path, headers, b"".join(chunks))
        identity = seen.header("x-attach-identity")
        if identity is not None and self.owner.issuer and self.owner.audience:
            seen.identity = await anyio.to_thread.run_sync(self.owner.verify, identity)
        self.owner._record(seen)

        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": seen.body, "more_body": False}
            return await receive()

        async def watch(message):
            if message["type"] == "http.response.start":
                seen.status = message["status"]
                for k, v in message.get("headers", []):
                    if k.lower() == b"content-type":
                        seen.content_type = v.decode("latin-1")
            await send(message)

        await self.app(scope, replay, watch)


class McpServer:
    """The MCP server on http://127.0.0.1:PORT/mcp (``url``).

    issuer / audience: set them (before or after start) to have every
    X-Attach-Identity verified: the keys come from
    ``{issuer}/.well-known/openid-configuration`` and its ``jwks_uri``, the
    token must name issuer as ``iss`` and audience as ``aud``.
    """

    def __init__(self, issuer=None, audience=None):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}/mcp"
        self.issuer = issuer
        self.audience = audience
        self.resets = 0
        self._lock = threading.Lock()
        self._requests = []
        self._jwks = None
        self.app = _Recorder(build_server(self).streamable_http_app(), self)
        self._server = AsgiServer(self.app, self.port, "MCP server")

    # -- what arrived ------------------------------------------------------

    def _record(self, seen):
        with self._lock:
            self._requests.append(seen)

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    def clear(self):
        with self._lock:
            self._requests.clear()

    def posts(self, method=None, name=None):
        """The JSON-RPC POSTs received, optionally only those for method
        (and, for tools/call, the tool name)."""
        found = []
        for seen in self.requests:
            body = seen.json_body()
            if seen.method != "POST" or not isinstance(body, dict):
                continue
            if method is not None and body.get("method") != method:
                continue
            if name is not None and (body.get("params") or {}).get("name") != name:
                continue
            found.append(seen)
        return found

    # -- identity token ------------------------------------------------------

    def verify(self, token):
        """PyJWT's verdict on one identity token, as a dict (see Seen.identity)."""
        try:
            if self._jwks is None:
                discovery = httpx.get(
                    self.issuer + "/.well-known/openid-configuration", timeout=10
                ).json()
                self._jwks = jwt.PyJWKClient(discovery["jwks_uri"], cache_keys=False)
            key = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["EdDSA", "ES256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["iss", "sub", "aud", "iat", "exp"]},
            )
            return {"ok": True, "claims": claims}
        except Exception as e:  # the verdict is the record; the test reads it
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    # -- lifecycle -------------------------------------------------------------

    def start(self):
        self._server.start()
        return self

    def stop(self):
        self._server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
