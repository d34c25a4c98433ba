#!/usr/bin/env bash
# Install the servers the store tests start (test/support/services.ts):
#   - redis-server, from Debian's package (the system service is not left running: the tests
#     start their own servers on free ports);
#   - ferretdb v1 (MongoDB wire protocol on SQLite), built with Go from the Go module proxy.
#
# Idempotent. Run as root on Debian 12 (CI runs it before `npm test`):
#   sudo scripts/install-test-services.sh
#
# Environment:
#   FERRETDB_VERSION      default v1.24.2
#   FERRETDB_INSTALL_DIR  default /usr/local/bin (on PATH; test/support/services.ts also looks there)
#
# Why not `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`: a binary built that way
# panics at start ("Invalid build/version/version.txt file content"): the module does not ship
# build/version/version.txt. The script builds from a copy of the module with that file written.
set -euo pipefail

FERRETDB_VERSION="${FERRETDB_VERSION:-v1.24.2}"
FERRETDB_INSTALL_DIR="${FERRETDB_INSTALL_DIR:-/usr/local/bin}"

log() { printf '[install-test-services] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "run as root (sudo $0)" >&2
  exit 1
fi

# --- redis-server ------------------------------------------------------------------------------
if command -v redis-server >/dev/null 2>&1; then
  log "redis-server present: $(command -v redis-server) ($(redis-server --version | head -n1))"
else
  log "installing redis-server (apt)"
  # Keep the package's init script from starting the system service during the install, unless
  # the machine already has a policy of its own.
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    policy_created=1
  fi
  trap '[ "$policy_created" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends redis-server
  if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  trap - EXIT
  log "installed $(command -v redis-server) ($(redis-server --version | head -n1))"
fi
# Do not leave a system Redis running (no systemctl in containers: ignore what is missing).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now redis-server >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
  service redis-server stop >/dev/null 2>&1 || true
fi

# --- ferretdb ----------------------------------------------------------------------------------
target="$FERRETDB_INSTALL_DIR/ferretdb"
if [ -x "$target" ] && "$target" --version 2>/dev/null | grep -qx "version: $FERRETDB_VERSION"; then
  log "ferretdb $FERRETDB_VERSION present: $target"
else
  if ! command -v go >/dev/null 2>&1; then
    echo "go is required to build ferretdb (https://go.dev/doc/install); FerretDB $FERRETDB_VERSION needs a recent Go" >&2
    exit 1
  fi
  log "building ferretdb $FERRETDB_VERSION with $(go version)"
  workdir="$(mktemp -d)"
  trap 'rm -rf "$workdir"' EXIT
  # Download into the module cache, then build a writable copy (the main module, with its own
  # go.sum) with the version file it needs.
  moddir="$(cd "$workdir" && go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [ -z "$moddir" ] || [ ! -d "$moddir" ]; then
    echo "could not download github.com/FerretDB/FerretDB@$FERRETDB_VERSION" >&2
    exit 1
  fi
  cp -R "$moddir" "$workdir/src"
  chmod -R u+w "$workdir/src"
  printf '%s\n' "$FERRETDB_VERSION" > "$workdir/src/build/version/version.txt"
  mkdir -p "$FERRETDB_INSTALL_DIR"
  (cd "$workdir/src" && CGO_ENABLED=0 go build -trimpath -o "$workdir/ferretdb" ./cmd/ferretdb)
  install -m 0755 "$workdir/ferretdb" "$target"
  rm -rf "$workdir"
  trap - EXIT
  log "installed $target ($("$target" --version | head -n1))"
fi

log "done: redis-server at $(command -v redis-server), ferretdb at $target"
