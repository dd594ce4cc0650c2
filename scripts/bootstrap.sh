# Sourced by scripts/run and scripts/test: a Python 3.12 venv in .venv with the pinned packages.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
find_python() {
  # A pyenv shim can exist on PATH and still refuse to run, so each candidate must run.
  for candidate in "${PYTHON:-}" python3.12 /root/.pyenv/versions/3.12.*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12 python3; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
      echo "$candidate"; return 0
    fi
  done
  echo "coffeebuddy: Python 3.12 not found; set PYTHON=/path/to/python3.12" >&2
  return 1
}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
  rm -rf .venv
  "$(find_python)" -m venv .venv
fi
# Reinstall only when the requirement files changed since the last install.
stamp=".venv/.requirements-$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  rm -f .venv/.requirements-* && touch "$stamp"
fi
