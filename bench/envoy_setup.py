"""Envoy bootstraps for each benchmarked setup, and one Envoy process per setup.

Every bootstrap has the same listener and route (a `direct_response` 200 for
any path); setups differ only in the HTTP filters in front of the router.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
JWT_AUTHN = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"


class SetupFailed(Exception):
    """A setup that could not be measured; the message says what was seen."""


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _address(port):
    return {"socket_address": {"address": HOST, "port_value": port}}


def static_cluster(name, port):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(port)}}]}],
        },
    }


def wasm_filter(wasm_file, plugin_config):
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": WASM,
            "config": {
                "root_id": "attach",
                "vm_config": {
                    "vm_id": "attach",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm_file)}},
                },
                "configuration": {"@type": STRING_VALUE, "value": json.dumps(plugin_config)},
            },
        },
    }


def jwt_authn_filter(issuer, audience, jwks_json, cache_size=None):
    provider = {
        "issuer": issuer,
        "audiences": [audience],
        "local_jwks": {"inline_string": jwks_json},
        "forward": True,
    }
    if cache_size:
        provider["jwt_cache_config"] = {"jwt_cache_size": cache_size}
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": JWT_AUTHN,
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }


def bootstrap(listen_port, admin_port, http_filters, clusters=()):
    route_config = {
        "name": "bench",
        "virtual_hosts": [
            {
                "name": "any",
                "domains": ["*"],
                "routes": [
                    {
                        "match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                    }
                ],
            }
        ],
    }
    hcm = {
        "@type": HCM,
        "stat_prefix": "bench",
        "route_config": route_config,
        "http_filters": [*http_filters, {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    return {
        "admin": {"address": _address(admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": _address(listen_port),
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                            ]
                        }
                    ],
                }
            ],
            "clusters": list(clusters),
        },
    }


def get(port, path="/", token=None, timeout=5):
    """(status, headers dict with lower-case names, body) of one GET."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("admin", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def get_unix(path, url, timeout=5):
    """get() over a Unix socket: the admin interface of `attach run`'s Envoy."""
    conn = _UnixConnection(path, timeout)
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


class Envoy:
    """One Envoy (`--concurrency 1`) running a bootstrap written to workdir."""

    def __init__(self, binary, workdir, http_filters, clusters=()):
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.admin_port = free_ports(2)
        self.config_path = self.workdir / "bootstrap.json"
        self.log_path = self.workdir / "envoy.log"
        self.config_path.write_text(
            json.dumps(bootstrap(self.port, self.admin_port, http_filters, clusters), indent=2)
        )
        self.proc = None

    def start(self, timeout=60):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.binary),
                    "-c", str(self.config_path),
                    "--concurrency", "1",
                    "--disable-hot-restart",
                    "--log-level", "info",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise SetupFailed(f"envoy exited with {self.proc.returncode} at start-up\n{self.log_tail()}")
            try:
                if get(self.admin_port, "/ready", timeout=1)[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SetupFailed(f"envoy not ready within {timeout}s\n{self.log_tail()}")
            time.sleep(0.1)

    def wait_for_status(self, token, expected, timeout=30):
        """Polls GET / with token until it answers `expected`; returns (status, headers)."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            try:
                status, headers, body = get(self.port, token=token)
                outcome = f"{status} {body[:200]!r}"
            except OSError as e:
                status, headers, outcome = None, {}, f"{type(e).__name__}: {e}"
            if not seen or seen[-1][1] != outcome:
                seen.append((round(timeout - (deadline - time.monotonic()), 1), outcome))
            if status == expected:
                return status, headers
            if self.proc.poll() is not None or time.monotonic() > deadline:
                history = "\n".join(f"  t={t}s: {o}" for t, o in seen)
                raise SetupFailed(
                    f"GET / {'with' if token else 'without'} token never answered {expected} "
                    f"within {timeout}s; answers seen:\n{history}\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def stats(self, contains):
        _, _, body = get(self.admin_port, "/stats")
        return {
            name: value.strip()
            for name, _, value in (line.partition(":") for line in body.decode().splitlines())
            if contains in name
        }

    def log_tail(self, lines=15):
        """The log's last warnings, errors and wasm lines, and its final line."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            text = []
        wanted = re.compile(r"\]\[(warning|error|critical|wasm)\]")
        picked = [line for line in text if wanted.search(line)][-lines:]
        if text and text[-1] not in picked:
            picked.append(text[-1])
        picked = [line if len(line) <= 400 else line[:400] + " …" for line in picked]
        return "\n".join(["--- envoy log (warnings, errors, wasm; last lines) ---", *picked])

    def stop(self):
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
