# The example service (crates/piko-obs/examples/monitor.rs) in a distroless image.
# Build from the repository root: docker build -t piko-obs-monitor .
# Kept consistent with deploy/kubernetes/deployment.yaml (user, ports, probe path) by
# `cargo xtask deploy`, which also runs the HEALTHCHECK command against the example.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p piko-obs --example monitor -p piko-obs-probe

# glibc and libgcc, no shell, no package manager; numeric non-root user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/examples/monitor /usr/local/bin/monitor
COPY --from=build /src/target/release/piko-obs-probe /usr/local/bin/piko-obs-probe
USER 65532:65532
# Both servers listen on every interface of the container.
ENV PIKO_HEALTH_BIND_ADDRESS=0.0.0.0 \
    APP_BIND_ADDRESS=0.0.0.0
EXPOSE 8080 9090
# Docker only (Kubernetes uses the Deployment's probes): the liveness path, no curl.
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/piko-obs-probe", "--timeout", "2s", "http://127.0.0.1:9090/live"]
ENTRYPOINT ["/usr/local/bin/monitor"]
CMD ["prod"]
