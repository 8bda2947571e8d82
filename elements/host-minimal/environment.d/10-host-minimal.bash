export DISTRO_NAME=host-minimal
export DIB_RELEASE=${DIB_RELEASE:-1}
