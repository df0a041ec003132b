#!/usr/bin/env bash
# Ingest benchmark (issue: bronze). Starts a tansu broker (installs it once, ~18 min), pre-fills a
# topic with EVENTS Debezium events, then in separate processes: a bare rdkafka drain of the topic
# (the floor) and `tidemark ingest` to local Parquet files. Prints events/s, MB/s, the ratio and
# peak RSS, for ~700-byte schemaless events and ~2.5 KB events with the schema envelope.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-2000000}
PARTITIONS=${PARTITIONS:-4}
PORT=${PORT:-19092}
FORMS=${FORMS:-"schemaless schema"}

command -v tansu >/dev/null || cargo install tansu --locked --features dynostore,libsql
cargo bench -p tidemark-bronze --bench ingest --no-run
BENCH=$(ls -t target/release/deps/ingest-* | grep -v '\.d$' | head -1)

tansu broker --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
  --storage-engine memory://tansu/ > /tmp/tansu-bench.log 2>&1 &
TANSU=$!
trap 'kill $TANSU 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

for form in $FORMS; do
  topic="bench.$form.$RANDOM"
  out=$(mktemp -d)
  echo "== $form: $EVENTS events over $PARTITIONS partitions"
  "$BENCH" prefill "127.0.0.1:$PORT" "$topic" "$PARTITIONS" "$EVENTS" "$form"
  drain=$("$BENCH" drain "127.0.0.1:$PORT" "$topic" "$PARTITIONS" "$EVENTS")
  echo "$drain"
  ingest=$("$BENCH" ingest "127.0.0.1:$PORT" "$topic" "$PARTITIONS" "$EVENTS" "$out")
  echo "$ingest"
  rm -rf "$out"; out=$(mktemp -d)
  off=$(TIDEMARK_BENCH_METRICS=off "$BENCH" ingest "127.0.0.1:$PORT" "$topic" "$PARTITIONS" "$EVENTS" "$out")
  echo "$off"
  o=$(sed -E 's/.*: ([0-9]+) events\/s.*/\1/' <<<"$off")
  d=$(sed -E 's/.*: ([0-9]+) events\/s.*/\1/' <<<"$drain")
  i=$(sed -E 's/.*: ([0-9]+) events\/s.*/\1/' <<<"$ingest")
  echo "ratio ingest/raw drain: $(python3 -c "print(f'{$i/$d:.2f}')")"
  echo "cost of metrics: $(python3 -c "print(f'{(1 - $i/$o) * 100:.1f}%')") (events/s with metrics on vs off)"
  rm -rf "$out"
done
