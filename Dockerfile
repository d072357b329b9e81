# syntax=docker/dockerfile:1
# Signpost: signpost-forward, signpost-endpoint and signpost-redirect in one
# image. Build: docker build -t signpost:dev .   (docs/kubernetes.md)

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p signpost-forward -p signpost-endpoint -p signpost-redirect \
 && mkdir -p /out \
 && cp target/release/signpost-forward target/release/signpost-endpoint target/release/signpost-redirect /out/
# Port 53 as a non-root user: the file capability CAP_NET_BIND_SERVICE (only
# honoured where privilege escalation is allowed; the chart's DaemonSet mode
# needs it, its Deployment mode listens on 5353 and needs nothing).
RUN apt-get update && apt-get install -y --no-install-recommends libcap2-bin \
 && setcap cap_net_bind_service=+ep /out/signpost-forward /out/signpost-endpoint /out/signpost-redirect

# A static wget for the image's HEALTHCHECK: the runtime base has no shell or tools.
FROM busybox:1.37-musl AS probe

# glibc and CA roots, no shell, no package manager; uid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="signpost" \
      org.opencontainers.image.description="DNS steering: a conditional forwarder (signpost-forward), a Route 53 Resolver emulator (signpost-endpoint) and a DNS redirect proxy (signpost-redirect)" \
      org.opencontainers.image.source="https://github.com/signpost-dns/signpost" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.documentation="https://github.com/signpost-dns/signpost/blob/main/docs/kubernetes.md"
COPY --from=build /out/ /usr/local/bin/
COPY --from=probe /bin/busybox /usr/local/bin/busybox
USER 65532:65532
# DNS, /health, /ready, metrics (the chart's and CoreDNS's ports).
EXPOSE 53/udp 53/tcp 8080/tcp 8181/tcp 9153/tcp
# Answers while /health does (set [health] address = "0.0.0.0:8080" in the configuration).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
    CMD ["/usr/local/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
ENTRYPOINT ["/usr/local/bin/signpost-forward"]
CMD ["--config", "/etc/signpost/forward.toml", "--watch-config"]
