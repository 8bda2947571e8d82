#!/usr/bin/env bash
# Records what upstream os-net-config 18.1.0 (pinned in scripts/peers/os-net-config.txt)
# prints with `--noop --detailed-exit-codes` for every fixture case, per provider (ifcfg,
# eni; a case's `providers` file narrows them):
#
#   expected/<provider>.noop     the `File:` blocks of upstream's stdout
#   expected/<provider>.rc       upstream's exit status
#   expected/<provider>/<path>   each file of the noop output on its own (path without the
#                                leading `/`)
#
# Cases with a `DEFECTS` file naming the provider (upstream wrong there, spec §5) and
# `invalid-*` cases get upstream's `.noop` and `.rc` under `upstream/` instead. The
# `expected/<provider>.noop` of a DEFECTS provider is written by hand (this script only
# splits it into `expected/<provider>/`); `invalid-*` cases carry our own error lines in
# `expected/netconfig.errors` (written by the Rust side). Upstream's messages are kept in
# `upstream/<provider>.log` for invalid cases and for every run whose exit status has a
# failure bit (anything but 0 and 2): stdout outside the file blocks, then stderr, with the
# log timestamps, traceback frames and machine paths normalised away.
#
# --check compares instead of writing and exits 1 on any difference.
#
# Each run happens in a private mount + network namespace (`unshare --mount --net`; set up by
# scripts/onc-sandbox.sh as the spec's §4 describes: overlays on /etc /var /usr/bin whose
# writes land in a tmpfs, a stub ovs-appctl, the host's network-scripts, /etc/network and
# /var/lib/os-net-config hidden, fake NICs on a tmpfs /sys/class/net from the case's `nics`
# file (`name=mac[=operstate]`, whitespace separated) or the default set below). The
# sandbox's temporary directories live in a private tmpfs inside a scratch directory that is
# removed on exit, so nothing is left on the host: no mounts, no files. `-m` is always
# given (the case's mapping.yaml, else /nonexistent) so a host mapping file is never read.
# A case's `args` file adds flags (e.g. --persist-mapping). Needs root.
#
#   crates/netconfig/tests/upstream/regen.sh [--check] [CASE...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
fixtures=$(cd "$here/../fixtures" && pwd)
default_nics="em1=52:54:00:00:00:01 em2=52:54:00:00:00:02 em3=52:54:00:00:00:03 em4=52:54:00:00:00:04 eth0=52:54:00:00:00:10 eth1=52:54:00:00:00:11 enp3s0f0=52:54:00:00:00:20 ib0=52:54:00:00:00:30"

[ "$(id -u)" = 0 ] || { echo "$0: needs root (unshare --mount --net)" >&2; exit 2; }

check=0
if [ "${1:-}" = --check ]; then check=1; shift; fi

source "$here/../../../../scripts/peers.sh"
venv=$(ensure_peer os-net-config)

scratch=$(mktemp -d "${TMPDIR:-/tmp}/onc-regen.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
trap 'exit 130' INT TERM
mkdir "$scratch/ns" "$scratch/out"

if [ $# -gt 0 ]; then
    cases=()
    for c in "$@"; do cases+=("$(basename "$c")"); done
else
    mapfile -t cases < <(cd "$fixtures" && for d in */; do [ -f "$d/config.yaml" ] && echo "${d%/}"; done | LC_ALL=C sort)
fi

# upstream_noop PROVIDER CONFIG MAPPING NICS [FLAG...]: upstream's stdout (stderr: its
# stderr); exit status = upstream's.
upstream_noop() {
    VENV=$venv NICS=$4 NSTMP=$scratch/ns SANDBOX=$repo/scripts/onc-sandbox.sh \
        unshare --mount --net --fork -- bash -c '
        set -e
        mount --make-rprivate /
        mount -t tmpfs tmpfs "$NSTMP"      # the sandbox mktemp lands here, not on the host
        export TMPDIR=$NSTMP
        source "$SANDBOX"
        onc_sandbox "$NICS"
        cd /
        set +e
        provider=$1 config=$2 mapping=$3
        shift 4
        "$VENV/bin/os-net-config" --noop --detailed-exit-codes -p "$provider" -c "$config" -m "$mapping" "$@"
        exit $?
    ' _ "$@"
}

# split_noop NOOP DIR: each `File: <path>` block of NOOP as DIR/<path> (the content between
# the blank line after `File:` and the `----` line; upstream prints it with print()).
split_noop() {
    local noop=$1 dir=$2 line path="" state=0 content="" first=1
    while IFS= read -r line; do
        case $state in
        0) if [[ $line == "File: /"* ]]; then path=${line#File: /}; state=1; fi ;;
        1) state=2; content=""; first=1 ;;          # the blank line after File:
        2) if [ "$line" = "----" ]; then
               if [[ $path == *..* || -z $path ]]; then echo "bad path in noop output: $path" >&2; return 1; fi
               mkdir -p "$dir/$(dirname "$path")"
               printf '%s' "$content" >"$dir/$path"
               state=0
           elif ((first)); then content=$line; first=0
           else content+=$'\n'$line
           fi ;;
        esac
    done <"$noop"
    [ "$state" = 0 ] || { echo "unterminated File block in $noop" >&2; return 1; }
}

# normalise_log: upstream's log lines without timestamps, traceback frames (stack lines and
# their source lines) or machine-specific paths.
normalise_log() {
    sed -E -e 's/^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} //' \
        -e "s#$venv#<venv>#g" -e "s#$fixtures#<fixtures>#g" |
        awk '/^  File "/{skip=1; next} skip && /^    /{next} {skip=0; print}'
}

# compare_or_write WRITTEN TARGET: in check mode report a difference, else install WRITTEN.
compare_or_write() {
    local got=$1 target=$2 label=$3
    if ((check)); then
        if [ ! -e "$got" ] && [ ! -e "$target" ]; then
            :   # neither side has it (e.g. no files to split out)
        elif [ -d "$got" ] || [ -d "$target" ]; then
            if ! diff -r "$got" "$target" >/dev/null 2>&1; then
                echo "$label: $(basename "$target")/ differs" >&2; status=1
            fi
        elif ! cmp -s "$got" "$target"; then
            echo "$label: $(basename "$target") differs" >&2; status=1
        fi
    else
        rm -rf "$target"
        if [ -e "$got" ]; then mkdir -p "$(dirname "$target")"; cp -r "$got" "$target"; fi
    fi
}

status=0
for case in "${cases[@]}"; do
    dir=$fixtures/$case
    [ -f "$dir/config.yaml" ] || { echo "$case: no config.yaml" >&2; exit 2; }
    nics=$default_nics
    [ -f "$dir/nics" ] && nics=$(tr '\n' ' ' <"$dir/nics")
    mapping=/nonexistent
    [ -f "$dir/mapping.yaml" ] && mapping=$dir/mapping.yaml
    args=()
    [ -f "$dir/args" ] && read -r -a args <"$dir/args"
    providers="ifcfg eni"
    [ -f "$dir/providers" ] && providers=$(cat "$dir/providers")
    for provider in $providers; do
        out=$scratch/out/$case.$provider
        rm -rf "$out"; mkdir -p "$out"
        set +e
        upstream_noop "$provider" "$dir/config.yaml" "$mapping" "$nics" "${args[@]}" \
            >"$out/stdout" 2>"$out/stderr"
        rc=$?
        set -e
        # Only the file blocks: upstream logs to stdout too.
        awk '/^File: /{p=1} p{print} /^----$/{p=0}' "$out/stdout" >"$out/noop"
        echo "$rc" >"$out/rc"
        where=expected
        defect=0
        if [[ $case == invalid-* ]]; then where=upstream; fi
        if [ -f "$dir/DEFECTS" ] && grep -q "^$provider:" "$dir/DEFECTS"; then where=upstream; defect=1; fi
        label="$case [$provider]"
        compare_or_write "$out/noop" "$dir/$where/$provider.noop" "$label"
        compare_or_write "$out/rc" "$dir/$where/$provider.rc" "$label"
        if [[ $case == invalid-* ]] || { [ "$rc" != 0 ] && [ "$rc" != 2 ]; }; then
            {
                awk '/^File: /{p=1} !p{print} /^----$/{p=0}' "$out/stdout"
                if [ -s "$out/stderr" ]; then echo "## stderr"; cat "$out/stderr"; fi
            } | normalise_log >"$out/log"
            compare_or_write "$out/log" "$dir/upstream/$provider.log" "$label"
        elif ((check == 0)); then
            rm -f "$dir/upstream/$provider.log"
        fi
        # expected/<provider>/: split from upstream's output, or (DEFECTS) from the
        # hand-written expected/<provider>.noop.
        if [[ $case != invalid-* ]]; then
            source_noop=$out/noop
            ((defect)) && source_noop=$dir/expected/$provider.noop
            if [ -f "$source_noop" ]; then
                split_noop "$source_noop" "$out/split"
                compare_or_write "$out/split" "$dir/expected/$provider" "$label"
            elif ((defect)); then
                echo "$label: DEFECTS, but no hand-written expected/$provider.noop" >&2; status=1
            fi
        fi
        [ -d "$dir/upstream" ] && rmdir --ignore-fail-on-non-empty "$dir/upstream"
        printf '%-44s %-6s exit %s%s\n' "$case" "$provider" "$rc" "$( ((defect)) && echo ' (DEFECTS: upstream/)')"
    done
done

# The environment the outputs were recorded in.
{
    echo "# Recorded by regen.sh; upstream peer environment."
    echo "## pip freeze --all"
    "$venv/bin/pip" freeze --all --disable-pip-version-check
    echo "## default NIC set (name=mac, all up)"
    echo "$default_nics"
    echo "## IPv6 sysctls of a fresh network namespace"
    unshare --net sysctl net.ipv6.conf.default.accept_ra net.ipv6.conf.default.disable_ipv6 2>&1
} >"$scratch/ENVIRONMENT"
compare_or_write "$scratch/ENVIRONMENT" "$here/ENVIRONMENT" "ENVIRONMENT"
exit $status
