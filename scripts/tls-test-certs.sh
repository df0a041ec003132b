#!/usr/bin/env bash
# Writes a throwaway test CA and certificates into DIR (for the TLS tests; never for real use):
#   ca.pem/ca.key            the test CA
#   server.pem/server.key    localhost and 127.0.0.1, signed by the CA (stunnel, PostgreSQL)
#   client.pem/client.key    CN=tidemark, signed by the CA (mutual TLS)
#   other-ca.pem             a CA that signed nothing here (a wrong CA must be refused)
set -euo pipefail
dir=${1:?usage: tls-test-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
days=30
ssl() { openssl "$@" 2>/dev/null; }
ssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days $days -subj "/CN=tidemark test CA"
ssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days $days -subj "/CN=some other CA"
sign() { # name subject extensions
  ssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
  printf '%s\n' "$3" > "$1.ext"
  ssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days $days -extfile "$1.ext"
  rm -f "$1.csr" "$1.ext"
}
sign server "/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
sign client "/CN=tidemark" "extendedKeyUsage=clientAuth"
chmod 600 ./*.key
