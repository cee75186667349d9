"""The `attach` launcher: refusing bad configuration, rendering, stopping, coexisting."""

import json
import subprocess

import pytest

from gateway import Gateway, envoy_bin, run_launcher
from httpc import METADATA_PATH, assert_passed, assert_refused
from idp import IdP
from netutil import is_listening
from upstream import Upstream


def _walk(obj):
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def _valid_gateway(tmp_path, **kw):
    """A Gateway (not started) whose environment is complete and valid."""
    return Gateway(
        tmp_path / "gw", engine_url="http://127.0.0.1:9", issuer="http://127.0.0.1:8/idp", **kw
    )


BAD_ENV = {
    "port-not-a-number": ("ATTACH_PORT", {"ATTACH_PORT": "eighty"}),
    "port-out-of-range": ("ATTACH_PORT", {"ATTACH_PORT": "70000"}),
    "admin-port-negative": ("ATTACH_ADMIN_PORT", {"ATTACH_ADMIN_PORT": "-1"}),
    "engine-not-a-url": ("ENGINE_URL", {"ENGINE_URL": "not a url"}),
    "engine-wrong-scheme": ("ENGINE_URL", {"ENGINE_URL": "ftp://127.0.0.1:21"}),
    "issuer-not-a-url": ("OIDC_ISSUER", {"OIDC_ISSUER": "idp.example"}),
    "audience-empty": ("OIDC_AUD", {"OIDC_AUD": ""}),
    "config-missing-file": ("ATTACH_CONFIG", {"ATTACH_CONFIG": "/nonexistent/attach.json"}),
    "config-unknown-field": ("ATTACH_CONFIG", {"ATTACH_CONFIG": '{"bogus": 1}'}),
    "config-unparsable": ("ATTACH_CONFIG", {"ATTACH_CONFIG": "{{{ not: [json"}),
    "config-invalid-value": ("ATTACH_CONFIG", {"ATTACH_CONFIG": '{"max_token_bytes": 1}'}),
    "wasm-missing": ("ATTACH_WASM", {"ATTACH_WASM": "/nonexistent/attach_filter.wasm"}),
    "envoy-missing": ("ENVOY_BIN", {"ENVOY_BIN": "/nonexistent/envoy"}),
    "concurrency-not-a-number": ("ATTACH_CONCURRENCY", {"ATTACH_CONCURRENCY": "many"}),
}


@pytest.mark.parametrize("case", sorted(BAD_ENV))
def test_bad_environment_exits_2_naming_the_variable(tmp_path, artifacts, case):
    variable, overrides = BAD_ENV[case]
    gateway = _valid_gateway(tmp_path)
    env = gateway.env()
    for name, value in overrides.items():
        if name == "ATTACH_CONFIG" and not value.startswith("/"):
            path = tmp_path / "bad-config.json"
            path.write_text(value)
            value = str(path)
        env[name] = value
    rc, out, err = run_launcher(["run"], env, cwd=gateway.workdir)
    assert rc == 2, f"exit {rc}\nstdout: {out}\nstderr: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert variable in lines[0], f"{variable} not named in: {lines[0]!r}"
    assert not is_listening(gateway.port), "a refused configuration still started a listener"


def test_render_prints_a_bootstrap_envoy_accepts(tmp_path, artifacts):
    gateway = _valid_gateway(tmp_path)
    rc, out, err = run_launcher(["render"], gateway.env(), cwd=gateway.workdir)
    assert rc == 0, f"exit {rc}\nstderr: {err}"
    bootstrap = json.loads(out)
    ports = {d.get("port_value") for d in _walk(bootstrap)}
    assert gateway.port in ports, "the listener port is not in the bootstrap"
    assert gateway.admin_port in ports, "the admin port is not in the bootstrap"
    assert "envoy.filters.http.wasm" in out or "envoy.extensions.filters.http.wasm" in out
    assert not is_listening(gateway.port), "render must not start anything"

    path = tmp_path / "bootstrap.json"
    path.write_text(out)
    validated = subprocess.run(
        [str(envoy_bin()), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr


def test_banner_names_listener_engine_and_admin(make_stack):
    s = make_stack()
    m = s.gateway.banner()
    assert m, f"no start-up line\n{s.gateway.log_tail()}"
    assert int(m.group(1)) == s.gateway.port
    assert m.group(2) == s.upstream.url
    assert int(m.group(3)) == s.gateway.admin_port
    assert is_listening(s.gateway.admin_port)


def test_sigterm_stops_launcher_and_envoy(make_stack):
    s = make_stack()
    assert_passed(s.get("/", token=s.token()), s.upstream, "user-42")
    procs = s.gateway.processes()
    assert any("envoy" in cmd for _, cmd in procs), f"no Envoy process found: {procs}"
    ports = s.gateway.ports()
    # stop() sends SIGTERM and fails if anything is left running or listening.
    s.gateway.stop()
    assert s.gateway.returncode is not None
    for port in ports:
        assert not is_listening(port)


def test_two_stacks_side_by_side(make_stack, tmp_path):
    shared = tmp_path / "shared-data"
    a = make_stack(data_dir=shared, admin_port=None)
    b = make_stack(data_dir=shared, admin_port=None)
    assert a.gateway.port != b.gateway.port
    if a.gateway.admin_port and b.gateway.admin_port:
        assert a.gateway.admin_port != b.gateway.admin_port
    for s, sub in ((a, "alice"), (b, "bob")):
        assert_passed(s.get("/", token=s.token(sub=sub)), s.upstream, sub)
    # Each gateway talks to its own upstream only.
    a.upstream.clear()
    b.upstream.clear()
    a.gateway.stop()
    assert_passed(b.get("/", token=b.token(sub="bob")), b.upstream, "bob")
    assert a.upstream.requests == []


def test_gateway_without_provider_refuses_every_token(gateway):
    """No OIDC_ISSUER and no providers: the gateway runs, public paths pass,
    and no token can be valid."""
    with Upstream() as upstream, IdP() as idp:
        gw = gateway(engine_url=upstream.url)
        doc = gw.get(METADATA_PATH).json()
        assert doc["authorization_servers"] == [] and doc["resource"] == gw.base_url
        assert gw.get("/healthz").status == 200
        upstream.clear()
        assert_refused(gw.get("/v1/items"), gw.resource, 401, None)
        assert_refused(gw.get("/v1/items", token=idp.token()), gw.resource, 401, "invalid_token")
        assert upstream.requests == []
