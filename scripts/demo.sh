#!/usr/bin/env bash
# The main job, offline: build a demo disk image (qcow2) from the bundled elements with
# dib-core's disk-image-create (release build): host-minimal (an OS assembled from this host's
# own programs), demo (a hook in every phase) and block-device-mbr (one bootable partition).
# No network, no loop device, no mount; without root it runs in a user namespace.
# Extra arguments go to disk-image-create (e.g. -t qcow2,tar,raw, --checksum, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example disk-image-create
out=$PWD/target/demo
mkdir -p "$out" "$out/tmp"
ELEMENTS_PATH=$PWD/elements TMP_DIR=$out/tmp OVERWRITE_OLD_IMAGE=1 \
    target/release/examples/disk-image-create -o "$out/demo-image" -t qcow2 "$@" \
    host-minimal demo block-device-mbr
echo "demo: built under $out:"
ls -l "$out" | grep demo-image | sed 's/^/  /'
if command -v qemu-img >/dev/null && [ -f "$out/demo-image.qcow2" ]; then
    qemu-img check -q "$out/demo-image.qcow2" && echo "demo: qemu-img check: no errors"
fi
