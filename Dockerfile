# syntax=docker/dockerfile:1
#
# maltrail-connector: a small, non-root runtime image.
#
#   docker build -t maltrail-connector .
#   docker run --rm -e OPENCTI_URL=... -e OPENCTI_TOKEN=... -e CONNECTOR_ID=... maltrail-connector
#   docker run --rm -v "$PWD/maltrail/trails/static:/trails:ro" -v maltrail-export:/data \
#       maltrail-connector export --trails /trails --out /data/export
#
# Configuration is by environment variables (see config.yml.sample for every one). A config file can be mounted
# anywhere and named with `run --config /path/config.yml`; the environment wins over it.
#
# Health: the image has no shell, so it declares no HEALTHCHECK. Set CONNECTOR_EXPOSE_METRICS=true and probe
# http://<container>:9095/metrics (CONNECTOR_METRICS_PORT) from the orchestrator instead.

ARG RUST_VERSION=1.95

# ---- build ---------------------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build

# rustls' crypto (aws-lc-sys) builds with its `cc` builder and pregenerated bindings on x86_64 and aarch64 Linux:
# the image's gcc is enough (no cmake, clang or nasm). USE_SYSTEM=0 keeps it from probing the image's OpenSSL.
ENV AWS_LC_SYS_USE_SYSTEM=0 \
    CARGO_TERM_COLOR=never
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# 1. Dependencies only, cached until a manifest or Cargo.lock changes: the manifests with stub sources. Every
#    [[bench]], [[test]] and [[example]] a manifest declares must exist when cargo reads it, so each gets a stub
#    (benches/convert.rs, benches/publish.rs, ... read from the manifests: adding a bench needs no change here).
COPY Cargo.toml Cargo.lock ./
COPY proto-stix/Cargo.toml proto-stix/Cargo.toml
RUN <<"EOF"
set -euo pipefail
stub() { mkdir -p "$(dirname "$1")"; echo 'fn main() {}' > "$1"; }
mkdir -p src proto-stix/src
stub src/main.rs
: > src/lib.rs
: > proto-stix/src/lib.rs
for crate in . proto-stix; do
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
cargo build --release --locked
EOF

# 2. The real sources, over the stubs (stubs of tests and examples stay: the release build does not compile them).
#    COPY keeps the files' own, older mtimes, with which cargo would take the stubs' build as fresh: touch the crate
#    roots so that the workspace crates are rebuilt (the dependencies stay cached).
COPY proto-stix/src proto-stix/src
COPY src src
COPY benches benches
RUN touch src/main.rs src/lib.rs proto-stix/src/lib.rs \
 && cargo build --release --locked \
 && strip --strip-debug target/release/maltrail-connector \
 && target/release/maltrail-connector --version \
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

USER 65532:65532
# Prometheus metrics when CONNECTOR_EXPOSE_METRICS=true (CONNECTOR_METRICS_PORT).
EXPOSE 9095

ENTRYPOINT ["/maltrail-connector"]
CMD ["run"]
