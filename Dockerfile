# syntax=docker/dockerfile:1
# Build: docker build -t dedupcache .
# Run:   docker run --rm -p 8080:8080 dedupcache -upstream http://api:8000 -listen :8080
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/dedupcache .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/dedupcache /usr/local/bin/dedupcache
USER nonroot:nonroot
EXPOSE 8080 9091
ENTRYPOINT ["/usr/local/bin/dedupcache"]
CMD ["-listen", ":8080"]
