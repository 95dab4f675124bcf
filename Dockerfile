# syntax=docker/dockerfile:1
# wxlogin as a container: a cached dependency build, then a slim, non-root runtime image.
# CI replays the build stage without a container engine (.ci/replay-dockerfile) and lints
# this file with hadolint.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, against stub sources, so that changing wxlogin's code does not
# rebuild them. Every target Cargo.toml declares needs a stub file, or cargo refuses the
# manifest: the library, the binary, and the `micro` bench.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/micro.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY config config
COPY src src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# distroless/cc: glibc, libgcc and CA certificates (WeChat's API is HTTPS), no shell; runs
# as the distroless `nonroot` user, given by number so that any runtime can check it.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/wxlogin /usr/local/bin/wxlogin
ENV WXLOGIN_LISTEN=0.0.0.0:8080 \
    WXLOGIN_LOG_FORMAT=json
EXPOSE 8080
USER 65532:65532
# No curl in distroless: the binary probes its own /healthz (exit 0 healthy, 1 not).
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 CMD ["/usr/local/bin/wxlogin", "healthcheck"]
# Credentials come from the environment: WXLOGIN_APPID, and WXLOGIN_SECRET_FILE pointing
# at a mounted secret (/run/secrets/… with Docker and Kubernetes).
ENTRYPOINT ["/usr/local/bin/wxlogin"]
