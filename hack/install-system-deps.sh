#!/usr/bin/env bash
# Installs the system packages the project needs when they are missing (Debian): redis-server.
set -euo pipefail
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  # The package starts a system-wide instance on 6379; the project starts its own and needs none.
  (systemctl disable --now redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true)
  pkill -f '^/usr/bin/redis-server 127.0.0.1:6379' >/dev/null 2>&1 || true
fi
