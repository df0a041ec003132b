# The tidemark binary, built the way the README builds it (cargo build --release -p tidemark).
FROM rust:1.95-bookworm AS build
# librdkafka is built from source by rdkafka-sys (cmake-free configure/make), with TLS (OpenSSL),
# SASL (Cyrus SASL for GSSAPI/Kerberos) and OAUTHBEARER/OIDC (libcurl).
RUN apt-get update && apt-get install -y --no-install-recommends build-essential python3 \
        pkg-config libssl-dev libsasl2-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tidemark

FROM debian:bookworm-slim
# The system trust store serves Kafka (librdkafka), PostgreSQL and the Schema Registry (rustls).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
        libssl3 libsasl2-2 libsasl2-modules libsasl2-modules-gssapi-mit libcurl4 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 tidemark
COPY --from=build /src/target/release/tidemark /usr/local/bin/tidemark
USER tidemark
EXPOSE 9464
ENTRYPOINT ["tidemark"]
CMD ["run", "--config", "/etc/tidemark/tidemark.toml"]
