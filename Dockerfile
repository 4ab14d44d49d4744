# imds-console as one container: the frontend is built into the binary (./x.sh release), which runs as
# an unprivileged user with its data in a volume.
#
#   docker build -t imds-console .
#   docker run -p 8080:8080 -v imds-data:/var/lib/imds-console imds-console            # sandbox demo
#   docker run -p 8080:8080 -v imds-data:/var/lib/imds-console -e AWS_REGION=us-east-1 \
#     -e IMDS_CONSOLE_AWS=true imds-console                                              # real AWS
#
# Without Docker: ./x.sh image builds this file with buildah and tests the image with podman (CI does).
#
# Settings: the IMDS_CONSOLE_* variables, or a TOML file mounted at /etc/imds-console/imds-console.toml
# and named with IMDS_CONSOLE_CONFIG (see README, "Command line").

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# x.sh installs the wasm32 target and the pinned wasm-bindgen CLI, builds and splits the frontend,
# then the server with the frontend inside. The build directories and the downloaded crates are cache
# mounts (BuildKit, buildah): a rebuild compiles only what changed, and the stage's layer holds the
# binary, not gigabytes of build products.
RUN --mount=type=cache,target=/src/target --mount=type=cache,target=/usr/local/cargo/registry \
    ./x.sh release && cp target/release/imds-console /imds-console

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 imds \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/imds-console --no-create-home imds \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/imds-console
COPY --from=build /imds-console /usr/local/bin/imds-console
USER 10001:10001
ENV IMDS_CONSOLE_LISTEN=0.0.0.0:8080 \
    IMDS_CONSOLE_DATA_DIR=/var/lib/imds-console
VOLUME ["/var/lib/imds-console"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/imds-console"]
CMD ["serve"]
