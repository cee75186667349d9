"""`attach run` with the A2A service: settings it refuses, the key file
policy, and supervision of the two children."""

import json
import os
import signal
import subprocess

import pytest

from gateway import Gateway, alive, envoy_bin, run_launcher
from netutil import is_listening, wait_until
from upstream import Upstream


def _gateway(tmp_path, **kw):
    """A Gateway with the service on (not started)."""
    return Gateway(
        tmp_path / "gw", engine_url="http://127.0.0.1:9", issuer="http://127.0.0.1:8/idp",
        a2a=True, **kw
    )


BAD_ENV = {
    "bin-missing": ("ATTACH_A2A_BIN", {"ATTACH_A2A_BIN": "/nonexistent/attach-a2a"}),
    "switch-unknown": ("ATTACH_A2A", {"ATTACH_A2A": "sometimes"}),
    "port-not-a-number": ("A2A_PORT", {"A2A_PORT": "ninety"}),
    "agent-name-wildcard": ("A2A_AGENTS", {"A2A_AGENTS": "a*=http://127.0.0.1:9"}),
    "agent-entry-no-url": ("A2A_AGENTS", {"A2A_AGENTS": "planner"}),
    "agents-twice": ("A2A_CONFIG", {"A2A_AGENTS": "a=http://x", "A2A_CONFIG": "/a2a.json"}),
    "config-missing": ("A2A_CONFIG", {"A2A_CONFIG": "/nonexistent/a2a.json"}),
}


@pytest.mark.parametrize("case", sorted(BAD_ENV))
def test_bad_a2a_settings_exit_2_naming_the_variable(tmp_path, artifacts, case):
    variable, overrides = BAD_ENV[case]
    gateway = _gateway(tmp_path)
    env = gateway.env()
    env.update(overrides)
    rc, out, err = run_launcher(["run"], env, cwd=gateway.workdir)
    assert rc == 2, f"exit {rc}\nstdout: {out}\nstderr: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert variable in lines[0], f"{variable} not named in: {lines[0]!r}"
    assert not is_listening(gateway.port)


def test_taken_a2a_port_is_refused(tmp_path, artifacts):
    with Upstream() as taken:
        gateway = _gateway(tmp_path)
        env = dict(gateway.env(), A2A_PORT=str(taken.port))
        rc, _, err = run_launcher(["run"], env, cwd=gateway.workdir)
    assert rc == 2, err
    assert err.strip() == f"attach: A2A_PORT: {taken.port} is already in use on 127.0.0.1"


def test_open_key_file_is_refused(tmp_path, artifacts):
    gateway = _gateway(tmp_path)
    env = gateway.env()
    gateway.data_dir.mkdir(parents=True)
    key = gateway.data_dir / "assertion.key"
    key.write_text("A" * 43 + "\n")
    key.chmod(0o644)
    rc, _, err = run_launcher(["run"], env, cwd=gateway.workdir)
    assert rc == 1, err
    assert "chmod 600" in err and str(key) in err
    assert not is_listening(gateway.port)


def test_render_with_the_service_passes_envoy_validate(tmp_path, artifacts):
    gateway = _gateway(tmp_path, env={"A2A_AGENTS": "one=http://127.0.0.1:9,two=http://127.0.0.1:9"})
    rc, out, err = run_launcher(["render"], gateway.env(), cwd=gateway.workdir)
    assert rc == 0, err
    bootstrap = json.loads(out)
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    matched = [r["match"].get("path") or r["match"]["prefix"] for r in routes]
    # The usage API goes to the service; its sync route, which only the
    # filter calls on the service's cluster, is answered 404 by Envoy.
    assert matched == ["/usage/sync", "/usage", "/usage/", "/a2a/", "/mem/", "/"]
    assert routes[0]["direct_response"] == {"status": 404}
    plugin = json.loads(hcm["typed_config"]["http_filters"][0]["typed_config"]["config"]
                        ["configuration"]["value"])
    for name in ("one", "two"):
        assert f"/a2a/agents/{name}/.well-known/agent-card.json" in plugin["public_paths"]
    key = (gateway.data_dir / "assertion.key").read_text().strip()
    # The key reaches the filter through Envoy's environment, never the bootstrap.
    assert plugin["assertion_key_env"] == "ATTACH_ASSERTION_KEY" and key not in out
    path = tmp_path / "bootstrap.json"
    path.write_text(out)
    validated = subprocess.run(
        [str(envoy_bin()), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, ATTACH_ASSERTION_KEY=key,
                 ATTACH_SIGNING_KEYS=(gateway.data_dir / "signing-keys.json").read_text()),
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr


def test_service_that_cannot_start_stops_the_launcher(tmp_path, artifacts):
    gateway = _gateway(tmp_path, env={"A2A_DATABASE_URL": "mysql://nowhere"})
    rc, out, err = run_launcher(["run"], gateway.env(), cwd=gateway.workdir, timeout=30)
    assert rc == 2, f"exit {rc}\n{out}\n{err}"
    assert "A2A_DATABASE_URL" in err
    assert not is_listening(gateway.port), "Envoy must not start without the service"


def _children(gateway):
    procs = gateway.processes()
    service = [p for p, cmd in procs if "attach-a2a" in cmd]
    envoy = [p for p, cmd in procs if "envoy" in cmd and "attach-a2a" not in cmd]
    return service, envoy


def test_both_children_run_and_stop_together(make_stack):
    s = make_stack(a2a=True)
    service, envoy = _children(s.gateway)
    assert len(service) == 1 and len(envoy) == 1, s.gateway.processes()
    assert is_listening(s.gateway.a2a_port)
    # The usage sync is not reachable through the gateway: a caller without a
    # token is refused by the filter, one with a token finds nothing there.
    for token, status in ((None, 401), (s.token(), 404)):
        r = s.request("POST", "/usage/sync", body=b"{}", token=token,
                      headers={"content-type": "application/json"})
        assert r.status == status
    # stop() sends SIGTERM and fails if any process or port is left.
    s.gateway.stop()
    assert s.gateway.returncode == 0


def test_a_killed_service_is_restarted_while_envoy_serves(make_stack):
    s = make_stack(a2a=True)
    token = s.token()
    (envoy,) = _children(s.gateway)[1]
    assert s.get("/mem/events", token=token).status == 200
    for delay in ("200ms", "400ms"):
        (service,) = _children(s.gateway)[0]
        os.kill(service, signal.SIGKILL)
        # Envoy goes on proxying to the engine while the service is down.
        for _ in range(5):
            assert s.get("/", token=token).status == 200

        def restarted():
            return [p for p in _children(s.gateway)[0] if p != service]

        assert wait_until(restarted, 10), s.gateway.log_tail()
        assert wait_until(lambda: s.get("/mem/events", token=token).status == 200, 10), (
            s.gateway.log_tail()
        )
        log = s.gateway.stderr_path.read_text()
        assert f"attach: attach-a2a exited (signal: 9 (SIGKILL)); restarting it in {delay}" in log
        assert f"attach: attach-a2a restarted (pid {restarted()[0]})" in log
    assert s.gateway.proc.poll() is None
    assert _children(s.gateway)[1] == [envoy]
    # Envoy exiting still stops everything.
    (service,) = _children(s.gateway)[0]
    os.kill(envoy, signal.SIGKILL)
    assert s.gateway.proc.wait(15) != 0
    assert wait_until(lambda: not alive(service), 5), "the service outlived Envoy"
    assert not is_listening(s.gateway.port) and not is_listening(s.gateway.a2a_port)
    # Already stopped: nothing left for the fixture's stop().
    Gateway.running.discard(s.gateway)
    s.gateway.proc = None


def test_without_the_service_a2a_paths_go_to_the_engine(make_stack):
    s = make_stack()  # ATTACH_A2A=off
    assert s.gateway.a2a_port is None
    assert _children(s.gateway)[0] == []
    s.upstream.clear()
    r = s.get("/a2a/agents/x/.well-known/agent-card.json", token=s.token())
    assert r.status == 200
    assert s.upstream.last().path == "/a2a/agents/x/.well-known/agent-card.json"
    assert s.get("/a2a/agents/x/.well-known/agent-card.json").status == 401
    assert not (s.gateway.data_dir / "assertion.key").exists()
