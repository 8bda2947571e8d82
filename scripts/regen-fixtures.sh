#!/usr/bin/env bash
# Record what an upstream tool does on the cases in tests/fixtures/<TOOL> (format: that
# directory's README.md). The per-tool scripts (regen-refresh-config-fixtures.sh,
# regen-apply-config-fixtures.sh) call this with their TOOL.
#
#   scripts/regen-fixtures.sh TOOL [--check] [CASE...]
#   TOOL: refresh-config | apply-config | collect-config
#
# `same` cases get `stdout` and `exit` (the Project must match upstream);
# `differs` cases get `upstream.stdout` and `upstream.exit` (documentation of
# the defect; their `stdout`/`exit` are the hand-written Project expectation).
# --check compares instead of writing and exits 1 on any difference.
#
# <TOOL>_VENV (ORC_VENV, OAC_VENV, OCC_VENV) reuses a venv that already holds the pinned peer;
# otherwise one is created (once) under target/peers by scripts/peers.sh. Root runs of
# os-apply-config go through the fixtures' oac-sandbox wrapper, which keeps them from
# appending to the host's /var/log/os-apply-config.log.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tool=${1:?usage: regen-fixtures.sh TOOL [--check] [CASE...]}
shift
case $tool in
    refresh-config) peer=os-refresh-config venv_var=ORC_VENV probe=(--print-base) ;;
    apply-config) peer=os-apply-config venv_var=OAC_VENV probe=(--print-templates) ;;
    collect-config) peer=os-collect-config venv_var=OCC_VENV probe=(--config-file /dev/null --print-cachedir) ;;
    *) echo "unknown tool $tool" >&2; exit 2 ;;
esac
fixtures=$repo/tests/fixtures/$tool
reqs=$repo/scripts/peers/$peer.txt

check=0
if [ "${1:-}" = --check ]; then check=1; shift; fi

if [ -n "${!venv_var:-}" ]; then
    venv=${!venv_var}
    [ -x "$venv/bin/$peer" ] || { echo "$venv_var=$venv has no bin/$peer" >&2; exit 1; }
else
    source "$repo/scripts/peers.sh"
    venv=$(ensure_peer "$peer")
fi
# Expectations are only meaningful for the pinned versions.
frozen=$("$venv/bin/pip" freeze 2>/dev/null)
while read -r pin; do
    case $pin in ''|'#'*) continue ;; esac
    if ! grep -qixF -- "$pin" <<<"$frozen"; then
        echo "$venv does not have $pin (see $reqs)" >&2
        exit 1
    fi
done < "$reqs"

# Some cases drop to nobody (setpriv); the venv's interpreter must be
# reachable for it (a venv made from a python under /root is not).
if [ "$(id -u)" = 0 ] && ! setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$venv/bin/$peer" "${probe[@]}" >/dev/null 2>&1; then
    echo "$venv/bin/$peer cannot run as nobody; build the venv from a" \
        "system python (e.g. /usr/bin/python3 -m venv)" >&2
    exit 1
fi

base_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
scratch=$(mktemp -d "${TMPDIR:-/tmp}/$tool-regen.XXXXXX")
# Cases that run as nobody need to reach $ROOT inside it.
chmod 0755 "$scratch"
trap 'chmod -R u+rwX "$scratch" 2>/dev/null; rm -rf "$scratch"' EXIT
umask 022

# Replace the temp root path with the literal $ROOT (byte-exact, keeps the
# trailing newlines that command substitution would strip).
unroot() {
    python3 -c 'import sys; r, s, d = sys.argv[1:]
data = open(s, "rb").read().replace(r.encode(), b"$ROOT")
open(d, "wb").write(data)' "$1" "$2" "$3"
}

failed=0
run_case() {
    local dir=$1 name=${1##*/}
    local root=$scratch/root tmp=$scratch/tmp out=$scratch/out
    chmod -R u+rwX "$root" 2>/dev/null || true
    rm -rf "$root" "$tmp" "$out"
    mkdir -m 0755 "$root"
    mkdir "$tmp" "$out"
    local -a env=(
        "PATH=$venv/bin:$base_path" "ROOT=$root"
        "OS_REFRESH_CONFIG_BASE_DIR=$root/base"
        "ORC=$venv/bin/os-refresh-config" "RUN_PARTS=$venv/bin/dib-run-parts"
        "OAC=$fixtures/oac-sandbox" "REAL_OAC=$venv/bin/os-apply-config"
        "OCC=$venv/bin/os-collect-config"
        "TMPDIR=$tmp"
    )
    if [ -f "$dir/setup.sh" ]; then
        (cd "$root" && env -i "${env[@]}" bash -c 'set -e; source "$1"; source "$2"' setup \
            "$fixtures/lib.sh" "$dir/setup.sh") || { echo "$name: setup.sh failed" >&2; failed=1; return; }
    fi
    if [ -f "$dir/env" ]; then
        local line
        while IFS= read -r line || [ -n "$line" ]; do
            [ -n "$line" ] && env+=("$line")
        done < "$dir/env"
    fi
    local rc=0 t0 t1
    t0=$(date +%s.%N)
    (cd "$root" && env -i "${env[@]}" bash -c 'source "$1"; source "$2"' cmd \
        "$fixtures/lib.sh" "$dir/cmd") >"$out/raw.stdout" 2>"$out/raw.stderr" || rc=$?
    t1=$(date +%s.%N)
    unroot "$root" "$out/raw.stdout" "$out/stdout"
    unroot "$root" "$out/raw.stderr" "$out/stderr"
    echo "$rc" > "$out/exit"

    local kind prefix=""
    kind=$(head -n1 "$dir/upstream")
    case $kind in
        same) ;;
        differs:*) prefix=upstream. ;;
        *) echo "$name: bad upstream file: $kind" >&2; failed=1; return ;;
    esac
    local f note=""
    for f in stdout exit; do
        if [ "$check" = 1 ]; then
            if ! cmp -s "$out/$f" "$dir/$prefix$f"; then
                echo "$name: upstream $f differs from $prefix$f" >&2
                diff "$dir/$prefix$f" "$out/$f" | head -n 10 >&2 || true
                failed=1
            fi
        else
            cp "$out/$f" "$dir/$prefix$f"
        fi
    done
    # Information only: these describe the Project, upstream may differ.
    if [ "$kind" != same ] && cmp -s "$dir/stdout" "$out/stdout" 2>/dev/null && cmp -s "$dir/exit" "$out/exit" 2>/dev/null; then
        note+=" [stdout+exit as Project]"
    fi
    if [ -f "$dir/stderr-contains" ]; then
        while IFS= read -r line; do
            grep -qF -- "$line" "$out/stderr" || note+=" [upstream stderr lacks: $line]"
        done < "$dir/stderr-contains"
    fi
    if [ -f "$dir/stderr-empty" ] && [ -s "$out/stderr" ]; then note+=" [upstream stderr not empty]"; fi
    if [ -n "${REGEN_KEEP_STDERR:-}" ]; then cp "$out/stderr" "$REGEN_KEEP_STDERR/$name.stderr"; fi
    printf '%-45s %-8s exit %-3s %5.1fs%s\n' "$name" "${kind%%:*}" "$rc" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$note"
}

if [ $# -gt 0 ]; then
    for c in "$@"; do run_case "$fixtures/${c%/}"; done
else
    for d in "$fixtures"/*/; do
        [ -f "$d/cmd" ] && run_case "${d%/}"
    done
fi
exit "$failed"
