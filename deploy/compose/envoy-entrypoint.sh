#!/bin/sh
# Entrypoint of the envoy service in docker-compose.yml: writes the bootstrap
# with the gateway's assertion key in place of ${ATTACH_ASSERTION_KEY}, then
# runs the given command (the image's own entrypoint, which drops to the
# envoy user and starts Envoy on that copy).
#
#   ENVOY_TEMPLATE             the mounted bootstrap (/etc/envoy/envoy.yaml)
#   ATTACH_ASSERTION_KEY_FILE  the key (/run/attach/assertion.key)
#   ENVOY_CONFIG               the bootstrap Envoy runs with (/tmp/envoy/envoy.yaml)
set -eu

template=${ENVOY_TEMPLATE:-/etc/envoy/envoy.yaml}
key_file=${ATTACH_ASSERTION_KEY_FILE:-/run/attach/assertion.key}
config=${ENVOY_CONFIG:-/tmp/envoy/envoy.yaml}

key=$(cat "$key_file")
case $key in
  "" | *[!A-Za-z0-9_-]*)
    echo "envoy-entrypoint: $key_file does not hold a base64url key" >&2
    exit 1
    ;;
esac
if [ "${#key}" -lt 43 ]; then
  echo "envoy-entrypoint: $key_file holds fewer than 32 bytes" >&2
  exit 1
fi
if ! grep -q '${ATTACH_ASSERTION_KEY}' "$template"; then
  echo "envoy-entrypoint: $template has no \${ATTACH_ASSERTION_KEY} to fill" >&2
  exit 1
fi

dir=$(dirname "$config")
mkdir -p "$dir"
umask 077
sed "s|\${ATTACH_ASSERTION_KEY}|$key|g" "$template" > "$config"
# The image's entrypoint runs Envoy as the envoy user: it must read the copy.
if [ "$(id -u)" = 0 ] && id envoy > /dev/null 2>&1; then
  chown envoy "$dir" "$config"
fi
exec "$@"
