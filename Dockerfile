# syntax=docker/dockerfile:1
# Tollgate gateway: a static binary on a minimal, non-root base with CA certificates.
#   docker build -t tollgate/gateway .
#   docker run --rm -p 8443:8443 -v $PWD/config:/etc/tollgate:ro tollgate/gateway run -c /etc/tollgate/gateway.yaml

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits reuse the module download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
ARG VERSION=dev
RUN CGO_ENABLED=0 GOFLAGS=-trimpath go build -ldflags="-s -w -X main.version=${VERSION}" -o /out/gateway ./cmd/gateway

# distroless/static: no shell, no package manager, CA certificates and tzdata,
# runs as uid 65532 ("nonroot").
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /usr/local/bin/gateway
USER nonroot:nonroot
EXPOSE 8443 9901
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["run", "-c", "/etc/tollgate/gateway.yaml"]
