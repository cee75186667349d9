"""An ASGI application served by uvicorn on a thread of the test process,
on 127.0.0.1: the official SDKs' servers (A2A agents, MCP servers) run so."""

import threading

import uvicorn

from netutil import HOST, is_listening, wait_until


class AsgiServer:
    def __init__(self, app, port, what, **config):
        self.app = app
        self.port = port
        self.what = what
        self.config = config
        self._server = None
        self._thread = None

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    def start(self):
        config = uvicorn.Config(self.app, host=HOST, port=self.port, log_level="warning", **self.config)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        if not wait_until(lambda: is_listening(self.port), 10):
            raise AssertionError(f"{self.what} did not listen on {self.url}")
        return self

    def stop(self):
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None
