#!/bin/sh
# Entrypoint of the a2a service in docker-compose.yml: registers each agent
# of A2A_AGENTS with its DID, which is only known once the signing-keys
# one-shot has made the agents' identities (`attach keys --agents`), then
# runs the given command (the companion service).
#
# Every entry of A2A_AGENTS without a `did=` option gets `;did=DID`, the
# `did` of the agent's identity file, agent-NAME.json in
# AGENT_IDENTITY_DIR; a missing file, or one without a did:key, stops the
# start: an agent registered without its DID would get no delegated token.
# Only the DID is read, never the seed, and nothing is printed but errors.
#
#   A2A_AGENTS          the registry (name=url;option=value,...)
#   AGENT_IDENTITY_DIR  the identity files' folder (/run/attach)
set -eu

dir=${AGENT_IDENTITY_DIR:-/run/attach}

agents=
rest=${A2A_AGENTS:-}
while [ -n "$rest" ]; do
  case $rest in
    *,*) entry=${rest%%,*}; rest=${rest#*,} ;;
    *) entry=$rest; rest= ;;
  esac
  # Blanks around an entry are ignored, as the service ignores them.
  entry=$(printf '%s' "$entry" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
  [ -n "$entry" ] || continue
  case ";$entry" in
    *";did="* | *"; did="* | *";did ="*) ;;
    *)
      name=$(printf '%s' "${entry%%[=;]*}" | sed 's/[[:space:]]*$//')
      case $name in
        "" | . | .. | *[!A-Za-z0-9._-]*)
          echo "a2a-entrypoint: A2A_AGENTS entry \"$entry\" does not start with an agent name" >&2
          exit 1
          ;;
      esac
      file=$dir/agent-$name.json
      if [ ! -r "$file" ]; then
        echo "a2a-entrypoint: no identity for agent $name: $file (the signing-keys service makes it)" >&2
        exit 1
      fi
      did=$(sed -n 's/.*"did"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$file" | head -n 1)
      case $did in
        did:key:z*[!A-Za-z0-9]* | did:key:z) did= ;;
        did:key:z*) ;;
        *) did= ;;
      esac
      if [ -z "$did" ]; then
        echo "a2a-entrypoint: $file holds no did:key" >&2
        exit 1
      fi
      entry="$entry;did=$did"
      ;;
  esac
  agents=${agents:+$agents,}$entry
done

A2A_AGENTS=$agents
export A2A_AGENTS
exec "$@"
