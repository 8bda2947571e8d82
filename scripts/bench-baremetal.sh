#!/usr/bin/env bash
# End-to-end figure for the baremetal tool: 100 fake-hardware nodes in the SQLite store,
# powered on with one `baremetal node power on` (every node read, its target power state
# written, its BMC driven, the result written: all at once). Prints the wall time of each run
# and the median. (`cargo bench -p baremetal --bench power_many` measures the controller with
# slow fake BMCs.)
# Usage: scripts/bench-baremetal.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo build --release --example baremetal --quiet
bin=target/release/examples/baremetal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/nodes.json" <<'PY'
import json, sys
nodes = [{"name": f"fake-{i:03d}", "pm_type": "fake-hardware",
          "ports": [{"address": "52:54:00:%02x:%02x:%02x" % (0x10, i // 256, i % 256)}]}
         for i in range(100)]
json.dump({"nodes": nodes}, open(sys.argv[1], "w"))
PY
names=$(python3 -c 'print(" ".join(f"fake-{i:03d}" for i in range(100)))')
times=()
for run in $(seq "$runs"); do
    state="$work/state-$run"
    "$bin" --state-dir "$state" node import "$work/nodes.json" >/dev/null
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$bin" --state-dir "$state" --concurrency 100 node power on $names
    end=$(date +%s.%N)
    t=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')
    on=$("$bin" --state-dir "$state" node list -f json | grep -c '"Power State": "power on"')
    printf 'run %d: %.3f s, %d nodes on\n' "$run" "$t" "$on"
    times+=("$t")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "median: %.3f s for 100 nodes\n", a[int((NR + 1) / 2)] }'
