#!/usr/bin/env bash
# Ingest benchmark (issue: bronze). Starts a tansu broker (installs it once, ~18 min), pre-fills a
# topic with EVENTS Debezium events, then in separate processes: a bare rdkafka drain of the topic
# (the floor), a `kcat` drain (the issue's reference: a consumer users know) and `tidemark ingest`
# to local Parquet files. Prints events/s, MB/s, the ratios and peak RSS, for updates of the demo's
# `customers` table (the generator's schema; ~750 B schemaless, ~3.7 KB with the schema
# envelope); then peak RSS under the memory budget with defaults, 256 MiB files and 64 partitions.
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

# kcat drains the topic to /dev/null (one newline per message, counted); Debian's kcat links
# librdkafka 2.0, which does not talk to tansu, so it runs on the librdkafka the build made.
KCAT_LIB=$(dirname "$(find target/release -name 'librdkafka.so.1' -print -quit 2>/dev/null || echo /nonexistent/x)")
kcat_drain() { # topic events
  local t0 t1 n
  t0=$(date +%s.%N)
  n=$(LD_LIBRARY_PATH=$KCAT_LIB kcat -C -b "127.0.0.1:$PORT" -t "$1" -o beginning -c "$2" -q -f '\n' \
      -X fetch.wait.max.ms=5 | wc -l)
  t1=$(date +%s.%N)
  python3 -c "n=$n; s=$t1-$t0; print(f'kcat drain: {n} events in {s:.2f} s: {n/s:.0f} events/s')"
}
events_per_s() { sed -E 's/.*: ([0-9]+) events\/s.*/\1/' <<<"$1"; }

for form in $FORMS; do
  topic="bench.$form.$RANDOM"
  out=$(mktemp -d)
  echo "== $form: $EVENTS events over $PARTITIONS partitions"
  "$BENCH" prefill "127.0.0.1:$PORT" "$topic" "$PARTITIONS" "$EVENTS" "$form"
  drain=$("$BENCH" drain "127.0.0.1:$PORT" "$topic" "$PARTITIONS" "$EVENTS")
  echo "$drain"
  kcat=$(kcat_drain "$topic" "$EVENTS")
  echo "$kcat"
  # Metrics on and off alternate RUNS times (runs vary by ~10% here); medians are compared.
  ons=(); offs=()
  for _ in $(seq 1 "${RUNS:-1}"); do
    rm -rf "$out"; out=$(mktemp -d)
    ingest=$("$BENCH" ingest "127.0.0.1:$PORT" "$topic" "$PARTITIONS" "$EVENTS" "$out")
    echo "$ingest"
    ons+=("$(sed -E 's/.*: ([0-9]+) events\/s.*/\1/' <<<"$ingest")")
    rm -rf "$out"; out=$(mktemp -d)
    off=$(TIDEMARK_BENCH_METRICS=off "$BENCH" ingest "127.0.0.1:$PORT" "$topic" "$PARTITIONS" "$EVENTS" "$out")
    echo "$off"
    offs+=("$(sed -E 's/.*: ([0-9]+) events\/s.*/\1/' <<<"$off")")
  done
  median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  i=$(median "${ons[@]}"); o=$(median "${offs[@]}")
  d=$(sed -E 's/.*: ([0-9]+) events\/s.*/\1/' <<<"$drain")
  echo "median ingest: $i events/s with metrics, $o without"
  k=$(events_per_s "$kcat")
  echo "ratio ingest/raw drain: $(python3 -c "print(f'{$i/$d:.2f}')"), ingest/kcat drain: $(python3 -c "print(f'{$i/$k:.2f}')") (aim >= 0.3)"
  echo "cost of metrics: $(python3 -c "print(f'{(1 - $i/$o) * 100:.1f}%')") (median events/s, metrics on vs off)"
  rm -rf "$out"
done

# Memory under the budget (MEMORY=0 skips): defaults, files of up to 256 MiB, and 64 partitions,
# each next to the drain of its topic; peak RSS against bronze.memory_budget_bytes.
if [ "${MEMORY:-1}" != 0 ]; then
  budget=${TIDEMARK__BRONZE__MEMORY_BUDGET_BYTES:-268435456}
  echo "== memory: budget $((budget >> 20)) MiB (RSS aim: budget + 64 MiB)"
  for parts in "$PARTITIONS" 64; do
    topic="bench.memory.$parts.$RANDOM"
    "$BENCH" prefill "127.0.0.1:$PORT" "$topic" "$parts" "$EVENTS" schemaless >/dev/null
    "$BENCH" drain "127.0.0.1:$PORT" "$topic" "$parts" "$EVENTS"
    kcat=$(kcat_drain "$topic" "$EVENTS")
    echo "$kcat"
    settings=("X=defaults")
    [ "$parts" = "$PARTITIONS" ] && settings+=("TIDEMARK__BRONZE__MAX_BYTES=268435456 TIDEMARK__BRONZE__MAX_RECORDS=100000000")
    for s in "${settings[@]}"; do
      out=$(mktemp -d)
      run=$(env $s "$BENCH" ingest "127.0.0.1:$PORT" "$topic" "$parts" "$EVENTS" "$out")
      ratio=$(python3 -c "print(f'{$(events_per_s "$run")/$(events_per_s "$kcat"):.2f}')")
      echo "$parts partitions, $s: $run; ratio to kcat $ratio"
      rm -rf "$out"
    done
  done
fi
