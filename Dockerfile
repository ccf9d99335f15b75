# syntax=docker/dockerfile:1
#
# maltrail-connector: a small, non-root runtime image (distroless: no shell, no package manager).
#
#   docker build -t maltrail-connector .
#   docker run --rm -e OPENCTI_URL=... -e OPENCTI_TOKEN=... -e CONNECTOR_ID=... maltrail-connector
#   docker run --rm --no-healthcheck -v "$PWD/maltrail/trails/static:/trails:ro" -v maltrail-export:/data \
#       maltrail-connector export --trails /trails --out /data/export
#
# Configuration is by environment variables (see config.yml.sample for every one). A config file can be mounted
# anywhere and named with `run --config /path/config.yml`; the environment wins over it.
#
# Health: HEALTHCHECK runs `maltrail-connector health`, which asks the connector's own
# http://127.0.0.1:${CONNECTOR_METRICS_PORT:-9095}/health (200 once registered, or for a worker once connected to the
# broker, and while the platform keeps answering). That endpoint is only served when CONNECTOR_EXPOSE_METRICS=true,
# so the image sets it to true (the binary's own default is false; see the ENV below). Setting
# CONNECTOR_EXPOSE_METRICS=false turns the endpoint off: then also turn the health check off (`--no-healthcheck`,
# or `healthcheck: disable: true` in compose), or the container is reported unhealthy. One-shot commands (`export`)
# serve no endpoint: run them with --no-healthcheck too.

ARG RUST_VERSION=1.95

# ---- build ---------------------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build

# rustls' crypto (aws-lc-sys) builds with its `cc` builder and pregenerated bindings on x86_64 and aarch64 Linux:
# the image's gcc is enough (no cmake, clang or nasm). USE_SYSTEM=0 keeps it from probing the image's OpenSSL.
ENV AWS_LC_SYS_USE_SYSTEM=0 \
    CARGO_TERM_COLOR=never
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# 1. Dependencies only, cached until a manifest or Cargo.lock changes. Cargo needs every workspace member's manifest
#    (the root package, proto-stix, opencti-connector, and testkit, a dev-dependency never built here) and every
#    target a manifest declares, so each member gets a stub library, and each [[bench]], [[test]] and [[example]]
#    its manifest declares gets a stub file (read from the manifests by the awk script: adding a bench or a declared
#    test needs no change here). Targets cargo discovers by itself (tests/*.rs, examples/*.rs) need no stub.
COPY Cargo.toml Cargo.lock ./
COPY proto-stix/Cargo.toml proto-stix/Cargo.toml
COPY opencti-connector/Cargo.toml opencti-connector/Cargo.toml
COPY testkit/Cargo.toml testkit/Cargo.toml
RUN <<"EOF"
set -euo pipefail
stub() { mkdir -p "$(dirname "$1")"; echo 'fn main() {}' > "$1"; }
stub src/main.rs
for crate in . proto-stix opencti-connector testkit; do
  mkdir -p "$crate/src"
  : > "$crate/src/lib.rs"
  awk '
    function flush() {
      if (dir != "" && name != "") print (path != "" ? path : dir "/" name ".rs")
      dir = name = path = ""
    }
    /^[ \t]*\[/                  { flush() }
    /^[ \t]*\[\[bench\]\]/       { dir = "benches" }
    /^[ \t]*\[\[test\]\]/        { dir = "tests" }
    /^[ \t]*\[\[example\]\]/     { dir = "examples" }
    dir != "" && /^[ \t]*name[ \t]*=/ { name = $0; sub(/^[^"]*"/, "", name); sub(/".*/, "", name) }
    dir != "" && /^[ \t]*path[ \t]*=/ { path = $0; sub(/^[^"]*"/, "", path); sub(/".*/, "", path) }
    END                          { flush() }' "$crate/Cargo.toml" |
  while read -r target; do stub "$crate/$target"; done
done
cargo build --release --locked --package maltrail-connector --bin maltrail-connector
EOF

# 2. The real sources of the crates the binary is made of, over the stubs. testkit (test support) and the tests,
#    benches and examples stay stubs: the release build of the binary compiles none of them. The exception is
#    opencti-connector/examples/minimal.rs, which the runtime's crate documentation includes (include_str!) and so
#    is read when the library compiles.
#    COPY keeps the files' own, older mtimes, with which cargo would take the stubs' build as fresh: touch the crate
#    roots so that the workspace crates are rebuilt (the dependencies stay cached). The version line proves the
#    binary is the real one (the stub prints nothing).
COPY proto-stix/src proto-stix/src
COPY opencti-connector/src opencti-connector/src
COPY opencti-connector/examples opencti-connector/examples
COPY src src
RUN touch src/main.rs src/lib.rs proto-stix/src/lib.rs opencti-connector/src/lib.rs \
 && cargo build --release --locked --package maltrail-connector --bin maltrail-connector \
 && strip --strip-debug target/release/maltrail-connector \
 && target/release/maltrail-connector --version | grep '^maltrail-connector ' \
 && mkdir -p /rootfs/data

# ---- runtime -------------------------------------------------------------------------------------------------------
# glibc (the binary links it dynamically, like the bookworm builder), libgcc, CA certificates for GitHub and an
# https:// OpenCTI, no shell, user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="maltrail-connector" \
      org.opencontainers.image.description="OpenCTI external-import connector for Maltrail's static trails" \
      org.opencontainers.image.source="https://github.com/maltrail-connector/maltrail-connector" \
      org.opencontainers.image.licenses="MIT"

# The binary belongs to root (read-only for the runtime user); /data is the one writable folder, owned by nonroot,
# for the export's --out and CONNECTOR_SEND_TO_DIRECTORY_PATH. A named volume mounted there starts with that owner.
COPY --from=builder /build/target/release/maltrail-connector /maltrail-connector
COPY --from=builder --chown=65532:65532 /rootfs/data /data

# /health (and Prometheus /metrics) on CONNECTOR_METRICS_PORT, for the HEALTHCHECK below. In the image rather than
# left to each deployment: a HEALTHCHECK that fails whenever the variable is forgotten would report every such
# container unhealthy (and Swarm replaces unhealthy tasks). The port is only reachable on the container's networks
# unless published; it serves counters and the connector's state, no secret.
ENV CONNECTOR_EXPOSE_METRICS=true

USER 65532:65532
# Prometheus metrics and /health (CONNECTOR_METRICS_PORT, default 9095).
EXPOSE 9095

# Exec form: the image has no shell (and no curl); the binary asks its own endpoint, with a 5 s timeout of its own.
# The start period covers registration, which is retried until the platform answers.
HEALTHCHECK --interval=30s --timeout=10s --start-period=2m --retries=3 CMD ["/maltrail-connector", "health"]

ENTRYPOINT ["/maltrail-connector"]
CMD ["run"]
