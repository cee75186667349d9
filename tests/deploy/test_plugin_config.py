"""The plugin configuration sources under deploy/: the filter's own rules
(through the launcher) accept them, Envoy accepts a bootstrap made from
them, and every file that embeds one carries it unchanged."""

import json
import re
import subprocess
import sys

import pytest

from deploy_support import (
    COMPOSE_SOURCE,
    ISTIO_SOURCE,
    REPO,
    clean_env,
    envoy_validate,
    run_attach,
    source,
    wasm_path,
)

SOURCES = [COMPOSE_SOURCE, ISTIO_SOURCE]


def contains(big, small, where="config"):
    """`big` has everything `small` says: objects may have more fields (the
    defaults), lists have the same items in the same order."""
    if isinstance(small, dict):
        assert isinstance(big, dict), where
        for k, v in small.items():
            assert k in big, f"{where}.{k} is missing"
            contains(big[k], v, f"{where}.{k}")
    elif isinstance(small, list):
        assert isinstance(big, list) and len(big) == len(small), f"{where}: {big!r} != {small!r}"
        for i, (b, s) in enumerate(zip(big, small)):
            contains(b, s, f"{where}[{i}]")
    else:
        assert big == small, f"{where}: {big!r} != {small!r}"


def launcher_env(tmp_path, path, **extra):
    settings = {
        "ATTACH_CONFIG": str(REPO / path),
        "ATTACH_A2A": "off",
        "ATTACH_DATA_DIR": str(tmp_path / "data"),
        "ATTACH_WASM": str(wasm_path()),
    }
    settings.update(extra)
    return clean_env(**settings)


@pytest.mark.parametrize("path", SOURCES)
def test_the_launcher_accepts_the_source_as_is(tmp_path, artifacts, path):
    done = run_attach(["plugin-config"], launcher_env(tmp_path, path), tmp_path)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    config = source(path)
    contains(printed, config)
    # The launcher adds a cluster for any origin the file leaves unmapped:
    # none here, so the file alone is complete for Envoy or Istio.
    assert printed["clusters"] == config["clusters"]
    assert "assertion_key" not in config, "the key is added at deploy time"


@pytest.mark.parametrize("path", SOURCES)
def test_the_agents_card_paths_are_already_public(tmp_path, artifacts, path):
    """With the companion service on, the launcher adds the card paths of the
    registered agents: the source must already list every one."""
    agents = "planner=http://127.0.0.1:9,coder=http://127.0.0.1:9"
    env = launcher_env(tmp_path, path, ATTACH_A2A="on", A2A_AGENTS=agents)
    done = run_attach(["plugin-config"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["public_paths"] == source(path)["public_paths"]


@pytest.mark.parametrize("path", SOURCES)
def test_envoy_accepts_a_bootstrap_rendered_from_the_source(tmp_path, artifacts, path):
    done = run_attach(["render"], launcher_env(tmp_path, path), tmp_path)
    assert done.returncode == 0, done.stderr
    # The launcher's signing keys reach the filter through Envoy's environment only.
    keys = (tmp_path / "data" / "signing-keys.json").read_text()
    assert json.loads(keys)["keys"][0]["seed"] not in done.stdout
    envoy_validate(json.loads(done.stdout), tmp_path, env={"ATTACH_SIGNING_KEYS": keys})


def test_the_embedded_copies_are_up_to_date():
    done = subprocess.run(
        [sys.executable, str(REPO / "deploy/sync.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_sync_refuses_a_source_with_a_key(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "deploy"))
    try:
        import sync
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(sync, "REPO", tmp_path)
    for field in ("assertion_key", "assertion_key_env", "signing_keys", "signing_keys_env", "token_exchange"):
        (tmp_path / "c.json").write_text(json.dumps({field: "x"}))
        with pytest.raises(ValueError, match=field):
            sync.render("# plugin-config: c.json\nvalue: |\n  {}\n", "f.yaml")
    (tmp_path / "c.json").write_text('{"leeway_secs": 5}')
    with pytest.raises(ValueError, match="unknown marker option"):
        sync.render("# plugin-config: c.json +open\nvalue: |\n  {}\n", "f.yaml")
    names = {"assertion_key_env": "ATTACH_ASSERTION_KEY", "signing_keys_env": "ATTACH_SIGNING_KEYS"}
    for marker, extra in (("c.json", {}), ("c.json +token_exchange", {"token_exchange": True})):
        text, sources = sync.render(f"a:\n  # plugin-config: {marker}\n  value: |\n    {{}}\n  b: 1\n", "f.yaml")
        assert sources == ["c.json"]
        assert text.endswith('  b: 1\n')
        body = text.split("value: |\n", 1)[1].rsplit("  b: 1\n", 1)[0]
        assert json.loads(body) == {"leeway_secs": 5, **names, **extra}


def test_no_file_holds_a_key():
    """Only variable names and placeholders: no assertion key, no key set
    (whose every key has a "seed"), in anything under deploy/ or compose."""
    files = [p for p in (REPO / "deploy").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    files.append(REPO / "docker-compose.yml")
    for path in files:
        text = path.read_text(errors="replace")
        assert '"seed"' not in text, f"{path} holds a signing key set"
        assert not re.search(r"(assertion_key|signing_keys)\"\s*:", text), f"{path} sets a key in a plugin configuration"
