# Sourced by scripts/install_tools.sh and scripts/install_image_tools.sh: installs from
# Debian the package of each tool that is missing from PATH.
#
#   apt_install_missing WHO TOOL:PACKAGE...
#
# Idempotent: does nothing (and no `apt-get update`) when every tool is present. Needs root,
# as CI and the development machines run. WHO names the calling script in its messages.

apt_install_missing() {
  local who=$1 pair package tool
  shift
  local tools=() need=()
  for pair in "$@"; do
    tools+=("${pair%%:*}")
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
  done
  if [ "${#need[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "$who: ${need[*]} missing and not root; install them with apt-get" >&2
    return 1
  fi

  export DEBIAN_FRONTEND=noninteractive
  # The package list is read only when apt does not know a package yet (a fresh image has
  # no lists, or old ones).
  for package in "${need[@]}"; do
    if ! apt-cache show "$package" >/dev/null 2>&1; then
      apt-get update -qq
      break
    fi
  done

  _apt_block_services
  _apt_get_install() { apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
  # Old package lists can name versions the mirror no longer has: refresh them once.
  _apt_get_install "${need[@]}" || { apt-get update -qq && _apt_get_install "${need[@]}"; }

  for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "$who: $tool still missing after installing ${need[*]}" >&2
      return 1
    }
  done
  echo "$who: installed ${need[*]}"
}

# Installing a package with a service (`prometheus`) would start it through invoke-rc.d
# unless policy-rc.d says no (exit 101). Put our own in place for the install, then restore
# what was there when the calling script exits.
_apt_block_services() {
  _apt_policy=/usr/sbin/policy-rc.d
  _apt_policy_backup=""
  if [ -e "$_apt_policy" ]; then
    _apt_policy_backup="$(mktemp)"
    cp -p "$_apt_policy" "$_apt_policy_backup"
  fi
  trap _apt_restore_services EXIT
  printf '#!/bin/sh\n# scripts/apt_install.sh: no service starts during this install.\nexit 101\n' \
    >"$_apt_policy"
  chmod 755 "$_apt_policy"
}

_apt_restore_services() {
  if [ -n "$_apt_policy_backup" ]; then
    cp -p "$_apt_policy_backup" "$_apt_policy"
    rm -f "$_apt_policy_backup"
  else
    rm -f "$_apt_policy"
  fi
}
