# The sluice image: `docker build -t ghcr.io/sluice-rs/sluice:0.1.0 .`
#
# Stage 1 builds the release binary with the locked dependencies (no protoc needed: build.rs
# compiles the vendored protos in Rust). Stage 2 is distroless: glibc, CA certificates (for
# rediss:// with the system roots), no shell.
#
# The same binary answers to two names:
#   /usr/local/bin/sluice  sluice's own (flags, SLUICE_* settings);
#   /bin/ratelimit         envoyproxy/ratelimit's, which Envoy Gateway runs with no arguments and
#                          every setting in upstream's environment variables (CONFIG_TYPE,
#                          GRPC_SERVER_USE_TLS, REDIS_URL, …). Under that name the debug port
#                          (6070, /rlconfig) is on by default, as upstream's.
# With no subcommand either name serves. It runs as 65534 (nobody, as Envoy Gateway's pod
# securityContext sets) and writes nothing to its filesystem, so `readOnlyRootFilesystem: true`
# works: rules, certificates and tokens are only read, logs go to stdout.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sluice

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
COPY --from=build /src/target/release/sluice /bin/ratelimit
# The example rules at the default `--rules examples/rules` (relative to the working directory),
# so that the image answers out of the box. No SLUICE_RULES_DIR here: it would win over
# upstream's RUNTIME_ROOT layout. On Kubernetes a ConfigMap is mounted at /etc/sluice/rules and
# named by SLUICE_RULES_DIR in the Deployment (deploy/kubernetes/).
COPY --from=build /src/examples/rules /usr/share/sluice/examples/rules
WORKDIR /usr/share/sluice
# 8080: HTTP (/healthcheck, /rlconfig, /metrics, /json, /admin/*); 8081: gRPC; 6070: debug
# (/rlconfig, /stats) when run as ratelimit; 19001: metrics-only when USE_PROMETHEUS=true.
EXPOSE 8080 8081 6070
# nobody:nogroup, by number so that Kubernetes can check runAsNonRoot.
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/sluice"]
