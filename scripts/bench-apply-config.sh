#!/usr/bin/env bash
# Side-by-side timing of os-apply-config, ours (release build) against upstream 14.1.0, each
# run ROUNDS times interleaved, medians and ratios printed:
#   1. one template: first write into an empty output root, rewrite with changed metadata
#      (the usual case: the file exists and its content changes), and again unchanged;
#   2. 500 templates x 200 keys: first write, rewrite with changed metadata (every file
#      changes), and again unchanged;
#   3. one --key lookup.
# First writes are dominated by the file system's cost of creating files and directories
# (both tools create the same ones; `cp -r` of the template tree is printed as that floor)
# and by our fsyncs; the steady state is what a machine sees on every os-collect-config cycle.
# Both run as users run them: as root each appends its log to /var/log/os-apply-config.log
# (the file is cut back to its old size at the end).
#
#   scripts/bench-apply-config.sh [ROUNDS]     (default 9)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-9}

source scripts/peers.sh
upstream=$(ensure_peer os-apply-config)
cargo build --release --quiet --example os-apply-config
ours=$PWD/target/release/examples/os-apply-config

# BENCH_DIR=/dev/shm measures on tmpfs, where creating files costs the tools nothing extra.
work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/bench-oac.XXXXXX")
log=/var/log/os-apply-config.log
log_size=$(stat -c %s "$log" 2>/dev/null || echo none)
restore_log() {
    if [[ $log_size == none ]]; then rm -f "$log"; elif [[ -f $log ]]; then truncate -s "$log_size" "$log"; fi
}
trap 'rm -rf "$work"; restore_log' EXIT
python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
meta = {f"key{i}": f"value number {i} <&>" for i in range(200)}
meta["nested"] = {"list": [1, 2.5, "x"], "flag": True}
json.dump(meta, open(f"{work}/meta.json", "w"))
meta["key1"] = "changed value"
json.dump(meta, open(f"{work}/meta2.json", "w"))
os.makedirs(f"{work}/one/etc")
open(f"{work}/one/etc/app.conf", "w").write("[DEFAULT]\nname = {{key1}}\nlist = {{nested.list}}\n")
for t in range(500):
    d = f"{work}/many/etc/svc{t // 50}"
    os.makedirs(d, exist_ok=True)
    body = "".join(f"k{i} = {{{{key{i}}}}}\n" for i in range(200))
    open(f"{d}/file{t}.conf", "w").write(body)
PY

run_upstream() { "$upstream/bin/os-apply-config" --fallback-metadata "$@"; }
run_ours() { "$ours" --fallback-metadata "$@"; }

source scripts/bench-lib.sh

# Every first write goes to a new output root, and nothing is deleted until the end: right
# after a mass deletion, ext4 spends most of a file creation skipping the inodes it just
# freed (`recently_deleted`), which would measure the benchmark's own `rm -rf`.
for ((r = 0; r < rounds; r++)); do
    for tool in ours upstream; do
        one="$work/out-$tool-1-$r" many="$work/out-$tool-many-$r"
        measure "$tool one template" "run_$tool" -t "$work/one" -m "$work/meta.json" -o "$one"
        measure "$tool one changed" "run_$tool" -t "$work/one" -m "$work/meta2.json" -o "$one"
        measure "$tool one unchanged" "run_$tool" -t "$work/one" -m "$work/meta2.json" -o "$one"
        measure "$tool 500x200 first write" "run_$tool" -t "$work/many" -m "$work/meta.json" -o "$many"
        measure "$tool 500x200 changed" "run_$tool" -t "$work/many" -m "$work/meta2.json" -o "$many"
        measure "$tool 500x200 unchanged" "run_$tool" -t "$work/many" -m "$work/meta2.json" -o "$many"
        measure "$tool --key" "run_$tool" -m "$work/meta.json" --key nested.list --type raw
    done
    # The file system's own price for the first writes: copying the template trees creates
    # the same directories and files, with no rendering and no fsync.
    measure "cp one template" cp -r "$work/one" "$work/floor-1-$r"
    measure "cp 500x200 first write" cp -r "$work/many" "$work/floor-many-$r"
done

echo "os-apply-config, median of $rounds interleaved runs on $(nproc) cores:"
for bench in "one template" "one changed" "one unchanged" "500x200 first write" "500x200 changed" "500x200 unchanged" "--key"; do
    o=$(median "${samples[ours $bench]}")
    u=$(median "${samples[upstream $bench]}")
    awk -v b="$bench" -v o="$o" -v u="$u" \
        'BEGIN { printf "  %-22s ours %8.4f s   upstream %8.4f s   %6.1fx faster\n", b, o, u, u / o }'
done
for bench in "one template" "500x200 first write"; do
    awk -v b="$bench" -v c="$(median "${samples[cp $bench]}")" \
        'BEGIN { printf "  %-22s cp -r of the template tree (file system floor, no fsync) %8.4f s\n", b, c }'
done
