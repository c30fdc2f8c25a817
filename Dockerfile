# syntax=docker/dockerfile:1
#
# Build (the build context has no .git, see .dockerignore, so the version
# and commit come in as build arguments):
#   docker build -t dedupcache \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg COMMIT="$(git rev-parse HEAD)" .
#
# Run: the image's config (deploy/container.yaml, copied to
# /etc/dedupcache/config.yaml) listens on 0.0.0.0:8080 for the proxy and
# 0.0.0.0:9090 for the read-only metrics listener (/metrics, /healthz,
# /readyz); arguments are added after -config, so flags override it:
#   docker run --rm -p 8080:8080 -p 9090:9090 dedupcache -upstream http://api:8000
#   docker run --rm -p 8080:8080 -e DEDUPCACHE_UPSTREAM=http://api:8000 dedupcache
#
# Your own file replaces the image's; give it listen: ":8080" (and
# metrics.listen: ":9090") or the ports are not reachable from outside:
#   docker run --rm -p 8080:8080 -v ./config.yaml:/etc/dedupcache/config.yaml:ro dedupcache
#   docker run --rm -v ./config.yaml:/etc/dedupcache/config.yaml:ro dedupcache -check
#
# The admin listener (dashboard, /api/*, purge) stays on 127.0.0.1:9091
# inside the container. Publishing it needs a token:
#   docker run --rm -p 8080:8080 -p 9091:9091 -e DEDUPCACHE_ADMIN_TOKEN="$(openssl rand -hex 24)" \
#     dedupcache -upstream http://api:8000 -admin 0.0.0.0:9091
#
# Reload the config file: docker kill -s HUP <container>.
#
# Base images are pinned: the Go image by its exact release (the go line of
# go.mod; e2e TestDockerfile checks they agree). Distroless publishes no
# version tags, only digests: append @sha256:... from
# `docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot`
# when building releases.

FROM golang:1.26.8-bookworm AS build
# The build cache in a directory of its own, mounted as a cache below.
ENV GOCACHE=/cache/go-build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=""
ARG COMMIT=""
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/dedupcache .

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=""
ARG COMMIT=""
LABEL org.opencontainers.image.title="dedupcache" \
      org.opencontainers.image.description="HTTP reverse-proxy cache that stores each distinct response body once" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/dedupcache /usr/local/bin/dedupcache
COPY deploy/container.yaml /etc/dedupcache/config.yaml
USER nonroot:nonroot
# 8080 proxy, 9090 read-only metrics and probes, 9091 admin (loopback
# unless -admin 0.0.0.0:9091 with a token).
EXPOSE 8080 9090 9091
# Distroless has no shell or curl: the binary checks itself. The admin
# listener is always on, on loopback inside the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/dedupcache", "-healthcheck", "http://127.0.0.1:9091/healthz"]
ENTRYPOINT ["/usr/local/bin/dedupcache", "-config", "/etc/dedupcache/config.yaml"]
