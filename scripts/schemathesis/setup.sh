#!/usr/bin/env bash
# Creates scripts/schemathesis/.venv with schemathesis (requirements.txt, pinned), for
# test/hostile/schemathesis.test.ts and `npm run fuzz`. Idempotent: does nothing when the venv
# already matches requirements.txt and the chosen interpreter; otherwise rebuilds it from scratch.
#
# Interpreter: $PERSEUS_PYTHON if set, else the first Python >= 3.10 among python3.13, python3.12,
# python3.11, python3 (Debian 12's python3 is 3.11). Needs only PyPI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
requirements="$here/requirements.txt"

usable() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' >/dev/null 2>&1; }

pick_python() {
  if [ -n "${PERSEUS_PYTHON:-}" ]; then
    usable "$PERSEUS_PYTHON" || { echo "schemathesis setup: PERSEUS_PYTHON=$PERSEUS_PYTHON is not a Python >= 3.10" >&2; exit 1; }
    command -v "$PERSEUS_PYTHON"; return
  fi
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3 python; do
    if usable "$candidate"; then command -v "$candidate"; return; fi
  done
  echo "schemathesis setup: no Python >= 3.10 found (set PERSEUS_PYTHON)" >&2
  exit 1
}

python="$(pick_python)"
stamp="$venv/.perseus-stamp"
wanted="$("$python" -c 'import sys; print(sys.version)' | head -1) $python $(sha256sum "$requirements" | cut -d' ' -f1)"

if [ -x "$venv/bin/st" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && "$venv/bin/st" --version >/dev/null 2>&1; then
  echo "schemathesis: $venv is up to date ($("$venv/bin/st" --version))"
  exit 0
fi

echo "schemathesis: creating $venv with $python"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet --no-input -r "$requirements"
"$venv/bin/st" --version
echo "$wanted" > "$stamp"
echo "schemathesis: ready"
