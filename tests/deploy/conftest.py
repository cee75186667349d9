"""Fixtures for the deployment checks (docker-compose.yml and deploy/)."""

import shutil
import subprocess

import pytest

import deploy_support  # noqa: F401  (puts the e2e helpers on the path)
from deploy_support import make_signing_keys
from gateway import missing_artifacts


@pytest.fixture(scope="session")
def artifacts():
    """The launcher, the filter module and Envoy, which the checks run."""
    missing = missing_artifacts()
    if missing:
        pytest.fail("the deployment checks need:\n  " + "\n  ".join(missing), pytrace=False)


@pytest.fixture(scope="session")
def compose_cli():
    """The compose command: the `docker compose` plugin, else docker-compose."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("no compose CLI: `make compose-cli` installs Debian's docker-compose", pytrace=False)


@pytest.fixture(scope="session")
def signing_keys(artifacts, tmp_path_factory):
    """A gateway signing key set, made by `attach keys --print`."""
    return make_signing_keys(tmp_path_factory.mktemp("keys") / "data")
