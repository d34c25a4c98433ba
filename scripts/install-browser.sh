#!/usr/bin/env bash
# Installs the browser the end-to-end browser test (test/browser/journey.test.ts) drives:
# Debian's own Chromium at /usr/bin/chromium. Playwright's browser download is not used.
#
# Runs as root on Debian 12 (bookworm). Idempotent: when the chromium package is already installed
# and /usr/bin/chromium is executable, it does nothing (no apt-get update, no network).
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ "$(id -u)" -ne 0 ]; then
  echo "install-browser.sh: run as root (it uses apt-get)" >&2
  exit 1
fi

installed() {
  dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'install ok installed' && [ -x "$CHROMIUM" ]
}

if installed; then
  echo "== chromium already installed: $("$CHROMIUM" --version 2>/dev/null)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
# Recommends are kept: chromium-common recommends fonts-liberation, one of the fonts the
# screenshots are rendered with.
apt-get install -y chromium

if ! installed; then
  echo "install-browser.sh: chromium was installed but $CHROMIUM is missing or not executable" >&2
  exit 1
fi
echo "== chromium installed: $("$CHROMIUM" --version 2>/dev/null)"
