"""The Dockerfiles under deploy/docker/: multi-stage builds from the Rust
image to Debian slim, running as an unprivileged user, building binaries
that exist in the workspace, with a build context that leaves out the
build outputs."""

import re
import tomllib

import pytest

from deploy_support import DEPLOY, REPO, load_yaml

DOCKER = DEPLOY / "docker"
# Dockerfile -> (package directory, binary)
IMAGES = {
    "a2a-service.Dockerfile": ("a2a-service", "attach-a2a"),
    "agent.Dockerfile": ("examples/agents", "attach-agent"),
}


def stages(text):
    return re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", text, re.M)


def binaries(package_dir):
    manifest = tomllib.loads((REPO / package_dir / "Cargo.toml").read_text())
    names = [b["name"] for b in manifest.get("bin", [])]
    return names or [manifest["package"]["name"]]


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_dockerfile(name):
    text = (DOCKER / name).read_text()
    (builder, alias), (runtime, _) = stages(text)
    version = re.fullmatch(r"rust:1\.(\d+)-bookworm", builder)
    assert version, builder
    workspace = tomllib.loads((REPO / "Cargo.toml").read_text())
    minimum = int(workspace["workspace"]["package"]["rust-version"].split(".")[1])
    assert int(version.group(1)) >= minimum
    assert runtime == "debian:bookworm-slim"
    package, binary = IMAGES[name]
    assert f"--path {package}" in text and "--locked" in text
    assert f"COPY --from={alias} /out/bin/{binary} /usr/local/bin/{binary}" in text
    assert re.search(rf'^ENTRYPOINT \["/usr/local/bin/{binary}"\]$', text, re.M)
    user = re.findall(r"^USER\s+(\S+)$", text, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    ignore = (DOCKER / f"{name}.dockerignore").read_text().split()
    assert {"target", ".venv", ".git"} <= set(ignore)


def test_the_service_image_keeps_its_state_in_a_volume():
    text = (DOCKER / "a2a-service.Dockerfile").read_text()
    assert re.search(r"^VOLUME /data$", text, re.M)
    assert "ATTACH_DATA_DIR=/data" in text
    compose = load_yaml(REPO / "docker-compose.yml")["services"]["a2a"]
    assert any(v.split(":")[1] == "/data" for v in compose["volumes"])
    assert compose["environment"]["A2A_DATABASE_URL"] == "sqlite:/data/a2a.sqlite3"


def test_the_service_binary_is_the_one_the_image_copies():
    assert "attach-a2a" in binaries("a2a-service")


def test_the_agent_binary_is_the_one_the_image_copies():
    if not (REPO / "examples/agents/Cargo.toml").is_file():
        pytest.skip("examples/agents is not in this tree")
    assert "attach-agent" in binaries("examples/agents")
