"""`make oci`: an OCI image layout of the filter module that registries
accept and Istio's WasmPlugin can pull, with every digest and size right."""

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

from deploy_support import DEPLOY, REPO, load_yaml_docs, wasm_path

LAYOUT = REPO / "target/oci/attach-filter"
CONFIG_TYPE = "application/vnd.module.wasm.config.v1+json"
WASM_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def made(artifacts):
    """Runs `make oci` once; returns its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(
        ["make", "--no-print-directory", "oci"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def blob(root, descriptor):
    """The bytes of a descriptor's blob, after checking its digest and size."""
    algorithm, digest = descriptor["digest"].split(":")
    assert algorithm == "sha256"
    data = (root / "blobs" / "sha256" / digest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest, descriptor
    assert len(data) == descriptor["size"], descriptor
    return data


def filter_version():
    return re.search(r'^version = "([^"]+)"', (REPO / "filter/Cargo.toml").read_text(), re.M).group(1)


def read_layout(root):
    """(tag, manifest descriptor, manifest) of a one-image layout, checked."""
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    (descriptor,) = index["manifests"]
    assert descriptor["mediaType"] == MANIFEST_TYPE
    manifest = json.loads(blob(root, descriptor))
    tag = descriptor["annotations"]["org.opencontainers.image.ref.name"]
    return tag, descriptor, manifest


def test_the_layout_holds_the_module_with_correct_digests(made):
    tag, _, manifest = read_layout(LAYOUT)
    assert tag == filter_version()
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == MANIFEST_TYPE
    assert manifest["config"]["mediaType"] == CONFIG_TYPE
    runtime = json.loads(blob(LAYOUT, manifest["config"]))
    assert runtime["type"] == "envoy_proxy" and runtime["config"]["root_ids"] == ["attach"]
    # Istio's fetcher takes the oci variant with exactly two layers: the
    # runtime configuration and the raw module.
    config_layer, wasm_layer = manifest["layers"]
    assert config_layer["mediaType"] == CONFIG_TYPE
    assert json.loads(blob(LAYOUT, config_layer)) == runtime
    assert wasm_layer["mediaType"] == WASM_TYPE
    assert blob(LAYOUT, wasm_layer) == wasm_path().read_bytes()
    # Nothing else in the store.
    referenced = {d["digest"].split(":")[1] for d in (manifest["config"], *manifest["layers"])}
    manifest_digest = json.loads((LAYOUT / "index.json").read_text())["manifests"][0]["digest"].split(":")[1]
    assert {p.name for p in (LAYOUT / "blobs/sha256").iterdir()} == referenced | {manifest_digest}


def test_make_oci_prints_the_digests_the_manifests_need(made):
    _, descriptor, _ = read_layout(LAYOUT)
    manifest_digest = descriptor["digest"].split(":")[1]
    wasm_digest = hashlib.sha256(wasm_path().read_bytes()).hexdigest()
    printed = dict(re.findall(r"\b(ATTACH_[A-Z0-9_]+)=([0-9a-f]{64})\b", made))
    assert printed == {"ATTACH_OCI_MANIFEST_SHA256": manifest_digest, "ATTACH_WASM_SHA256": wasm_digest}
    saved = dict(
        line.split("=", 1) for line in (LAYOUT.parent / "attach-filter.env").read_text().splitlines()
    )
    assert saved == dict(printed, ATTACH_OCI_TAG=filter_version())
    assert f"oras cp --from-oci-layout target/oci/attach-filter:{filter_version()}" in made
    # Those names are the placeholders the manifests carry, where Istio reads them.
    docs = {d["kind"]: d for p in (DEPLOY / "istio").glob("*.yaml") for d in load_yaml_docs(p)}
    assert docs["WasmPlugin"]["spec"]["sha256"] == "${ATTACH_OCI_MANIFEST_SHA256}"
    remote = docs["EnvoyFilter"]["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"][
        "vm_config"
    ]["code"]["remote"]
    assert remote["sha256"] == "${ATTACH_WASM_SHA256}"


def test_the_layout_depends_on_the_module_only(tmp_path, artifacts):
    digests = []
    for name in ("a", "b"):
        done = subprocess.run(
            [sys.executable, str(DEPLOY / "oci.py"), str(wasm_path()), str(tmp_path / name), "1.2.3"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        tag, descriptor, _ = read_layout(tmp_path / name)
        assert tag == "1.2.3"
        digests.append(descriptor["digest"])
    assert digests[0] == digests[1]


def test_a_file_that_is_not_a_module_is_refused(tmp_path):
    fake = tmp_path / "fake.wasm"
    fake.write_bytes(b"not wasm")
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "oci.py"), str(fake), str(tmp_path / "out"), "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "not a WebAssembly module" in done.stderr
    assert not (tmp_path / "out").exists()
