#!/usr/bin/env bash
# Side-by-side timing of raw → qcow2 conversion: `qemu-img convert [-c] -f raw -O qcow2`
# against dib-core's writer (examples/qcow2-convert, release build), on one realistic input: a
# sparse 1 GiB raw disk with an ext4 file system at 1 MiB populated from a system directory
# (shared libraries: a mix of code, text and already-compressed data, and free space left as
# holes). Uncompressed, then compressed (-c): the two tools interleaved ROUNDS times after a
# warm-up round, each output removed before its run so both write a fresh file. Prints the
# median times, the speed ratio (qemu-img time / ours: ≥ 1.0 is the goal) and the size ratio
# (ours / qemu-img: ≤ 1.05 is the goal), and checks our images with qemu-img check and compare.
#
#   scripts/bench-qcow2.sh [ROUNDS]    (default 5; BENCH_DIR: scratch directory, default /tmp;
#                                       BENCH_SOURCE: the directory copied in, default
#                                       /usr/lib/x86_64-linux-gnu)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
source=${BENCH_SOURCE:-/usr/lib/x86_64-linux-gnu}

for tool in qemu-img mke2fs; do
    command -v "$tool" >/dev/null || {
        echo "bench-qcow2: $tool not found (Debian: qemu-utils, e2fsprogs)" >&2
        exit 1
    }
done

cargo build --release --quiet -p tripleo-rs --example qcow2-convert
ours=$PWD/target/release/examples/qcow2-convert

work=$(mktemp -d "${BENCH_DIR:-/tmp}/bench-qcow2.XXXXXX")
trap 'rm -rf "$work"' EXIT
raw=$work/disk.raw
truncate -s 1G "$raw"
# At most 900 MiB of file system, 1 MiB in (where a partition would start).
mke2fs -q -t ext4 -d "$source" -E offset=1048576 "$raw" 900M
sync "$raw"
printf 'input: %s (1 GiB raw, ext4 from %s, %s MiB allocated)\n' \
    "$raw" "$source" "$(($(stat -c %b "$raw") * 512 >> 20))"

source scripts/bench-lib.sh

# run NAME OUTPUT COMMAND...: removes OUTPUT and lets pending writeback finish (so no run
# pays for the previous one's), then times COMMAND.
run() {
    local name=$1 output=$2
    shift 2
    rm -f "$output"
    sync
    measure "$name" "$@"
}

for mode in plain compressed; do
    flag=()
    [ "$mode" = compressed ] && flag=(-c)
    # Round 0 warms up and is not counted; the order alternates so neither tool always runs
    # on the page cache the other left.
    for ((r = 0; r <= rounds; r++)); do
        for tool in $( ((r % 2)) && echo "ours qemu" || echo "qemu ours"); do
            output=$work/$tool-$mode.qcow2
            if [ "$tool" = qemu ]; then
                run "qemu-$mode" "$output" qemu-img convert "${flag[@]}" -f raw -O qcow2 "$raw" "$output"
            else
                run "ours-$mode" "$output" "$ours" "${flag[@]}" "$raw" "$output"
            fi
        done
        if ((r == 0)); then
            unset "samples[qemu-$mode]" "samples[ours-$mode]"
        fi
    done
done

for mode in plain compressed; do
    image=$work/ours-$mode.qcow2
    qemu-img check -q -f qcow2 "$image" || { echo "qemu-img check $mode failed" >&2; exit 1; }
    qemu-img compare -q -f raw -F qcow2 "$raw" "$image" || { echo "$mode differs" >&2; exit 1; }
done

printf '\n%-11s %10s %10s %7s %14s %14s %7s\n' mode qemu-img ours speed 'qemu-img size' 'our size' size
for mode in plain compressed; do
    theirs=$(median "${samples[qemu-$mode]}")
    mine=$(median "${samples[ours-$mode]}")
    theirs_size=$(stat -c %s "$work/qemu-$mode.qcow2")
    mine_size=$(stat -c %s "$work/ours-$mode.qcow2")
    awk -v m="$mode" -v a="$theirs" -v b="$mine" -v sa="$theirs_size" -v sb="$mine_size" 'BEGIN {
        printf "%-11s %9.3fs %9.3fs %6.2fx %14d %14d %6.3fx\n", m, a, b, a / b, sa, sb, sb / sa
    }'
done
printf '(medians of %d rounds; speed = qemu-img time / ours, size = ours / qemu-img)\n' "$rounds"
