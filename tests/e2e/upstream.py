"""An echo upstream: records every request and answers 200 with what it received."""

import json
import threading

from netutil import HOST, free_port, QuietHandler, Restartable


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
        self.server.owner._record(rec)
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


class Upstream(Restartable):
    """The engine stand-in on http://127.0.0.1:PORT."""

    handler = _Handler

    def __init__(self, port=None):
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._lock = threading.Lock()
        self._requests = []

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

