"""The `attach` launcher: refusing bad configuration, rendering, stopping, coexisting."""

import json
import os
import stat
import subprocess

import pytest

from gateway import Gateway, envoy_bin, run_launcher
import httpc
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
    assert bootstrap["admin"]["address"] == {
        "pipe": {"path": str(gateway.admin_socket), "mode": 0o600}
    }
    assert "envoy.filters.http.wasm" in out or "envoy.extensions.filters.http.wasm" in out
    assert not is_listening(gateway.port), "render must not start anything"

    path = tmp_path / "bootstrap.json"
    path.write_text(out)
    # The signing keys reach the filter through Envoy's environment only.
    keys = (gateway.data_dir / "signing-keys.json").read_text()
    assert json.loads(keys)["keys"][0]["seed"] not in out
    validated = subprocess.run(
        [str(envoy_bin()), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, ATTACH_SIGNING_KEYS=keys),
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr


def test_banner_names_listener_engine_and_admin(make_stack):
    s = make_stack()
    m = s.gateway.banner()
    assert m, f"no start-up line\n{s.gateway.log_tail()}"
    assert int(m.group(1)) == s.gateway.port
    assert m.group(2) == s.upstream.url
    assert m.group(3) == str(s.gateway.admin_socket)
    assert s.gateway.admin("GET", "/ready").status == 200


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
    a = make_stack(data_dir=shared)
    b = make_stack(data_dir=shared)
    assert a.gateway.port != b.gateway.port
    assert a.gateway.admin_socket != b.gateway.admin_socket
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


# -- Envoy's admin interface --------------------------------------------------------------------


def _listening_tcp_ports(pid):
    """TCP ports process pid listens on (any address, IPv4 or IPv6)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for row in f:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def _envoy_pid(gateway):
    pids = [p for p, cmd in gateway.processes() if "envoy" in cmd and " -c " in cmd]
    assert len(pids) == 1, gateway.processes()
    return pids[0]


def test_admin_interface_is_a_private_socket_that_prints_no_secret(make_stack):
    """A local process that finds Envoy's admin interface must not read the
    assertion key from it (with it, anyone mints identities the companion
    service trusts) nor stop the gateway: no TCP port of Envoy's but the
    listener answers, the socket is the operator's only, and /config_dump
    names the variable that holds the key, never the key."""
    s = make_stack(a2a=True)
    gw = s.gateway
    key = (gw.data_dir / "assertion.key").read_text().strip()
    assert len(key) >= 43

    envoy = _envoy_pid(gw)
    for port in sorted(_listening_tcp_ports(envoy) - {gw.port}):
        try:
            dump = httpc.request(port, "GET", "/config_dump", timeout=5)
        except OSError:
            continue
        assert key not in dump.text, f"the assertion key is in /config_dump on 127.0.0.1:{port}"
        raise AssertionError(f"Envoy listens on TCP port {port} besides the gateway's: {dump!r}")
    assert _listening_tcp_ports(envoy) == {gw.port}

    assert stat.S_IMODE(os.stat(gw.admin_socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(gw.admin_socket.parent).st_mode) == 0o700
    dump = gw.admin("GET", "/config_dump?include_eds")
    assert dump.status == 200, dump
    assert key not in dump.text, "the assertion key is in /config_dump"
    assert '"ATTACH_ASSERTION_KEY"' in dump.text, "the filter's key variable is not named"
    for name in ("envoy.json", "plugin.json"):
        assert key not in (gw.admin_socket.parent / name).read_text(), name

    # The filter read the key from Envoy's environment: the service accepts
    # its assertion, and the gateway still answers.
    listed = s.get("/mem/events?limit=1", token=s.token(sub="alice"))
    assert listed.status == 200, listed
    assert_passed(s.get("/", token=s.token()), s.upstream, "user-42")


def test_no_secret_in_the_rendered_bootstrap(tmp_path, artifacts):
    """`attach render` prints what Envoy's admin would print: the Weaviate
    key, the assertion key and the signing keys stay in Envoy's environment."""
    gateway = Gateway(
        tmp_path / "gw",
        engine_url="http://127.0.0.1:9",
        a2a=True,
        env={
            "MEM_BACKEND": "weaviate",
            "WEAVIATE_URL": "http://127.0.0.1:9",
            "WEAVIATE_API_KEY": "w3aviate-s3cret",
        },
    )
    gateway.data_dir.mkdir(parents=True)
    rc, out, err = run_launcher(["render"], gateway.env(), cwd=gateway.workdir)
    assert rc == 0, err
    key = (gateway.data_dir / "assertion.key").read_text().strip()
    seed = json.loads((gateway.data_dir / "signing-keys.json").read_text())["keys"][0]["seed"]
    assert key not in out and "w3aviate-s3cret" not in out and seed not in out
    vm = next(d["vm_config"] for d in _walk(json.loads(out)) if "vm_config" in d)
    assert sorted(vm["environment_variables"]["host_env_keys"]) == [
        "ATTACH_ASSERTION_KEY",
        "ATTACH_SIGNING_KEYS",
        "ATTACH_WEAVIATE_API_KEY",
    ]


# -- DID sign-in next to an OIDC issuer ---------------------------------------------------------


def test_with_an_issuer_did_sign_in_is_off_unless_allowed(tmp_path, make_stack):
    """At the defaults anyone can mint a did:key token; next to an OIDC
    issuer that must not open a second door."""
    s = make_stack()
    rc, out, err = run_launcher(["token"], s.gateway.env(), cwd=s.gateway.workdir)
    assert rc == 2 and "DID_ALLOW" in err, (rc, out, err)
    # A token of a fresh identity, made without the gateway's consent.
    gateway = Gateway(tmp_path / "minter", engine_url="http://127.0.0.1:9", resource=None)
    gateway.data_dir.mkdir(parents=True)
    env = dict(gateway.env(), DID_AUD=",".join(s.gateway.audiences))
    rc, token, err = run_launcher(["token"], env, cwd=gateway.workdir)
    assert rc == 0, err
    s.upstream.clear()
    assert_refused(s.get("/", token=token.strip()), s.resource, 401, "invalid_token")
    assert s.upstream.requests == []
    assert_passed(s.get("/", token=s.token()), s.upstream, "user-42")


def test_an_open_did_section_next_to_an_issuer_must_say_so(tmp_path, artifacts):
    did = {"audiences": ["http://127.0.0.1:8080"], "allow": ["did:key:*"]}
    gateway = _valid_gateway(tmp_path, config={"did": did})
    rc, out, err = run_launcher(["run"], gateway.env(), cwd=gateway.workdir)
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "did.open" in lines[0] and "ATTACH_CONFIG" in lines[0], err
    assert not is_listening(gateway.port)
    gateway = _valid_gateway(tmp_path / "open", config={"did": dict(did, open=True)})
    rc, out, err = run_launcher(["render"], gateway.env(), cwd=gateway.workdir)
    assert rc == 0, err


def test_any_key_on_a_public_listener_draws_a_warning(tmp_path, artifacts):
    gateway = Gateway(
        tmp_path / "gw", engine_url="http://127.0.0.1:9", env={"ATTACH_BIND": "0.0.0.0"}
    )
    rc, out, err = run_launcher(["render"], gateway.env(), cwd=gateway.workdir)
    assert rc == 0, err
    assert "warning: DID sign-in admits any key matching did:key:*,did:pkh:* on 0.0.0.0" in err
    env = dict(gateway.env(), DID_ALLOW="did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK")
    rc, out, err = run_launcher(["render"], env, cwd=gateway.workdir)
    assert rc == 0 and "warning" not in err, err
