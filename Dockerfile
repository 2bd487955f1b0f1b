# ferry in a container: a static-ish release build on Debian slim.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tools ./tools
RUN cargo build --release --locked --workspace --bin ferry --bin ferry-demo

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /state ferry && install -d -o ferry -m 0700 /state
COPY --from=build /src/target/release/ferry /src/target/release/ferry-demo /usr/local/bin/
USER ferry
WORKDIR /state
VOLUME /state
ENTRYPOINT ["ferry"]
CMD ["--config", "/etc/ferry/ferry.toml", "--log-format", "json", "run"]
