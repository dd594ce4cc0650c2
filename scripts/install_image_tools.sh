#!/usr/bin/env bash
# Installs what scripts/build-image needs, when missing, all from Debian:
#   debootstrap (the stand-in base), buildah (the build), podman + runc + slirp4netns (the
#   smoke run: runc because crun fails on this host's hybrid cgroups; slirp4netns to reach
#   the host's Postgres).
# Idempotent: does nothing (and no `apt-get update`) when all are present. Needs root.
set -euo pipefail
source "$(dirname "$0")/apt_install.sh"

apt_install_missing install_image_tools.sh \
  debootstrap:debootstrap buildah:buildah podman:podman runc:runc slirp4netns:slirp4netns
