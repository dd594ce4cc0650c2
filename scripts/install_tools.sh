#!/usr/bin/env bash
# Installs the command-line tools the offline Kubernetes and alerting checks need, when
# they are missing (tests/integration/test_k8s.py, tests/integration/test_alert_rules.py):
#   promtool  - Debian package `prometheus` (`promtool check rules`, `promtool test rules`)
#   kubectl   - builds the kustomize overlays (`kubectl kustomize`). The machine image
#               ships it (kustomize v5); where it is missing, Debian's `kubernetes-client`
#               (kubectl 1.20, kustomize v2.0.3) is installed, which the overlays support.
# Idempotent: does nothing (and no `apt-get update`) when both are present. Needs root,
# as CI and the development machines run. Never starts the Prometheus server.
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install_tools.sh: ${need[*]} missing and not root; install them with apt-get" >&2
  exit 1
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

# Installing `prometheus` would start the server through invoke-rc.d unless policy-rc.d
# says no (exit 101). Put our own in place for the install, then restore what was there.
policy=/usr/sbin/policy-rc.d
backup=""
if [ -e "$policy" ]; then
  backup="$(mktemp)"
  cp -p "$policy" "$backup"
fi
restore_policy() {
  if [ -n "$backup" ]; then
    cp -p "$backup" "$policy"
    rm -f "$backup"
  else
    rm -f "$policy"
  fi
}
trap restore_policy EXIT
printf '#!/bin/sh\n# scripts/install_tools.sh: no service starts during this install.\nexit 101\n' >"$policy"
chmod 755 "$policy"

install() { apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
# Old package lists can name versions the mirror no longer has: refresh them once.
install || { apt-get update -qq && install; }

for tool in promtool kubectl; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "install_tools.sh: $tool still missing after installing ${need[*]}" >&2
    exit 1
  }
done
echo "install_tools.sh: installed ${need[*]}"
