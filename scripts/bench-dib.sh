#!/usr/bin/env bash
# Side by side, in one run: upstream disk-image-create (diskimage-builder, pinned in
# scripts/peers/diskimage-builder.txt, run as root with a sudo shim, its defaults otherwise)
# and ours (release build), building the same offline element set (host-minimal + demo from
# elements/, -n so that neither adds its own base) to `-t qcow2,tar,raw` in a 1 GiB image
# (upstream cannot size an image this small itself: its 64 MiB journal does not fit). Prints each run,
# the medians and ours/upstream (the goal is <= 0.25).
#   bash scripts/bench-dib.sh [RUNS]        (default 5; BENCH_DIR picks the scratch folder)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ "$(id -u)" -eq 0 ] || { echo "bench-dib.sh: upstream needs root (loop devices, mounts)" >&2; exit 1; }
source scripts/peers.sh
venv=$(ensure_peer diskimage-builder)
cargo build --release --quiet --example disk-image-create
ours=$PWD/target/release/examples/disk-image-create

work=$(mktemp -d "${BENCH_DIR:-/tmp}/bench-dib.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{shim,home,tmp,out}
# Upstream calls sudo for everything; as root the shim drops sudo's options and runs the rest.
cat > "$work/shim/sudo" <<'SHIM'
#!/bin/bash
while [[ $# -gt 0 && $1 == -* ]]; do
    case $1 in -u|-g|-C|-D|-h|-p|-r|-t|-U) shift 2 ;; *) shift ;; esac
done
exec "$@"
SHIM
chmod +x "$work/shim/sudo"
# upstream's dib-run-parts needs find and awk inside the chroot as well.
export DIB_HOST_MINIMAL_PROGRAMS="find awk"
elements="host-minimal demo"

run_upstream() {
    HOME=$work/home USER=root TMP_DIR=$work/tmp PATH=$work/shim:$venv/bin:$PATH \
        ELEMENTS_PATH=$PWD/elements OVERWRITE_OLD_IMAGE=1 \
        "$venv/bin/disk-image-create" -n --image-size 1 -t qcow2,tar,raw -o "$work/out/upstream" $elements \
        >"$work/upstream.log" 2>&1 || { tail -20 "$work/upstream.log" >&2; exit 1; }
}
run_ours() {
    HOME=$work/home TMP_DIR=$work/tmp ELEMENTS_PATH=$PWD/elements OVERWRITE_OLD_IMAGE=1 \
        "$ours" -n --image-size 1 -t qcow2,tar,raw -o "$work/out/ours" $elements \
        >"$work/ours.log" 2>&1 || { tail -20 "$work/ours.log" >&2; exit 1; }
}
seconds() { local start=$EPOCHREALTIME; "$@"; echo "$EPOCHREALTIME - $start" | bc; }

declare -a up_times our_times
for ((i = 1; i <= runs; i++)); do
    u=$(seconds run_upstream)
    o=$(seconds run_ours)
    up_times+=("$u"); our_times+=("$o")
    printf 'run %d: upstream %.2f s, ours %.2f s\n' "$i" "$u" "$o"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mu=$(median "${up_times[@]}"); mo=$(median "${our_times[@]}")
printf 'median: upstream %.2f s, ours %.2f s: ours/upstream = %.3f (goal <= 0.25), %.1fx faster\n' \
    "$mu" "$mo" "$(echo "$mo / $mu" | bc -l)" "$(echo "$mu / $mo" | bc -l)"
for ext in qcow2 tar raw; do
    printf '%-6s upstream %10d bytes, ours %10d bytes\n' "$ext" \
        "$(stat -c %s "$work/out/upstream.$ext")" "$(stat -c %s "$work/out/ours.$ext")"
done
