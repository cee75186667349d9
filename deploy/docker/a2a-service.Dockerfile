# The companion service, attach-a2a. Build from the repository root:
#   docker build -f deploy/docker/a2a-service.Dockerfile -t attach-a2a .
#
# Listens on 0.0.0.0:8090 (A2A_HOST, A2A_PORT); state in /data (SQLite) unless
# A2A_DATABASE_URL names PostgreSQL. Runs as the unprivileged user 10001.
# Also carries the launcher, `attach`, for `attach keys` (the compose stack's
# signing-keys one-shot makes the gateway's signing key set with it).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo install --locked --path a2a-service --root /out \
 && cargo install --locked --path launcher --root /out

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 attach \
 && useradd --system --uid 10001 --gid attach --home-dir /data --shell /usr/sbin/nologin attach \
 && install -d -o attach -g attach -m 0700 /data
COPY --from=build /out/bin/attach-a2a /usr/local/bin/attach-a2a
COPY --from=build /out/bin/attach /usr/local/bin/attach
ENV A2A_HOST=0.0.0.0 \
    A2A_PORT=8090 \
    ATTACH_DATA_DIR=/data
VOLUME /data
EXPOSE 8090
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/attach-a2a"]
