#!/usr/bin/env bash
# Install the servers the store tests start (test/support/services.ts):
#   - redis-server, from Debian's package (the system service is not left running: the tests
#     start their own servers on free ports);
#   - ferretdb v1 (MongoDB wire protocol on SQLite), built with Go from the Go module proxy;
#   - PostgreSQL, from Debian's package: FerretDB's other backend, which the benchmarks use as
#     their MongoDB stand-in (test/adapters/mongo-on-postgres.test.ts checks it). The package's
#     own cluster is not left running: the tests and benchmarks start their own servers.
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

# apt-get install of Debian packages whose init scripts must not start their system service
# during the install (unless the machine already has a policy of its own).
apt_install_without_starting() {
  local policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    policy_created=1
  fi
  trap '[ "$policy_created" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "$@"
  if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  trap - EXIT
}

# Do not leave a system service running: the tests start their own servers (no systemctl in
# containers: ignore what is missing).
stop_system_service() {
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now "$1" >/dev/null 2>&1 || true
  elif command -v service >/dev/null 2>&1; then
    service "$1" stop >/dev/null 2>&1 || true
  fi
}

# --- redis-server ------------------------------------------------------------------------------
if command -v redis-server >/dev/null 2>&1; then
  log "redis-server present: $(command -v redis-server) ($(redis-server --version | head -n1))"
else
  log "installing redis-server (apt)"
  apt_install_without_starting redis-server
  log "installed $(command -v redis-server) ($(redis-server --version | head -n1))"
fi
stop_system_service redis-server

# --- postgresql --------------------------------------------------------------------------------
if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "postgresql present: $(ls -d /usr/lib/postgresql/*/bin | tail -n1)"
else
  log "installing postgresql (apt)"
  apt_install_without_starting postgresql
  log "installed $(ls -d /usr/lib/postgresql/*/bin | tail -n1)"
fi
stop_system_service postgresql

# --- ferretdb ----------------------------------------------------------------------------------
target="$FERRETDB_INSTALL_DIR/ferretdb"
# The version is read whole before grep looks at it: `--version | grep -q` under pipefail failed
# whenever grep exited before ferretdb had written its last line (SIGPIPE), and the script then
# rebuilt a binary that was already there.
installed_version="$([ -x "$target" ] && "$target" --version 2>/dev/null || true)"
if grep -qx "version: $FERRETDB_VERSION" <<<"$installed_version"; then
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

log "done: redis-server at $(command -v redis-server), postgresql in $(ls -d /usr/lib/postgresql/*/bin | tail -n1), ferretdb at $target"
