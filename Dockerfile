# syntax=docker/dockerfile:1
# The wasmgate image: the host binary and the stock plugins with their
# manifests and policy, as `cargo xtask build` lays them out. See
# docs/DEPLOY.md. Build from the repository root:
#
#   docker build -t wasmgate .

# Build: the same `cargo xtask build` as on a development machine.
FROM rust:1.95-bookworm AS build
# componentize-py (installed from PyPI into a virtualenv under target/)
# builds the Python example plugin.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The toolchain pinned in rust-toolchain.toml, with the guests' target.
COPY rust-toolchain.toml ./
RUN rustup target add wasm32-wasip2
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo xtask build

# Runtime: the binary, the stock plugins, a non-root user.
FROM debian:bookworm-slim
# CA roots for the outgoing HTTPS requests (model providers, JWKS, `http`).
RUN apt-get update \
 && apt-get install --yes --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 wasmgate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/wasmgate \
      --no-create-home --shell /usr/sbin/nologin wasmgate \
 && install -d -o 10001 -g 10001 /var/lib/wasmgate /var/cache/wasmgate
COPY --from=build /src/target/release/wasmgate /usr/local/bin/wasmgate
# Owned by root, so read-only to the server: Kubernetes copies it into a
# writable emptyDir at pod start (deploy/kubernetes/deployment.yaml).
COPY --from=build /src/target/plugins/ /opt/wasmgate/plugins/
ENV WASMGATE_LISTEN=0.0.0.0:8000 \
    WASMGATE_PLUGINS=/opt/wasmgate/plugins \
    WASMGATE_CACHE_DIR=/var/cache/wasmgate \
    DATABASE_URL=sqlite:///var/lib/wasmgate/wasmgate.db
WORKDIR /var/lib/wasmgate
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["wasmgate"]
CMD ["serve"]
