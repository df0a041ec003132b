#!/usr/bin/env bash
# Builds the fuzz seed corpus from the Debezium fixtures: each file as a JSON value (mode byte 0)
# and its `after` row (mode byte 2).
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/corpus/decode
mkdir -p "$out"
i=0
for f in $(find services/tidemark-wire/tests/fixtures -name '*.json'); do
  i=$((i + 1))
  { printf '\x00'; cat "$f"; } > "$out/json_$i"
  { printf '\x02'; python3 -c "import json,sys; d=json.load(open(sys.argv[1])); p=d.get('payload', d) if isinstance(d, dict) else d; a=p.get('after') if isinstance(p, dict) else None; print(json.dumps(a) if a else '{}')" "$f"; } > "$out/row_$i"
done
echo "seeded $out with $((i * 2)) inputs"
