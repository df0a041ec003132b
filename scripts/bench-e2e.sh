#!/usr/bin/env bash
# End-to-end benchmark (merge-engine issue): `tidemark run` (ingest + merge in one process) beside
# `tidemark generate` producing the banking stream at RATE events/s for DURATION seconds, through a
# tansu broker, local-file bronze and PostgreSQL. Every SAMPLE seconds it records the run's RSS and
# the freshness histogram (`tidemark_end_to_end_latency_seconds`, source commit → visible in
# the warehouse, observed per change); at the end it prints the p50/p99 freshness after the first
# WARMUP seconds, events produced and merged, and RSS over time.
#
# PostgreSQL: PG_URL (a server URL without database), else a throwaway cluster is started.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-20000}
DURATION=${DURATION:-600}
WARMUP=${WARMUP:-60}
SAMPLE=${SAMPLE:-15}
PARTITIONS=${PARTITIONS:-4}
PORT=${PORT:-19192}
MPORT=${MPORT:-19464}

command -v tansu >/dev/null || cargo install tansu --locked --features dynostore,libsql
cargo build --release -p tidemark
BIN=target/release/tidemark
WORK=$(mktemp -d /tmp/tidemark-e2e.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n "${PG_BIN:-}" ]]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -z "${PG_URL:-}" ]]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  chown postgres "$WORK"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
    -o "-p 55439 -k $WORK -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
  PG_URL=postgres://postgres@127.0.0.1:55439
fi
DB=e2e_$RANDOM
psql "$PG_URL/postgres" -qc "CREATE DATABASE $DB"

tansu broker --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
  --storage-engine memory://tansu/ > "$WORK/tansu.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

cat > "$WORK/tidemark.toml" <<EOF
[kafka]
bootstrap_servers = "127.0.0.1:$PORT"
group_id = "tidemark-e2e"
topic_pattern = "^bank\\\\.public\\\\..*$"
format = "json"

[kafka.properties]
"fetch.wait.max.ms" = "5"

[bronze]
url = "file://$WORK/bronze"
# Files roll at least every second: freshness cannot beat the age bound.
max_age_ms = 1000

[warehouse]
url = "$PG_URL/$DB"

[merge]
interval_ms = 200

[metrics]
listen = "127.0.0.1:$MPORT"

EOF
# The stack's tables (deploy/tidemark.toml): the bank stream's dimensions and fact.
sed -n '/^\[\[tables\]\]/,$p' deploy/tidemark.toml >> "$WORK/tidemark.toml"

# Topics first, so the run's subscription sees every partition from the start.
"$BIN" generate -c "$WORK/tidemark.toml" --log-level warn --create-topics "$PARTITIONS" --format "${FORMAT:-json-schemaless}" \
  --rate 1000 --events 1 >/dev/null
"$BIN" run -c "$WORK/tidemark.toml" --log-level warn > "$WORK/run.log" 2>&1 &
RUN=$!
pids+=($RUN)
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$MPORT") 2>/dev/null && break; sleep 0.1; done
sleep 5

echo "== generate $RATE events/s for $DURATION s; tidemark run merges into PostgreSQL"
"$BIN" generate -c "$WORK/tidemark.toml" --log-level warn --rate "$RATE" --duration "$DURATION" --format "${FORMAT:-json-schemaless}" \
  > "$WORK/generate.log" 2>&1 &
GEN=$!
pids+=($GEN)
start=$(date +%s)
mkdir -p "$WORK/samples"
while kill -0 "$GEN" 2>/dev/null; do
  t=$(( $(date +%s) - start ))
  curl -s "http://127.0.0.1:$MPORT/metrics" > "$WORK/samples/$t.prom" || true
  echo "$t $(awk '/VmRSS/ {print $2}' /proc/$RUN/status)" >> "$WORK/rss"
  sleep "$SAMPLE"
done
# Let the merger finish what was produced.
sleep 20
t=$(( $(date +%s) - start ))
curl -s "http://127.0.0.1:$MPORT/metrics" > "$WORK/samples/$t.prom"
echo "$t $(awk '/VmRSS/ {print $2}' /proc/$RUN/status)" >> "$WORK/rss"
cat "$WORK/generate.log" | tail -3

python3 - "$WORK" "$WARMUP" <<'PY'
import glob, os, re, sys
work, warmup = sys.argv[1], int(sys.argv[2])
def parse(path):
    buckets, sums = {}, {}
    for line in open(path):
        m = re.match(r'tidemark_end_to_end_latency_seconds_bucket\{.*le="([^"]+)".*\} (\S+)', line)
        if m:
            le = float('inf') if m.group(1) == '+Inf' else float(m.group(1))
            buckets[le] = buckets.get(le, 0) + float(m.group(2))
        m = re.match(r'(tidemark_merge_changes_total|tidemark_records_landed_total)\{.*\} (\S+)', line)
        if m:
            sums[m.group(1)] = sums.get(m.group(1), 0) + float(m.group(2))
    return buckets, sums
samples = sorted((int(os.path.basename(p)[:-5]), p) for p in glob.glob(f'{work}/samples/*.prom'))
base = next(((t, p) for t, p in samples if t >= warmup), samples[0])
b0, _ = parse(base[1]); b1, s1 = parse(samples[-1][1])
les = sorted(b1)
cum = [(le, b1[le] - b0.get(le, 0)) for le in les]
total = cum[-1][1]
def q(x):
    want, prev_le, prev_n = x * total, 0.0, 0.0
    for le, n in cum:
        if n >= want:
            if le == float('inf'):
                return prev_le
            return prev_le + (le - prev_le) * ((want - prev_n) / max(n - prev_n, 1e-9))
        prev_le, prev_n = le, n
print(f"freshness after {base[0]} s: p50 {q(0.5):.2f} s, p99 {q(0.99):.2f} s over {int(total)} changes")
print(f"records landed {int(s1.get('tidemark_records_landed_total', 0))}, changes merged {int(s1.get('tidemark_merge_changes_total', 0))}")
batches = {}
for line in open(samples[-1][1]):
    m = re.match(r'tidemark_merge_duration_seconds_(sum|count)\{table="([^"]+)"\} (\S+)', line)
    if m:
        batches.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
print("merge batches: " + ", ".join(
    f"{t} {int(v.get('count', 0))} × {1000 * v.get('sum', 0) / max(v.get('count', 1), 1):.0f} ms"
    for t, v in sorted(batches.items())))
rss = [tuple(map(int, l.split())) for l in open(f'{work}/rss') if len(l.split()) == 2]
print("RSS MiB over time: " + ", ".join(f"{t}s {r // 1024}" for t, r in rss[::max(1, len(rss) // 12)]))
PY
