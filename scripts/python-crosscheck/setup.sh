#!/usr/bin/env bash
# Creates scripts/python-crosscheck/.venv with IB1's reference Python libraries (requirements.txt),
# for the cross-check tests in test/provenance/. Idempotent: does nothing when the venv already
# matches requirements.txt and the chosen interpreter; otherwise rebuilds it from scratch.
#
# Interpreter: $PERSEUS_PYTHON if set, else Python 3.12 or 3.13 when one is installed (ib1-directory
# 0.9.2's command-line tool uses 3.12-only f-string syntax), else python3 (>= 3.10; the tests then
# use ib1-directory's certificate functions directly instead of its CLI).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
requirements="$here/requirements.txt"

usable() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' >/dev/null 2>&1; }

pick_python() {
  if [ -n "${PERSEUS_PYTHON:-}" ]; then
    usable "$PERSEUS_PYTHON" || { echo "setup.sh: PERSEUS_PYTHON=$PERSEUS_PYTHON is not a Python >= 3.10" >&2; exit 1; }
    command -v "$PERSEUS_PYTHON"; return
  fi
  local candidate version
  for candidate in python3.12 python3.13; do
    if usable "$candidate"; then command -v "$candidate"; return; fi
  done
  # pyenv installs other versions without putting them on PATH.
  if command -v pyenv >/dev/null 2>&1; then
    for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[23]\.[0-9]+$' | sort -V); do
      candidate="$(pyenv root)/versions/$version/bin/python3"
      if usable "$candidate"; then echo "$candidate"; return; fi
    done
  fi
  for candidate in python3 python; do
    if usable "$candidate"; then command -v "$candidate"; return; fi
  done
  echo "setup.sh: no Python >= 3.10 found (set PERSEUS_PYTHON)" >&2
  exit 1
}

python="$(pick_python)"
stamp="$venv/.perseus-stamp"
wanted="$("$python" -c 'import sys; print(sys.version)' | head -1) $python $(sha256sum "$requirements" | cut -d' ' -f1)"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && "$venv/bin/python" -c 'import ib1.provenance, ib1.directory.certificates' >/dev/null 2>&1; then
  echo "python-crosscheck: $venv is up to date"
  exit 0
fi

echo "python-crosscheck: creating $venv with $python"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet --no-input -r "$requirements"
"$venv/bin/python" -c 'import ib1.provenance, ib1.directory.certificates'
echo "$wanted" > "$stamp"
echo "python-crosscheck: ready ($("$venv/bin/python" --version))"
