#!/usr/bin/env bash
# Side-by-side timing of `os-net-config --noop -p ifcfg`, ours (release build) against
# upstream 18.1.0, on one realistic configuration (a bond of two NICs in an OVS bridge with
# three VLANs, a provisioning interface, routes, rules and a route table). Both run inside
# one sandbox namespace set up once (scripts/onc-sandbox.sh: fake NICs, nothing on the host
# read or written), interleaved ROUNDS times; medians and the ratio are printed.
#
#   scripts/bench-netconfig.sh [ROUNDS]     (default 11; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-11}

source scripts/peers.sh
upstream=$(ensure_peer os-net-config)
cargo build --release --quiet --example os-net-config
ours=$PWD/target/release/examples/os-net-config

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-onc.XXXXXX")
trap 'rm -rf "$work"' EXIT
cat >"$work/config.yaml" <<'EOF'
network_config:
  - type: route_table
    name: custom
    table_id: 200
  - type: interface
    name: nic1
    use_dhcp: false
    addresses:
      - ip_netmask: 192.0.2.10/24
    routes:
      - default: true
        next_hop: 192.0.2.1
    rules:
      - rule: "iif nic1 table 200"
        comment: "provisioning replies"
    dns_servers: [192.0.2.53, 192.0.2.54]
    domain: example.com
  - type: ovs_bridge
    name: br-ex
    use_dhcp: false
    addresses:
      - ip_netmask: 198.51.100.10/24
    routes:
      - ip_netmask: 203.0.113.0/24
        next_hop: 198.51.100.1
        table: custom
    members:
      - type: ovs_bond
        name: bond1
        ovs_options: "bond_mode=active-backup"
        members:
          - type: interface
            name: nic2
            primary: true
          - type: interface
            name: nic3
      - type: vlan
        vlan_id: 20
        addresses:
          - ip_netmask: 172.16.20.10/24
      - type: vlan
        vlan_id: 30
        addresses:
          - ip_netmask: 172.16.30.10/24
      - type: vlan
        vlan_id: 40
        mtu: 9000
        addresses:
          - ip_netmask: "2001:db8:40::10/64"
EOF

export UPSTREAM=$upstream/bin/os-net-config OURS=$ours WORK=$work ROUNDS=$rounds
unshare --mount --net --fork -- bash -c '
    set -euo pipefail
    source scripts/onc-sandbox.sh
    onc_sandbox "em1=52:54:00:00:00:01 em2=52:54:00:00:00:02 em3=52:54:00:00:00:03 em4=52:54:00:00:00:04"
    source scripts/bench-lib.sh
    for ((r = 0; r < ROUNDS; r++)); do
        measure ours "$OURS" --noop -p ifcfg -c "$WORK/config.yaml" -m /nonexistent
        measure upstream "$UPSTREAM" --noop -p ifcfg -c "$WORK/config.yaml" -m /nonexistent
    done
    "$OURS" --noop -p ifcfg -c "$WORK/config.yaml" -m /nonexistent | grep -c "^File: " | sed "s/^/files rendered: /"
    o=$(median "${samples[ours]}"); u=$(median "${samples[upstream]}")
    echo "os-net-config --noop -p ifcfg, median of $ROUNDS interleaved runs on $(nproc) cores:"
    awk -v o="$o" -v u="$u" "BEGIN { printf \"  ours %8.4f s   upstream %8.4f s   %6.1fx faster\\n\", o, u, u / o }"
'
