#!/usr/bin/env bash
# Builds a local stand-in for the Dockerfile's base image (python:<version>-slim-bookworm)
# and tags it with exactly that name, because no container registry can be reached here.
#
#   scripts/image-standin-base.sh IMAGE      e.g. python:3.12.8-slim-bookworm
#
# Like the official slim image: a Debian bookworm minbase with the libraries CPython links
# against, and a shared CPython 3.12 in /usr/local. The CPython is this machine's pyenv
# build (its patch release may differ from the tag's), so the stand-in proves the
# Dockerfile and the app, not the upstream image. Needs root, debootstrap and buildah.
#
# Cached twice: the committed image in buildah's storage (labelled with a key of this
# script, the tag and the CPython used), and the root filesystem tarball under
# /var/cache/coffeebuddy/image, so a wiped container storage re-imports in seconds.
# COFFEEBUDDY_IMAGE_REBUILD_BASE=1 rebuilds from debootstrap.
set -euo pipefail

image="${1:?usage: image-standin-base.sh IMAGE}"
cache_dir="${COFFEEBUDDY_IMAGE_CACHE:-/var/cache/coffeebuddy/image}"
# This machine's pyenv CPython 3.12 (the newest patch release it has), unless named.
python_bin="${COFFEEBUDDY_STANDIN_PYTHON:-}"
if [ -z "$python_bin" ]; then
  pyenv_root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
  python_bin="$(ls -d "$pyenv_root"/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V | tail -1 || true)"
fi
# The pip that the pinned CPython release's ensurepip bundles (3.12.8 ships pip 24.3.1):
# the Dockerfile's builder stage runs that pip in the real image.
pip_version="${COFFEEBUDDY_STANDIN_PIP:-24.3.1}"
# What the official slim image keeps besides the minbase (its `apt-get install` list and
# the run-time libraries of the extension modules).
libraries=(ca-certificates netbase tzdata libssl3 libffi8 libsqlite3-0 libbz2-1.0 liblzma5
  libreadline8 libncursesw6 libtinfo6 libuuid1 zlib1g libnsl2 libtirpc3 libcrypt1 libexpat1)

[ -n "$python_bin" ] && [ -x "$python_bin" ] \
  || { echo "image-standin-base: no CPython 3.12 build found (set COFFEEBUDDY_STANDIN_PYTHON)" >&2; exit 1; }
prefix="$("$python_bin" -c 'import sys; print(sys.prefix)')"
shared="$("$python_bin" -c 'import sysconfig; print(sysconfig.get_config_var("Py_ENABLE_SHARED"))')"
[ "$shared" = 1 ] || { echo "image-standin-base: $python_bin is not built with --enable-shared" >&2; exit 1; }
py_full="$("$python_bin" -c 'import platform; print(platform.python_version())')"

key="$( { cat "$0"; echo "$image $prefix $py_full $pip_version ${libraries[*]}"; } | sha256sum | cut -c1-16)"
label=coffeebuddy.standin.key

if [ "${COFFEEBUDDY_IMAGE_REBUILD_BASE:-0}" != 1 ] \
  && [ "$(buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$label\"}}" "$image" 2>/dev/null || true)" = "$key" ]; then
  echo "image-standin-base: $image is current (key $key)"
  exit 0
fi

mkdir -p "$cache_dir"
tarball="$cache_dir/rootfs-$key.tar"
work=""
ctr=""
cleanup() {
  [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1 || true
  [ -n "$work" ] && rm -rf "$work"
}
trap cleanup EXIT

# The first `deb` URI of this machine's sources for bookworm itself (not -security or
# -updates): the mirror it already trusts and can reach.
mirror() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -e "$file" ] || continue
    awk -v RS= '/(^|\n)Types:[^\n]*deb([ \n]|$)/ && /(^|\n)Suites:[^\n]*bookworm([ \n]|$)/ {
      if (match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/)) {
        s = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[ \t]*/, "", s); print s; exit
      }
    }' "$file"
  done
  { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } \
    | awk '$1 == "deb" && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }'
}

if [ ! -s "$tarball" ] || [ "${COFFEEBUDDY_IMAGE_REBUILD_BASE:-0}" = 1 ]; then
  url="$(mirror | head -1 || true)"
  [ -n "$url" ] || { echo "image-standin-base: no bookworm mirror in the apt sources" >&2; exit 1; }
  work="$(mktemp -d /var/tmp/coffeebuddy-standin.XXXXXX)"
  root="$work/rootfs"
  echo "image-standin-base: debootstrap bookworm minbase from $url"
  includes="$(IFS=,; echo "${libraries[*]}")"
  debootstrap --variant=minbase --include="$includes" bookworm "$root" "$url" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }

  # CPython in the official layout under /usr/local.
  local_dir="$root/usr/local"
  mkdir -p "$local_dir/bin" "$local_dir/lib" "$local_dir/include"
  cp -a "$prefix/bin/python3.12" "$local_dir/bin/python3.12"
  cp -a "$prefix"/lib/libpython3*.so* "$local_dir/lib/"
  cp -a "$prefix/include/python3.12" "$local_dir/include/"
  cp -a "$prefix/lib/pkgconfig" "$local_dir/lib/"
  tar -C "$prefix/lib" \
    --exclude='python3.12/test' --exclude='python3.12/*/test' --exclude='python3.12/*/tests' \
    --exclude='idle_test' --exclude='__pycache__' --exclude='*.pyc' \
    --exclude='python3.12/site-packages/*' --exclude='libpython3.12.a' \
    -cf - python3.12 | tar -C "$local_dir/lib" -xf -
  # The official image links with --strip-all; pyenv keeps debug info (a third of the size).
  if command -v strip >/dev/null 2>&1; then
    find "$local_dir" -type f \( -name '*.so*' -o -name python3.12 \) -exec strip --strip-unneeded {} +
  fi
  for link in python3 python; do ln -s python3.12 "$local_dir/bin/$link"; done
  # The build's prefix is baked into sysconfig (used by venv, pip and compilers).
  { grep -rlI --null -F "$prefix" "$local_dir/lib/python3.12" "$local_dir/lib/pkgconfig" || true; } \
    | xargs -0 -r sed -i "s#$prefix#/usr/local#g"

  # ensurepip, then the pinned release's pip from a wheel fetched on the host (the chroot
  # has no network set up).
  mkdir -p "$root/tmp/wheels"
  "$python_bin" -m pip download --quiet --no-deps --only-binary=:all: "pip==$pip_version" \
    -d "$root/tmp/wheels"
  chroot "$root" /sbin/ldconfig
  chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 PIP_ROOT_USER_ACTION=ignore \
    sh -c 'python3 -m ensurepip --default-pip >/dev/null 2>&1 \
      && python3 -m pip install --quiet --no-index --no-compile --disable-pip-version-check /tmp/wheels/pip-*.whl \
      && python3 -c "import ssl, ctypes, sqlite3, bz2, lzma, uuid, zlib, readline, curses, pyexpat" \
      && python3 -m pip --version'
  chroot "$root" sh -c 'cd /usr/local/bin && for f in pip3.12 pip3 pip; do [ -e "$f" ]; done'
  rm -rf "$root/tmp/wheels" "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log "$root/root/.cache"
  find "$root/usr/local" -depth -name __pycache__ -type d -exec rm -rf {} +
  tar -C "$root" --numeric-owner -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  # Older keys' tarballs are dead weight.
  find "$cache_dir" -maxdepth 1 -name 'rootfs-*.tar' ! -name "rootfs-$key.tar" -delete
fi

# The image this replaces, removed once nothing uses it (old stand-ins are dead weight).
previous="$(buildah images --quiet --noheading "$image" 2>/dev/null | head -1 || true)"
ctr="$(buildah from scratch)"
buildah add --quiet "$ctr" "$tarball" / >/dev/null
buildah config \
  --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --env PYTHON_VERSION="$py_full" \
  --cmd python3 --label "$label=$key" "$ctr"
buildah commit --quiet --rm "$ctr" "$image" >/dev/null
ctr=""
[ -n "$previous" ] && buildah rmi "$previous" >/dev/null 2>&1 || true
echo "image-standin-base: built $image (CPython $py_full, pip $pip_version, key $key)"
