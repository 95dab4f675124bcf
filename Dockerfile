# syntax=docker/dockerfile:1
# wxlogin as a container: a cached dependency build, then a slim, non-root runtime image.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, against stub sources, so that changing wxlogin's code does not
# rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY config config
COPY src src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# distroless/cc: glibc, CA certificates (WeChat's API is HTTPS), no shell, user nonroot.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/wxlogin /usr/local/bin/wxlogin
ENV WXLOGIN_LISTEN=0.0.0.0:8080 \
    WXLOGIN_LOG_FORMAT=json
EXPOSE 8080
USER nonroot
# No curl in distroless: the binary probes its own /healthz (exit 0 healthy, 1 not).
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 CMD ["/usr/local/bin/wxlogin", "healthcheck"]
# Credentials come from the environment: WXLOGIN_APPID, and WXLOGIN_SECRET_FILE pointing
# at a mounted secret (/run/secrets/… with Docker and Kubernetes).
ENTRYPOINT ["/usr/local/bin/wxlogin"]
