# The example A2A agents (examples/agents), one image for both roles:
# AGENT_ROLE=planner|coder picks the role. Build from the repository root:
#   docker build -f deploy/docker/agent.Dockerfile -t attach-agent .
#
# Runs as the unprivileged user 10001.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo install --locked --path examples/agents --bin attach-agent --root /out

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 attach \
 && useradd --system --uid 10001 --gid attach --no-create-home --shell /usr/sbin/nologin attach
COPY --from=build /out/bin/attach-agent /usr/local/bin/attach-agent
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/attach-agent"]
