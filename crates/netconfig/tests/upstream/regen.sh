#!/usr/bin/env bash
# Records what upstream os-net-config 18.1.0 (pinned in scripts/peers/os-net-config.txt)
# prints with `--noop --detailed-exit-codes` for every fixture case, per provider (ifcfg,
# eni; a case's `providers` file narrows them): `expected/<provider>.noop` (the `File:`
# blocks) and `expected/<provider>.rc`. Cases with a `DEFECTS` file (upstream wrong there,
# spec §5) get `upstream/<provider>.noop` and `.rc` instead; their `expected/` is written by
# hand (reviewed output of the fixture test with NETCONFIG_BLESS=1). `invalid-*` cases get
# upstream's output under `upstream/` too: ours is a list of errors. --check compares
# instead of writing and exits 1 on any difference.
#
# Each run happens in a private mount + network namespace (scripts/onc-sandbox.sh: nothing on
# the host is read or written) with fake NICs from the case's `nics` file
# (`name=mac[=operstate] ...`) or the default set below. Needs root.
#
#   crates/netconfig/tests/upstream/regen.sh [--check] [CASE...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
fixtures=$here/../fixtures
default_nics="em1=52:54:00:00:00:01 em2=52:54:00:00:00:02 em3=52:54:00:00:00:03 em4=52:54:00:00:00:04 eth0=52:54:00:00:00:10 eth1=52:54:00:00:00:11 enp3s0f0=52:54:00:00:00:20 ib0=52:54:00:00:00:30"

source "$repo/scripts/peers.sh"
venv=$(ensure_peer os-net-config)

check=0
if [ "${1:-}" = --check ]; then check=1; shift; fi
if [ $# -gt 0 ]; then
    cases=("$@")
else
    mapfile -t cases < <(cd "$fixtures" && for d in */; do [ -f "$d/config.yaml" ] && echo "${d%/}"; done | LC_ALL=C sort)
fi

# upstream_noop PROVIDER CONFIG MAPPING NICS [FLAG...]: upstream's stdout; exit status =
# upstream's.
upstream_noop() {
    VENV=$venv NICS=$4 SANDBOX=$repo/scripts/onc-sandbox.sh unshare --mount --net --fork -- bash -c '
        set -e
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

status=0
for case in "${cases[@]}"; do
    dir=$fixtures/$case
    nics=$default_nics
    [ -f "$dir/nics" ] && nics=$(tr '\n' ' ' <"$dir/nics")
    mapping=/nonexistent
    [ -f "$dir/mapping.yaml" ] && mapping=$dir/mapping.yaml
    args=()
    [ -f "$dir/args" ] && read -r -a args <"$dir/args"
    providers="ifcfg eni"
    [ -f "$dir/providers" ] && providers=$(cat "$dir/providers")
    for provider in $providers; do
        set +e
        raw=$(upstream_noop "$provider" "$dir/config.yaml" "$mapping" "$nics" "${args[@]}" 2>/dev/null)
        rc=$?
        set -e
        # Only the file blocks: upstream logs to stdout too.
        noop=$(awk '/^File: /{p=1} p{print} /^----$/{p=0}' <<<"$raw")
        [ -n "$noop" ] && noop+=$'\n'
        # Invalid cases document what upstream does; ours are in expected/netconfig.errors.
        where=expected
        if [[ $case == invalid-* ]]; then where=upstream; fi
        if [ -f "$dir/DEFECTS" ] && grep -q "^$provider:" "$dir/DEFECTS"; then where=upstream; fi
        if ((check)); then
            if ! cmp -s <(printf '%s' "$noop") "$dir/$where/$provider.noop"; then
                echo "$case [$provider]: noop output differs" >&2; status=1
            fi
            if [ "$rc" != "$(cat "$dir/$where/$provider.rc" 2>/dev/null)" ]; then
                echo "$case [$provider]: exit $rc, recorded $(cat "$dir/$where/$provider.rc" 2>/dev/null)" >&2; status=1
            fi
        else
            mkdir -p "$dir/$where"
            printf '%s' "$noop" >"$dir/$where/$provider.noop"
            echo "$rc" >"$dir/$where/$provider.rc"
        fi
        printf '%-44s %-6s exit %s%s\n' "$case" "$provider" "$rc" "$([ $where = upstream ] && echo ' (DEFECTS: upstream/)')"
    done
done
if ((check == 0)); then
    {
        echo "# Recorded by regen.sh; upstream peer environment."
        echo "## pip freeze"
        "$venv/bin/pip" freeze --disable-pip-version-check
        echo "## default NIC set (name=mac, all up)"
        echo "$default_nics"
        echo "## IPv6 sysctls of a fresh network namespace"
        unshare --net sysctl net.ipv6.conf.default.accept_ra net.ipv6.conf.default.disable_ipv6 2>&1
    } >"$here/ENVIRONMENT"
fi
exit $status
