# syntax=docker/dockerfile:1
# Tollgate gateway: a static binary on a minimal, non-root base with CA certificates.
#   docker build --build-arg VERSION=v0.1.0 --build-arg BUILD_DATE=$(date -u +%FT%TZ) -t tollgate/gateway .
#   docker run --rm -p 8443:8443 -v $PWD/config:/etc/tollgate:ro tollgate/gateway run -c /etc/tollgate/gateway.yaml

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits reuse the module download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
# The build context has no .git, so the version and build date come from here
# (gateway version prints them; the Go version comes from the build itself).
ARG VERSION=dev
ARG BUILD_DATE=
RUN CGO_ENABLED=0 GOFLAGS=-trimpath go build -ldflags="-s -w -X main.version=${VERSION} -X main.buildDate=${BUILD_DATE}" -o /out/gateway ./cmd/gateway

# distroless/static: no shell, no package manager, CA certificates and tzdata,
# runs as uid 65532 ("nonroot").
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /usr/local/bin/gateway
USER nonroot:nonroot
# In a container the admin listener (health, readiness, metrics) must be
# reachable from outside the container for probes: this replaces admin.listen
# (a flag > environment > file precedence; keep the port private with a
# NetworkPolicy, see docs/deploy.md). The ingress must listen on all
# interfaces too (its default ":8443"): 127.0.0.1 inside a container is
# unreachable through a published port.
ENV TOLLGATE_ADMIN_LISTEN=0.0.0.0:9901
EXPOSE 8443 9901
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["run", "-c", "/etc/tollgate/gateway.yaml"]
