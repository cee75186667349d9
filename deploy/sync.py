#!/usr/bin/env python3
"""Writes the filter's plugin configuration into the files that embed it.

Each deployment has one source, a plugin configuration file that
`attach plugin-config` and `attach render` accept as ATTACH_CONFIG:

    deploy/compose/plugin-config.json   the docker-compose stack
    deploy/istio/plugin-config.json     the Istio manifests

A file that embeds one of them marks the place with a comment line

    # plugin-config: deploy/istio/plugin-config.json

followed by the key that holds it (`value: |` for an Envoy StringValue,
`pluginConfig:` for an Istio WasmPlugin). Everything indented below that key
is replaced by the source as indented JSON, with two fields added:
`"assertion_key_env": "ATTACH_ASSERTION_KEY"` and
`"signing_keys_env": "ATTACH_SIGNING_KEYS"`: the filter reads the assertion
key and the gateway's signing key set from those variables of Envoy's
environment (the compose Envoy's entrypoint sets them, Istio passes the
gateway pod's own), so that no secret is written into the repository or
into Envoy's configuration, which the admin interface prints.

A marker may end with `+token_exchange`, which also adds
`"token_exchange": true`: only where the Wasm filter sets Envoy's
`allow_on_headers_stop_iteration` (the compose bootstrap, the EnvoyFilter),
which the token endpoint needs and a WasmPlugin cannot set.

    python3 deploy/sync.py           rewrite the embedded copies
    python3 deploy/sync.py --check   exit 1 if any copy differs from its source
"""

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The files that embed a plugin configuration.
EMBEDDING = (
    "deploy/compose/envoy.yaml",
    "deploy/istio/wasmplugin.yaml",
    "deploy/istio/envoyfilter.yaml",
)

# The variables of Envoy's environment that hold the assertion key and the
# gateway's signing key set.
ASSERTION_KEY_VAR = "ATTACH_ASSERTION_KEY"
SIGNING_KEYS_VAR = "ATTACH_SIGNING_KEYS"
# Fields each embedding file sets, never a source.
ADDED = ("assertion_key", "assertion_key_env", "signing_keys", "signing_keys_env", "token_exchange")
OPTIONS = {"+token_exchange"}
MARKER = re.compile(r"^(?P<indent>\s*)# plugin-config: (?P<source>\S+)(?P<options>(?: \+\w+)*)\s*$")
HOLDER = re.compile(r"^(?P<indent>\s*)(?P<key>value: \||pluginConfig:)\s*$")


def embedded_config(source, options=()):
    """The JSON object a file embeds for `source` (a path relative to the
    repository), with the marker's `options`."""
    config = json.loads((REPO / source).read_text())
    for field in ADDED:
        if field in config:
            raise ValueError(f"{source}: {field} is added here, the keys themselves at deploy time")
    unknown = set(options) - OPTIONS
    if unknown:
        raise ValueError(f"{source}: unknown marker option {' '.join(sorted(unknown))}")
    config["assertion_key_env"] = ASSERTION_KEY_VAR
    config["signing_keys_env"] = SIGNING_KEYS_VAR
    if "+token_exchange" in options:
        config["token_exchange"] = True
    return config


def render(text, where):
    """`text` with every marked block rewritten; the sources it names."""
    lines = text.splitlines(keepends=True)
    out, sources, i = [], [], 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        marker = MARKER.match(line)
        if not marker:
            continue
        holder = HOLDER.match(lines[i]) if i < len(lines) else None
        if not holder:
            raise ValueError(f"{where}:{i}: a plugin-config marker must precede `value: |` or `pluginConfig:`")
        out.append(lines[i])
        indent = len(holder.group("indent"))
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            i += 1
        source = marker.group("source")
        sources.append(source)
        body = json.dumps(embedded_config(source, marker.group("options").split()), indent=2)
        pad = " " * (indent + 2)
        out.extend(pad + row + "\n" for row in body.splitlines())
    return "".join(out), sources


def main(argv):
    check = argv[1:] == ["--check"]
    if argv[1:] and not check:
        print("usage: deploy/sync.py [--check]", file=sys.stderr)
        return 2
    stale = []
    for name in EMBEDDING:
        path = REPO / name
        text = path.read_text()
        new, sources = render(text, name)
        if not sources:
            print(f"{name}: no plugin-config marker", file=sys.stderr)
            return 1
        if new != text:
            stale.append(name)
            if not check:
                path.write_text(new)
    for name in stale:
        print(f"{name}: {'out of date (run python3 deploy/sync.py)' if check else 'updated'}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
