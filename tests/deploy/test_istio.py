"""The Kubernetes / Istio manifests under deploy/istio/: they parse, carry
the fields Istio needs, agree with the plugin configuration they embed, and
Envoy (with the filter) accepts what they would make the gateway run."""

import json
import re
from urllib.parse import urlsplit

import pytest
import yaml

from deploy_support import (
    DEPLOY,
    ISTIO_SOURCE,
    KEY_PLACEHOLDER,
    KEY_VARIABLE,
    REPO,
    SIGNING_KEYS_PLACEHOLDER,
    SIGNING_KEYS_VARIABLE,
    STRING_VALUE,
    TEST_KEY,
    WASM_FILTER,
    agent_list,
    called_origins,
    card_paths,
    cluster_for,
    embedded_expected,
    envoy_validate,
    load_yaml_docs,
    local_wasm_filter,
    origin,
    clean_env,
    run_attach,
    source,
    wasm_bootstrap,
    wasm_path,
)

ISTIO = DEPLOY / "istio"
MANIFESTS = sorted(ISTIO.glob("*.yaml"))
WASM_DIGEST = "${ATTACH_WASM_SHA256}"
MANIFEST_DIGEST = "${ATTACH_OCI_MANIFEST_SHA256}"


@pytest.fixture(scope="module")
def objects():
    """{(kind, namespace, name): object} of every manifest under deploy/istio/."""
    found = {}
    for path in MANIFESTS:
        for doc in load_yaml_docs(path):
            key = (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
            assert key not in found, f"{key} is defined twice"
            found[key] = doc
    return found


def of_kind(objects, kind):
    return [o for (k, _, _), o in objects.items() if k == kind]


def one(objects, kind):
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def named(objects, kind, name):
    found = [o for (k, _, n), o in objects.items() if k == kind and n == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def filter_version():
    text = (REPO / "filter/Cargo.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, re.M).group(1)


def test_every_yaml_file_under_deploy_parses():
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml")) + [REPO / "docker-compose.yml"]
    assert len(files) >= 8
    for path in files:
        assert load_yaml_docs(path), f"{path} is empty"


def test_every_manifest_names_its_object():
    for path in MANIFESTS:
        for doc in load_yaml_docs(path):
            assert doc.get("apiVersion") and doc.get("kind"), path
            assert doc["metadata"].get("name"), path
            if doc["kind"] != "Namespace":
                assert doc["metadata"].get("namespace"), f"{path}: {doc['kind']} without a namespace"


def test_placeholders_are_the_ones_each_file_tells_envsubst_to_fill():
    """Each file that has ${...} placeholders names exactly those in its
    envsubst line, so that envsubst leaves nothing unfilled (or filled wrongly)."""
    for path in MANIFESTS:
        text = path.read_text()
        used = set(re.findall(r"\$\{[A-Z0-9_]+\}", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))))
        if not used:
            continue
        m = re.search(r"envsubst '([^']+)'", text)
        assert m, f"{path.name} has placeholders but no envsubst line"
        assert set(m.group(1).split()) == used, path.name


def test_wasm_plugin(objects):
    plugin = one(objects, "WasmPlugin")
    assert plugin["apiVersion"] == "extensions.istio.io/v1alpha1"
    spec = plugin["spec"]
    assert spec["phase"] == "AUTHN"
    assert spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["pluginName"] == "attach"
    assert spec["selector"]["matchLabels"] == {"istio": "ingressgateway"}
    assert spec["sha256"] == MANIFEST_DIGEST
    url = urlsplit(spec["url"])
    assert url.scheme == "oci" and url.path.endswith(f"/attach-filter:{filter_version()}")
    # An object (Istio turns it into the StringValue's JSON), equal to the source.
    assert isinstance(spec["pluginConfig"], dict)
    assert spec["pluginConfig"] == embedded_expected(ISTIO_SOURCE)
    # The keys come from the proxy's environment, never from the configuration.
    assert spec["vmConfig"]["env"] == [
        {"name": KEY_VARIABLE, "valueFrom": "HOST"},
        {"name": SIGNING_KEYS_VARIABLE, "valueFrom": "HOST"},
    ]
    assert "assertion_key" not in spec["pluginConfig"] and "signing_keys" not in spec["pluginConfig"]
    # A WasmPlugin cannot set allow_on_headers_stop_iteration: no token endpoint.
    assert "token_exchange" not in spec["pluginConfig"]


def test_envoy_filter(objects):
    ef = named(objects, "EnvoyFilter", "attach-filter")
    assert ef["apiVersion"] == "networking.istio.io/v1alpha3"
    assert ef["spec"]["workloadSelector"]["labels"] == {"istio": "ingressgateway"}
    (patch,) = ef["spec"]["configPatches"]
    assert patch["applyTo"] == "HTTP_FILTER"
    listener = patch["match"]["listener"]["filterChain"]["filter"]
    assert listener["name"] == "envoy.filters.network.http_connection_manager"
    assert listener["subFilter"]["name"] == "envoy.filters.http.router"
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    value = patch["patch"]["value"]
    assert value["name"] == "envoy.filters.http.wasm"
    assert value["typed_config"]["@type"] == WASM_FILTER
    config = value["typed_config"]["config"]
    assert config["failure_policy"] == "FAIL_CLOSED"
    assert config["root_id"] == "attach"
    # The token endpoint reads a paused request's body.
    assert config["allow_on_headers_stop_iteration"] is True
    vm = config["vm_config"]
    assert vm["runtime"] == "envoy.wasm.runtime.v8"
    assert vm["environment_variables"] == {"host_env_keys": [KEY_VARIABLE, SIGNING_KEYS_VARIABLE]}
    remote = vm["code"]["remote"]
    assert remote["sha256"] == WASM_DIGEST
    http_uri = remote["http_uri"]
    assert http_uri["timeout"]
    uri = urlsplit(http_uri["uri"])
    assert uri.scheme == "https" and uri.path.endswith(f"-{filter_version()}.wasm")
    assert http_uri["cluster"] == f"outbound|{uri.port or 443}||{uri.hostname}"
    # Istio builds that cluster from a ServiceEntry.
    entries = {h: se for se in of_kind(objects, "ServiceEntry") for h in se["spec"]["hosts"]}
    assert (uri.port or 443) in [p["number"] for p in entries[uri.hostname]["spec"]["ports"]]
    assert config["configuration"]["@type"] == STRING_VALUE
    assert json.loads(config["configuration"]["value"]) == embedded_expected(ISTIO_SOURCE, token_exchange=True)


def test_service_entries_and_clusters_cover_every_origin_the_filter_calls(objects):
    config = source(ISTIO_SOURCE)
    origins = called_origins(config)
    assert {h for _, h, _ in origins} == {"idp.example.com", "weaviate.example.com"}
    entries = {}
    for se in of_kind(objects, "ServiceEntry"):
        for host in se["spec"]["hosts"]:
            entries[host] = se
    rules = {dr["spec"]["host"]: dr for dr in of_kind(objects, "DestinationRule")}
    for scheme, host, port in origins:
        cluster = cluster_for(config, (scheme, host, port))
        assert cluster == f"outbound|{port}||{host}", f"{scheme}://{host}:{port} maps to {cluster!r}"
        assert host in entries, f"no ServiceEntry for {host}"
        spec = entries[host]["spec"]
        assert spec["location"] == "MESH_EXTERNAL" and spec["resolution"] == "DNS"
        assert port in [p["number"] for p in spec["ports"]]
        if scheme == "https":
            # The callout is plain HTTP in Envoy: the gateway's cluster originates TLS.
            rule = rules[host]["spec"]
            assert rule["trafficPolicy"]["tls"] == {"mode": "SIMPLE", "sni": host}
            assert rule["workloadSelector"]["matchLabels"] == {"istio": "ingressgateway"}
            assert rules[host]["metadata"]["namespace"] == "istio-system"
    # Every cluster name the configuration uses is Istio's name for its origin.
    for key, name in config["clusters"].items():
        _, host, port = origin(key)
        assert name == f"outbound|{port}||{host}"


def test_companion_service(objects):
    config = source(ISTIO_SOURCE)
    deployment = named(objects, "Deployment", "attach-a2a")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {e["name"]: e for e in container["env"]}
    secret = named(objects, "Secret", "attach-a2a")
    for name in ("A2A_DATABASE_URL", KEY_VARIABLE, SIGNING_KEYS_VARIABLE):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] == name and name in secret["stringData"]
    assert secret["stringData"][KEY_VARIABLE] == KEY_PLACEHOLDER
    # The same key set as the gateway's (gateway-key.yaml).
    assert secret["stringData"][SIGNING_KEYS_VARIABLE] == SIGNING_KEYS_PLACEHOLDER
    # More than one replica: the shared store is PostgreSQL, never SQLite.
    assert secret["stringData"]["A2A_DATABASE_URL"] == "${A2A_DATABASE_URL}"
    assert "postgres://" in (ISTIO / "attach-a2a.yaml").read_text()

    configmap = named(objects, "ConfigMap", "attach-a2a")
    assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
    data = configmap["data"]
    assert data["MEM_BACKEND"] == "weaviate" == config["memory"]["sink"]
    assert data["WEAVIATE_URL"] == config["memory"]["url"]
    assert data["ATTACH_PUBLIC_URL"] == config["resource"]
    # The service accepts identity tokens of this issuer only.
    assert data["ATTACH_PUBLIC_URL"] == config["issuer"]
    assert data["OIDC_ISSUER"] == config["providers"][0]["issuer"]
    assert data["A2A_HOST"] == "0.0.0.0"
    assert card_paths(agent_list(data["A2A_AGENTS"])) <= set(config["public_paths"])

    port = int(data["A2A_PORT"])
    assert [p["containerPort"] for p in container["ports"]] == [port]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    service = named(objects, "Service", "attach-a2a")
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert [p["port"] for p in service["spec"]["ports"]] == [port]

    # The gateway routes /a2a/ and /mem/ to it.
    vs = one(objects, "VirtualService")["spec"]
    first = vs["http"][0]
    assert [m["uri"]["prefix"] for m in first["match"]] == ["/a2a/", "/mem/"]
    destination = first["route"][0]["destination"]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert destination == {"host": f"{name}.{namespace}.svc.cluster.local", "port": {"number": port}}
    assert "match" not in vs["http"][-1], "the engine's catch-all route comes last"


@pytest.fixture
def proxy_env(signing_keys):
    """The proxy's environment as gateway-key.yaml makes it, with test keys."""
    return {KEY_VARIABLE: TEST_KEY, SIGNING_KEYS_VARIABLE: signing_keys}


def test_the_gateway_pods_get_the_keys_from_a_secret(objects):
    secret = named(objects, "Secret", "attach-gateway-key")
    assert secret["metadata"]["namespace"] == "istio-system"
    assert secret["stringData"] == {KEY_VARIABLE: KEY_PLACEHOLDER, SIGNING_KEYS_VARIABLE: SIGNING_KEYS_PLACEHOLDER}
    text = (ISTIO / "gateway-key.yaml").read_text()
    assert "set env deployment/istio-ingressgateway" in text and "--from=secret/attach-gateway-key" in text
    assert "attach keys --print" in text
    # No other manifest holds a key (the service's own Secret aside).
    for path in MANIFESTS:
        if path.name not in ("gateway-key.yaml", "attach-a2a.yaml"):
            body = "\n".join(l for l in path.read_text().splitlines() if not l.lstrip().startswith("#"))
            assert KEY_PLACEHOLDER not in body and SIGNING_KEYS_PLACEHOLDER not in body, path.name


@pytest.mark.parametrize("name", ["gateway-key.yaml", "attach-a2a.yaml"])
def test_envsubst_fills_the_secrets_with_the_key_set_as_text(signing_keys, name):
    """The key set is JSON: filled in as the file's comment says, each
    Secret holds it as one string, unchanged."""
    path = ISTIO / name
    names = re.search(r"envsubst '([^']+)'", path.read_text()).group(1)
    values = {
        "ATTACH_ASSERTION_KEY": TEST_KEY,
        "ATTACH_SIGNING_KEYS": signing_keys,
        "A2A_DATABASE_URL": "postgres://x",
        "ATTACH_PLANNER_PUBLIC_KEY": "z6MkPlanner",
        "ATTACH_CODER_PUBLIC_KEY": "z6MkCoder",
    }
    # What envsubst does with the names it is given.
    filled = path.read_text()
    for placeholder in names.split():
        filled = filled.replace(placeholder, values[placeholder[2:-1]])
    (secret,) = [d for d in yaml.safe_load_all(filled) if d and d["kind"] == "Secret"]
    assert secret["stringData"][SIGNING_KEYS_VARIABLE] == signing_keys
    assert secret["stringData"][KEY_VARIABLE] == TEST_KEY


def test_header_names_with_underscores_are_refused_at_the_gateway(objects):
    ef = named(objects, "EnvoyFilter", "attach-headers")
    assert ef["spec"]["workloadSelector"]["labels"] == {"istio": "ingressgateway"}
    (patch,) = ef["spec"]["configPatches"]
    assert patch["applyTo"] == "NETWORK_FILTER" and patch["patch"]["operation"] == "MERGE"
    assert patch["match"]["listener"]["filterChain"]["filter"]["name"] == "envoy.filters.network.http_connection_manager"
    options = patch["patch"]["value"]["typed_config"]["common_http_protocol_options"]
    assert options == {"headers_with_underscores_action": "REJECT_REQUEST"}


def test_did_sign_in_next_to_the_provider_is_not_open_to_any_key():
    config = source(ISTIO_SOURCE)
    assert config["providers"]
    assert not any(rule.endswith("*") for rule in config["did"]["allow"]) or config["did"].get("open")


def test_envoy_accepts_the_wasm_plugin_configuration(objects, tmp_path, proxy_env):
    spec = one(objects, "WasmPlugin")["spec"]
    keys = [e["name"] for e in spec["vmConfig"]["env"] if e["valueFrom"] == "HOST"]
    bootstrap = wasm_bootstrap(local_wasm_filter(json.dumps(spec["pluginConfig"]), keys))
    envoy_validate(bootstrap, tmp_path, env=proxy_env)
    # Without either variable the filter refuses to start.
    for variable in (KEY_VARIABLE, SIGNING_KEYS_VARIABLE):
        with pytest.raises(AssertionError, match=f"{variable} is not set"):
            envoy_validate(bootstrap, tmp_path, env={**proxy_env, variable: ""})


def test_envoy_accepts_the_envoy_filter_patch(objects, tmp_path, proxy_env):
    value = named(objects, "EnvoyFilter", "attach-filter")["spec"]["configPatches"][0]["patch"]["value"]
    config = value["typed_config"]["config"]
    http_uri = config["vm_config"]["code"]["remote"]["http_uri"]
    uri = urlsplit(http_uri["uri"])
    clusters = [(http_uri["cluster"], uri.hostname, uri.port or 443)]
    # As written (the module fetched from http_uri), with a well-formed digest.
    remote = json.loads(json.dumps(value).replace(WASM_DIGEST, "0" * 64))
    envoy_validate(wasm_bootstrap(remote, clusters), tmp_path, "remote.json")
    # With the module from the local build, so that the filter checks its configuration.
    config["vm_config"]["code"] = {"local": {"filename": str(wasm_path())}}
    envoy_validate(wasm_bootstrap(value, clusters), tmp_path, "local.json", env=proxy_env)
    with pytest.raises(AssertionError, match=f"{SIGNING_KEYS_VARIABLE} is not set"):
        envoy_validate(wasm_bootstrap(value, clusters), tmp_path, "local.json", env={**proxy_env, SIGNING_KEYS_VARIABLE: ""})


AGENTS = ("planner", "coder")


def public_key_placeholder(name):
    return "${ATTACH_" + name.upper() + "_PUBLIC_KEY}"


def test_the_agents_are_registered_with_their_dids_never_the_callers_token(objects):
    data = named(objects, "ConfigMap", "attach-a2a")["data"]
    registry = data["A2A_AGENTS"]
    assert "forward_bearer" not in registry
    config = source(ISTIO_SOURCE)
    assert "forward_authorization" not in json.dumps(config), "nothing here needs the caller's Authorization"
    entries = {e.split("=", 1)[0]: e for e in registry.split(",")}
    assert set(entries) == set(AGENTS)
    for name in AGENTS:
        did = "did:key:" + public_key_placeholder(name)
        assert f";did={did};" in entries[name] + ";"
        # DID sign-in admits exactly the agents (their actor tokens), no prefix.
        assert did in config["did"]["allow"]
    assert len(config["did"]["allow"]) == len(AGENTS)
    for path in ("wasmplugin.yaml", "envoyfilter.yaml", "attach-a2a.yaml"):
        text = (ISTIO / path).read_text()
        assert "forward_bearer" not in text and "forward_authorization" not in text, path


def test_each_agent_reads_its_identity_from_its_own_secret(objects):
    config = source(ISTIO_SOURCE)
    registered = agent_list(named(objects, "ConfigMap", "attach-a2a")["data"]["A2A_AGENTS"])
    header = (ISTIO / "agents.yaml").read_text()
    readme = (DEPLOY / "README.md").read_text()
    image = (REPO / "deploy/docker/agent.Dockerfile").read_text()
    assert "USER 10001:10001" in image
    for name in AGENTS:
        file = f"agent-{name}.json"
        secret = f"attach-{name}-identity"
        # The Secret comes from `attach keys --agents` output, never a manifest.
        assert ("Secret", "attach", secret) not in objects
        command = f"kubectl -n attach create secret generic {secret} --from-file={file}=keys/{file}"
        # (with the lines a trailing backslash continues joined)
        for text in (header, readme):
            assert command in re.sub(r"\s*\\\n#?\s*", " ", text)
        spec = named(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsUser"] == 10001 and spec["securityContext"]["runAsNonRoot"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        secret_volumes = [v for v in volumes.values() if "secret" in v]
        assert [v["secret"]["secretName"] for v in secret_volumes] == [secret], "only its own identity"
        (from_secret,) = secret_volumes
        assert from_secret["secret"]["defaultMode"] == 0o400
        assert from_secret["secret"]["items"] == [{"key": file, "path": file}]
        copy = [n for n, v in volumes.items() if "emptyDir" in v]
        assert len(copy) == 1 and volumes[copy[0]]["emptyDir"]["medium"] == "Memory"
        # The init container copies it, as the agents' user, mode 0400.
        (init,) = spec["initContainers"]
        mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
        script = " ".join(init["command"] + init["args"])
        assert f"install -m 0400 {mounts[from_secret['name']]}/{file} {mounts[copy[0]]}/{file}" in script
        (container,) = spec["containers"]
        assert container["image"] == init["image"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        agent_mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert list(agent_mounts) == copy, "the agent reads the copy, not the Secret"
        assert agent_mounts[copy[0]]["readOnly"] is True
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["AGENT_ROLE"] == name
        assert env["AGENT_IDENTITY"] == f"{agent_mounts[copy[0]]['mountPath']}/{file}"
        assert env["GATEWAY_ISSUER"] == config["issuer"]
        assert env["AGENT_TOKEN_AUDIENCE"] in config["did"]["audiences"]
        assert env["AGENT_HOST"] == "0.0.0.0"
        # The service reaches it at the registered URL.
        service = named(objects, "Service", name)
        assert service["spec"]["selector"] == named(objects, "Deployment", name)["spec"]["selector"]["matchLabels"]
        (port,) = service["spec"]["ports"]
        assert origin(registered[name]) == ("http", f"{name}.attach.svc.cluster.local", port["port"])
        assert int(env["AGENT_PORT"]) == container["ports"][0]["containerPort"]


def test_envsubst_with_the_agents_dids_gives_configurations_that_admit_them(objects, tmp_path, artifacts, proxy_env):
    """The DIDs `attach keys --agents` prints, filled in as the files say:
    the registry names them, the filter admits them, and both still parse."""
    done = run_attach(["keys", "--agents", ",".join(AGENTS)], clean_env(ATTACH_DATA_DIR=str(tmp_path / "keys")), tmp_path)
    assert done.returncode == 0, done.stderr
    dids = dict(line.split("=", 1) for line in done.stdout.splitlines())
    values = {public_key_placeholder(n): dids[n].removeprefix("did:key:") for n in AGENTS}

    def filled(text):
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        return text

    data = [d for d in yaml.safe_load_all(filled((ISTIO / "attach-a2a.yaml").read_text())) if d and d["kind"] == "ConfigMap"]
    registry = data[0]["data"]["A2A_AGENTS"]
    for name in AGENTS:
        assert f";did={dids[name]};" in registry
    config = json.loads(filled((REPO / ISTIO_SOURCE).read_text()))
    assert config["did"]["allow"] == [dids[n] for n in AGENTS]
    path = tmp_path / "plugin-config.json"
    path.write_text(json.dumps(config))
    env = clean_env(
        ATTACH_CONFIG=str(path),
        ATTACH_A2A="on",
        A2A_AGENTS=registry,
        ATTACH_DATA_DIR=str(tmp_path / "data"),
        ATTACH_WASM=str(wasm_path()),
    )
    parsed = run_attach(["plugin-config"], env, tmp_path)
    assert parsed.returncode == 0, parsed.stderr
    assert json.loads(parsed.stdout)["did"]["allow"] == [dids[n] for n in AGENTS]
    spec = json.loads(filled(json.dumps(one(objects, "WasmPlugin")["spec"])))
    keys = [e["name"] for e in spec["vmConfig"]["env"] if e["valueFrom"] == "HOST"]
    envoy_validate(wasm_bootstrap(local_wasm_filter(json.dumps(spec["pluginConfig"]), keys)), tmp_path, env=proxy_env)
