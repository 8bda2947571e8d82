export DISTRO_NAME=debian
export DIB_RELEASE=${DIB_RELEASE:-bookworm}
export DIB_INIT_SYSTEM=systemd
