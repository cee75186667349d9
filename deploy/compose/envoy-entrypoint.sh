#!/bin/sh
# Entrypoint of the envoy service in docker-compose.yml: puts the gateway's
# assertion key and signing key set into Envoy's environment as
# ATTACH_ASSERTION_KEY and ATTACH_SIGNING_KEYS, where the filter reads them
# (the bootstrap names only the variables, so the admin interface cannot
# print the keys), makes the folder of the admin socket, then runs the given
# command (the image's own entrypoint, which drops to the envoy user and
# starts Envoy).
#
#   ATTACH_ASSERTION_KEY_FILE  the key (/run/attach/assertion.key)
#   ATTACH_SIGNING_KEYS_FILE   the key set (/run/attach/signing-keys.json)
#   ENVOY_ADMIN_DIR            the admin socket's folder (/tmp/envoy)
set -eu

key_file=${ATTACH_ASSERTION_KEY_FILE:-/run/attach/assertion.key}
keys_file=${ATTACH_SIGNING_KEYS_FILE:-/run/attach/signing-keys.json}
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

# The filter checks the set itself; this only names a missing file.
keys=$(cat "$keys_file")
case $keys in
  "{"*"}") ;;
  *)
    echo "envoy-entrypoint: $keys_file does not hold a key set (the signing-keys service makes it)" >&2
    exit 1
    ;;
esac

mkdir -p "$admin_dir"
chmod 700 "$admin_dir"
# The image's entrypoint runs Envoy as the envoy user: it makes the socket.
if [ "$(id -u)" = 0 ] && id envoy > /dev/null 2>&1; then
  chown envoy "$admin_dir"
fi
ATTACH_ASSERTION_KEY=$key
ATTACH_SIGNING_KEYS=$keys
export ATTACH_ASSERTION_KEY ATTACH_SIGNING_KEYS
exec "$@"
