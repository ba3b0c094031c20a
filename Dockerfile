# The sluice image: `docker build -t ghcr.io/sluice-rs/sluice:0.1.0 .`
#
# Stage 1 builds the release binary with the locked dependencies (no protoc needed: build.rs
# compiles the vendored protos in Rust). Stage 2 is distroless: glibc, CA certificates (for
# rediss:// with the system roots), no shell, running as the `nonroot` user (uid 65532).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sluice

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
# The example rules, so that the image answers out of the box; on Kubernetes a ConfigMap is
# mounted over this directory (deploy/kubernetes/).
COPY --from=build /src/examples/rules /etc/sluice/rules
ENV SLUICE_RULES_DIR=/etc/sluice/rules
# 8080: HTTP (/healthcheck, /rlconfig, /metrics, /json, /admin/*); 8081: gRPC.
EXPOSE 8080 8081
# The `nonroot` user of the base image, by number so that Kubernetes can check runAsNonRoot.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sluice"]
