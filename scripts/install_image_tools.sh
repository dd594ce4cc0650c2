#!/usr/bin/env bash
# Installs what scripts/build-image needs, when missing, all from Debian:
#   debootstrap (the stand-in base), buildah (the build), podman + runc + slirp4netns (the
#   smoke run: runc because crun fails on this host's hybrid cgroups; slirp4netns to reach
#   the host's Postgres).
# Idempotent: does nothing (and no `apt-get update`) when all are present. Needs root.
set -euo pipefail

need=()
for tool in debootstrap buildah podman runc slirp4netns; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install_image_tools.sh: ${need[*]} missing and not root; install them with apt-get" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# The package list is read only when apt does not know a package yet.
for package in "${need[@]}"; do
  if ! apt-cache show "$package" >/dev/null 2>&1; then
    apt-get update -qq
    break
  fi
done

install() { apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
# Old package lists can name versions the mirror no longer has: refresh them once.
install || { apt-get update -qq && install; }

for tool in "${need[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "install_image_tools.sh: $tool still missing after installing ${need[*]}" >&2
    exit 1
  }
done
echo "install_image_tools.sh: installed ${need[*]}"
