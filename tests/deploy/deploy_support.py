"""Shared helpers for the deployment checks: paths, the project's binaries,
YAML loading, `envoy --mode validate`, and the plugin configuration sources."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_SOURCE = "deploy/compose/plugin-config.json"
ISTIO_SOURCE = "deploy/istio/plugin-config.json"
KEY_PLACEHOLDER = "${ATTACH_ASSERTION_KEY}"
# The variable of Envoy's environment the embedded configurations read the key from.
KEY_VARIABLE = "ATTACH_ASSERTION_KEY"
# The same for the gateway's signing key set (the companion service reads it too).
SIGNING_KEYS_PLACEHOLDER = "${ATTACH_SIGNING_KEYS}"
SIGNING_KEYS_VARIABLE = "ATTACH_SIGNING_KEYS"
# A well-formed assertion key (32 bytes, base64url) for validation only.
TEST_KEY = "dGVzdC1vbmx5LWFzc2VydGlvbi1rZXktMzItYnl0ZXM"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
WASM_FILTER = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"

# The e2e suite's helpers find the project's binaries and clean the
# environment; these checks use the same ones.
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from gateway import envoy_bin, wasm_path  # noqa: E402
from gateway import clean_env as _clean_env  # noqa: E402
from gateway import launcher_bin as attach_bin  # noqa: E402


def clean_env(**extra):
    env = _clean_env()
    env.update(extra)
    return env


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def load_yaml(path):
    docs = load_yaml_docs(path)
    assert len(docs) == 1, f"{path}: expected one YAML document, found {len(docs)}"
    return docs[0]


def source(name):
    """A plugin configuration source, parsed."""
    return json.loads((REPO / name).read_text())


def embedded_expected(name, token_exchange=False):
    """What a file must embed for the source `name`: the source plus the
    names of the variables that hold the keys (never the keys), and the
    token endpoint where the file's Wasm filter can serve it."""
    config = copy.deepcopy(source(name))
    config["assertion_key_env"] = KEY_VARIABLE
    config["signing_keys_env"] = SIGNING_KEYS_VARIABLE
    if token_exchange:
        config["token_exchange"] = True
    return config


def make_signing_keys(data_dir, **env):
    """A key set made as an operator makes one, `attach keys --print` (the
    file in data_dir); its text."""
    data_dir.mkdir(parents=True, exist_ok=True)
    done = run_attach(["keys", "--print"], clean_env(ATTACH_DATA_DIR=str(data_dir), **env), data_dir)
    assert done.returncode == 0, done.stderr
    text = done.stdout.strip()
    assert json.loads(text)["keys"], text
    return text


def walk(obj):
    """Every dict inside obj (obj included)."""
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from walk(v)


def strings(obj):
    """Every string value inside obj."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)


def origin(url):
    """(scheme, host, port) of an http(s) URL, with the scheme's default port."""
    parts = urlsplit(url.strip())
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port


def called_origins(config):
    """Every origin the filter calls for a plugin configuration: issuers,
    jwks_uri hosts and the memory sink."""
    urls = []
    for p in config.get("providers", []):
        urls.append(p["issuer"])
        if p.get("jwks_uri"):
            urls.append(p["jwks_uri"])
    if config.get("memory"):
        urls.append(config["memory"]["url"])
    return {origin(u) for u in urls}


def cluster_for(config, wanted):
    """The cluster the plugin configuration maps an origin to (None if none)."""
    for key, name in config.get("clusters", {}).items():
        if origin(key) == wanted:
            return name
    return None


def card_paths(names):
    return {f"/a2a/agents/{n}/.well-known/{f}" for n in names for f in ("agent-card.json", "agent.json")}


def agent_list(value):
    """{name: url} of an A2A_AGENTS value."""
    agents = {}
    for entry in value.split(","):
        if entry.strip():
            name, rest = entry.split(";", 1)[0].split("=", 1)
            agents[name.strip()] = rest.strip()
    return agents


def run_attach(args, env, cwd):
    return subprocess.run(
        [str(attach_bin()), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def envoy_validate(config, tmp_path, name="bootstrap.json", env=None):
    """Runs `envoy --mode validate` on a bootstrap (a dict, or a path) and
    asserts that Envoy accepts it; with the filter loaded from a local file,
    that also runs the filter's own check of its plugin configuration.
    env: variables added to Envoy's environment (the filter's key)."""
    if isinstance(config, dict):
        path = tmp_path / name
        path.write_text(json.dumps(config, indent=1))
    else:
        path = Path(config)
    done = subprocess.run(
        [str(envoy_bin()), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, **(env or {})),
    )
    assert done.returncode == 0, f"envoy rejected {path}:\n{done.stdout}{done.stderr}"


def wasm_bootstrap(http_filter, clusters=()):
    """A minimal bootstrap whose one listener runs `http_filter` (an
    envoy.filters.http.wasm entry) in front of the router."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "check",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}],
                }
            ]
        },
        "http_filters": [
            http_filter,
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            },
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "check",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": name,
                    "type": "STRICT_DNS",
                    "connect_timeout": "2s",
                    "load_assignment": {
                        "cluster_name": name,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
                                ]
                            }
                        ],
                    },
                }
                for name, host, port in clusters
            ],
        },
    }


def local_wasm_filter(plugin_json, env_keys=()):
    """envoy.filters.http.wasm with the built module and `plugin_json` as its
    configuration; env_keys: variables of Envoy's environment the VM may read."""
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": WASM_FILTER,
            "config": {
                "name": "attach",
                "root_id": "attach",
                "failure_policy": "FAIL_CLOSED",
                "vm_config": {
                    "vm_id": "attach",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm_path())}},
                    "environment_variables": {"host_env_keys": list(env_keys)},
                },
                "configuration": {"@type": STRING_VALUE, "value": plugin_json},
            },
        },
    }
