# Sourced inside a fresh `unshare --mount --net --fork` shell: turns it into the sandbox the
# netconfig spec's reference recipe describes for running upstream os-net-config, so that
# nothing on the host is read or written: overlays on /etc /var /usr/bin (writes land in a
# tmpfs), a stub ovs-appctl, the host's network-scripts hidden, and fake NICs on a tmpfs
# /sys/class/net.
#
#   onc_sandbox "name=mac[=operstate] ..."
onc_sandbox() {
    local nics=$1 t d k s n mac st
    mount --make-rprivate /
    # Scratch space on a tmpfs over /mnt, private to this namespace: nothing is created on
    # the host, not even an empty directory.
    mount -t tmpfs tmpfs /mnt
    t=/mnt
    for d in /etc /var /usr/bin; do
        k=$t/${d##*/}
        mkdir -p "$k/u" "$k/w"
        mount -t overlay overlay -o "lowerdir=$d,upperdir=$k/u,workdir=$k/w" "$d"
    done
    printf '#!/bin/sh\nexit 0\n' >/usr/bin/ovs-appctl
    chmod +x /usr/bin/ovs-appctl
    for d in /etc/sysconfig/network-scripts /etc/network /var/lib/os-net-config; do
        if [ -d "$d" ]; then mount -t tmpfs tmpfs "$d"; fi
    done
    mount -t tmpfs tmpfs /sys/class/net
    for s in $nics; do
        IFS="=" read -r n mac st <<<"$s"
        mkdir -p "/sys/class/net/$n/device"
        echo "$mac" >"/sys/class/net/$n/address"
        echo "${st:-up}" >"/sys/class/net/$n/operstate"
    done
}
