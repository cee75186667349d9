#!/bin/sh
# Entrypoint of the envoy service in docker-compose.yml: puts the gateway's
# assertion key into Envoy's environment as ATTACH_ASSERTION_KEY, where the
# filter reads it (the bootstrap names only the variable, so the admin
# interface cannot print the key), makes the folder of the admin socket,
# then runs the given command (the image's own entrypoint, which drops to
# the envoy user and starts Envoy).
#
#   ATTACH_ASSERTION_KEY_FILE  the key (/run/attach/assertion.key)
#   ENVOY_ADMIN_DIR            the admin socket's folder (/tmp/envoy)
set -eu

key_file=${ATTACH_ASSERTION_KEY_FILE:-/run/attach/assertion.key}
admin_dir=${ENVOY_ADMIN_DIR:-/tmp/envoy}

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

mkdir -p "$admin_dir"
chmod 700 "$admin_dir"
# The image's entrypoint runs Envoy as the envoy user: it makes the socket.
if [ "$(id -u)" = 0 ] && id envoy > /dev/null 2>&1; then
  chown envoy "$admin_dir"
fi
ATTACH_ASSERTION_KEY=$key
export ATTACH_ASSERTION_KEY
exec "$@"
