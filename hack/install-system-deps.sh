#!/usr/bin/env bash
# Installs the system packages the project needs when they are missing (Debian): redis-server (the local
# provider's databases) and shellcheck (a unit test checks hack/e2e-kind.sh with it).
# As root it runs apt-get directly; as another user through sudo (non-interactive), and without sudo it prints the
# one command to run as root instead of failing inside apt-get.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      as_root=(sudo -n --preserve-env=DEBIAN_FRONTEND)
    else
      echo "${missing[*]} missing and installing needs root: run" >&2
      echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}   (or as root: apt-get install ...)" >&2
      echo "then run make again (docs/install.md, 'A fresh Debian machine')." >&2
      exit 1
    fi
  fi
  "${as_root[@]}" apt-get update -qq >/dev/null
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" redis-server "* ]]; then
    # The package starts a system-wide instance on 6379; the project starts its own and needs none.
    ("${as_root[@]}" systemctl disable --now redis-server >/dev/null 2>&1 ||
      "${as_root[@]}" service redis-server stop >/dev/null 2>&1 || true)
    "${as_root[@]}" pkill -f '^/usr/bin/redis-server 127.0.0.1:6379' >/dev/null 2>&1 || true
  fi
fi
