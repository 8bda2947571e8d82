#!/usr/bin/env bash
# The os-refresh-config demo, offline: run os-refresh-config (release build) over the demo hook phases in
# examples/orc-demo, configuring a scratch root under target/demo. Run it twice to see the
# migration phase notice that it has nothing left to do.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example os-refresh-config
out=$PWD/target/demo
mkdir -p "$out"
export OS_REFRESH_CONFIG_BASE_DIR=$PWD/examples/orc-demo DEMO_ROOT=$out/root
target/release/examples/os-refresh-config --lockfile "$out/os-refresh-config.lock" "$@"
echo "demo: configured files under $DEMO_ROOT:"
find "$DEMO_ROOT" -type f | sort | sed "s|^$DEMO_ROOT|  |"
