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
source "$(dirname "$0")/apt_install.sh"

apt_install_missing install_tools.sh promtool:prometheus kubectl:kubernetes-client
