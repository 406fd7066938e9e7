# One small image per Pulse function: its static release binary on an empty base, run as a
# non-root user, listening on $PORT (Cloud Run's contract). scripts/build-image.sh builds the
# binary (x86_64 glibc, +crt-static, without the local world: `--no-default-features`) and the
# build context:
#
#   context/function                  the binary
#   context/ca-certificates.crt       CA bundle: the Google SDK's TLS uses the system roots
#
#   docker build --build-arg FUNCTION=preprocess -t preprocess context/   (or buildah bud)
FROM scratch
# checkov:skip=CKV_DOCKER_2:Cloud Run ignores HEALTHCHECK; its startup and liveness probes call /healthz (terraform/modules/function), and scratch has no shell to run one.

ARG FUNCTION
LABEL org.opencontainers.image.title="pulse-${FUNCTION}" \
      org.opencontainers.image.source="https://github.com/pulse-data/pulse" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY function /function

ENV PORT=8080 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EXPOSE 8080
# nobody:nogroup; the functions write nothing to the image's file system on Cloud Run.
USER 65534:65534
ENTRYPOINT ["/function"]
