#!/usr/bin/env bash
# Side-by-side timing of one os-refresh-config run over 4 phases x 50 trivial #!/bin/sh hooks:
# a plain `sh` loop exec'ing the same hooks (the floor), ours (release build), and upstream
# os-refresh-config 14.1.0. Runs are interleaved; the median of each is printed with ratios.
#
#   scripts/bench-refresh-config.sh [ROUNDS]     (default 15)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-15}

source scripts/peers.sh
upstream=$(ensure_peer os-refresh-config)
cargo build --release --quiet --example os-refresh-config
ours=$PWD/target/release/examples/os-refresh-config

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
phases=(pre-configure configure post-configure migration)
for phase in "${phases[@]}"; do
    mkdir -p "$work/base/$phase.d"
    for i in $(seq -w 1 50); do
        printf '#!/bin/sh\nexit 0\n' > "$work/base/$phase.d/$i-hook"
        chmod 0755 "$work/base/$phase.d/$i-hook"
    done
done
export OS_REFRESH_CONFIG_BASE_DIR=$work/base

plain_loop() {
    sh -c 'for phase in pre-configure configure post-configure migration; do
               for hook in "$OS_REFRESH_CONFIG_BASE_DIR/$phase.d"/*; do "$hook" || exit; done
           done'
}
run_ours() { "$ours" --lockfile "$work/ours.lock"; }
run_upstream() { PATH="$upstream/bin:$PATH" "$upstream/bin/os-refresh-config" --lockfile "$work/up.lock"; }

source scripts/bench-lib.sh

for _ in 1 2; do plain_loop >/dev/null 2>&1; run_ours >/dev/null 2>&1; done # warm caches
for ((r = 0; r < rounds; r++)); do
    measure plain plain_loop
    measure ours run_ours
    measure upstream run_upstream
done

plain=$(median "${samples[plain]}")
ours_t=$(median "${samples[ours]}")
up=$(median "${samples[upstream]}")
echo "4 phases x 50 hooks, median of $rounds interleaved runs on $(nproc) cores:"
awk -v p="$plain" -v o="$ours_t" -v u="$up" 'BEGIN {
    printf "  plain sh loop          %8.3f s\n", p
    printf "  tripleo-rs orc         %8.3f s   %.2fx the plain loop\n", o, o / p
    printf "  upstream orc 14.1.0    %8.3f s   %.2fx the plain loop, %.1fx ours\n", u, u / p, u / o
}'
