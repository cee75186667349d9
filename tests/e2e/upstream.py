"""An echo upstream: records every request and answers 200 with what it received."""

import json
import threading
from http.server import ThreadingHTTPServer

from netutil import HOST, QuietHandler, free_port


class Recorded:
    """One request as the upstream saw it."""

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers  # list of (name, value) in arrival order
        self.body = body

    def header(self, name):
        """The first value of header name (any case), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def header_names(self):
        return [k.lower() for k, _ in self.headers]

    def __repr__(self):
        return f"<{self.method} {self.path} {self.headers!r}>"


class _Handler(QuietHandler):
    server_version = "test-upstream"

    def _handle(self):
        body = self.read_body()
        rec = Recorded(self.command, self.path, list(self.headers.items()), body)
        self.server.upstream._record(rec)
        reply = json.dumps(
            {
                "method": rec.method,
                "path": rec.path,
                "headers": [[k, v] for k, v in rec.headers],
                "body": body.decode("utf-8", "replace"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream):
        self.upstream = upstream
        super().__init__((HOST, upstream.port), _Handler)


class Upstream:
    """The engine stand-in on http://127.0.0.1:PORT."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._lock = threading.Lock()
        self._requests = []
        self._server = None
        self._thread = None

    def _record(self, rec):
        with self._lock:
            self._requests.append(rec)

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    def clear(self):
        with self._lock:
            self._requests.clear()

    def last(self):
        reqs = self.requests
        assert reqs, "the upstream received no request"
        return reqs[-1]

    def start(self):
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
