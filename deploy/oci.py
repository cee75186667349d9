#!/usr/bin/env python3
"""Packages the filter module as an OCI image layout (`make oci`).

    python3 deploy/oci.py WASM LAYOUT_DIR TAG

writes LAYOUT_DIR as an OCI image layout (oci-layout, index.json,
blobs/sha256/...) holding one Wasm artifact in the form Istio's WasmPlugin
pulls (the *oci* variant of the Wasm artifact image specification):

    manifest  application/vnd.oci.image.manifest.v1+json
      config  application/vnd.module.wasm.config.v1+json        runtime-config.json
      layers  application/vnd.module.wasm.config.v1+json        runtime-config.json
              application/vnd.module.wasm.content.layer.v1+wasm plugin.wasm (the module, as is)

Istio's fetcher wants exactly these two layers: the runtime configuration
and the raw module. The index tags the manifest with TAG
(org.opencontainers.image.ref.name), so that
`oras cp --from-oci-layout LAYOUT_DIR:TAG REGISTRY/REPO:TAG` and
`crane push LAYOUT_DIR REGISTRY/REPO:TAG` can push it. Nothing in it depends
on the time or the machine: the same module gives the same digests.

It prints the two digests the manifests under deploy/istio/ need, and writes
them to LAYOUT_DIR.env (shell syntax) for envsubst.
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.module.wasm.config.v1+json"
WASM_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
TITLE = "org.opencontainers.image.title"
REF_NAME = "org.opencontainers.image.ref.name"

# The placeholders of deploy/istio/wasmplugin.yaml and envoyfilter.yaml.
MANIFEST_DIGEST_VAR = "ATTACH_OCI_MANIFEST_SHA256"
WASM_DIGEST_VAR = "ATTACH_WASM_SHA256"

# The filter's root context id, and the proxy-wasm ABI of proxy-wasm-rust-sdk 0.2.
ROOT_ID = "attach"
ABI_VERSIONS = ["v0.2.1"]


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Layout:
    def __init__(self, root):
        self.root = root
        self.blobs = root / "blobs" / "sha256"

    def put(self, media_type, data, annotations=None):
        """Stores `data` as a blob; returns its OCI descriptor."""
        digest = hashlib.sha256(data).hexdigest()
        (self.blobs / digest).write_bytes(data)
        descriptor = {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}
        if annotations:
            descriptor["annotations"] = annotations
        return descriptor


def build(wasm_path, root, tag):
    """Writes the layout; returns (manifest digest, module digest), both hex."""
    wasm = wasm_path.read_bytes()
    if wasm[:4] != b"\0asm":
        raise SystemExit(f"oci: {wasm_path} is not a WebAssembly module")
    if root.exists():
        shutil.rmtree(root)
    layout = Layout(root)
    layout.blobs.mkdir(parents=True)

    runtime_config = canonical(
        {"type": "envoy_proxy", "abiVersions": ABI_VERSIONS, "config": {"root_ids": [ROOT_ID]}}
    )
    config = layout.put(CONFIG_TYPE, runtime_config)
    config_layer = layout.put(CONFIG_TYPE, runtime_config, {TITLE: "runtime-config.json"})
    module = layout.put(WASM_TYPE, wasm, {TITLE: "plugin.wasm"})
    manifest = layout.put(
        MANIFEST_TYPE,
        canonical(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": config,
                "layers": [config_layer, module],
                "annotations": {TITLE: "attach-filter", "org.opencontainers.image.version": tag},
            }
        ),
    )
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [dict(manifest, annotations={REF_NAME: tag})],
    }
    (root / "index.json").write_bytes(canonical(index))
    (root / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    return manifest["digest"].split(":", 1)[1], module["digest"].split(":", 1)[1]


def main(argv):
    if len(argv) != 4:
        print("usage: deploy/oci.py WASM LAYOUT_DIR TAG", file=sys.stderr)
        return 2
    wasm, root, tag = Path(argv[1]), Path(argv[2]), argv[3]
    manifest_digest, wasm_digest = build(wasm, root, tag)
    env = root.with_name(root.name + ".env")
    env.write_text(
        f"{MANIFEST_DIGEST_VAR}={manifest_digest}\n{WASM_DIGEST_VAR}={wasm_digest}\nATTACH_OCI_TAG={tag}\n"
    )
    print(f"{root}: OCI image layout, tag {tag}")
    print(f"  {MANIFEST_DIGEST_VAR}={manifest_digest}   (the image's manifest digest: spec.sha256 in deploy/istio/wasmplugin.yaml)")
    print(f"  {WASM_DIGEST_VAR}={wasm_digest}   (the module's sha256: code.remote.sha256 in deploy/istio/envoyfilter.yaml)")
    print(f"  both written to {env}")
    print(f"push: oras cp --from-oci-layout {root}:{tag} REGISTRY/attach/attach-filter:{tag}")
    print(f"  or: crane push {root} REGISTRY/attach/attach-filter:{tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
