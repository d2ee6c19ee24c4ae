# latchkey container image: a multi-stage build, the runtime image holds only the binary.
#   docker build -t latchkey .
#   docker run -p 8080:8080 -v latchkey-data:/var/lib/latchkey \
#     -e LATCHKEY_PUBLIC_URL=https://auth.example.com -e LATCHKEY_MASTER_KEY=... latchkey
# See docs/deploy.md.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin latchkey \
    && install -m 0755 target/release/latchkey /usr/local/bin/latchkey

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/latchkey --create-home latchkey
COPY --from=build /usr/local/bin/latchkey /usr/local/bin/latchkey
USER latchkey
WORKDIR /var/lib/latchkey
ENV LATCHKEY_BIND=0.0.0.0:8080 \
    LATCHKEY_DATA_DIR=/var/lib/latchkey
# The SQLite database, the generated master key (if LATCHKEY_MASTER_KEY is not set) and .eml
# files (if no SMTP is configured) live here.
VOLUME /var/lib/latchkey
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/latchkey"]
CMD ["serve"]
