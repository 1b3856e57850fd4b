#!/usr/bin/env bash
# Builds promtool (Prometheus' rule checker) from the Go module proxy into the same cache as
# hack/build-k8s-tools.sh, keyed by its version, skipping it when present. Service-discovery plugins are left out
# (-tags remove_all_sd): `promtool check rules` needs none of them, and they are most of the build.
# Prints the binary's path; the full build log is printed on failure.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC1091
. "$here/versions.env"
cache_root=${REDISDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/redisdb-operator}
# BUILD_RECIPE: bump when the build itself changes (flags, tags, stamping) so the cached binary is rebuilt.
BUILD_RECIPE=1
bin_dir="$cache_root/bin/promtool-$PROMETHEUS_VERSION-r$BUILD_RECIPE"
if [ "${1:-}" = "--print-path" ]; then echo "$bin_dir/promtool"; exit 0; fi
mkdir -p "$bin_dir" "$cache_root/build"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

# v3.16.0 -> module version v0.316.0 (Prometheus tags its Go module v0.<major><minor 2 digits>.<patch>).
version=${PROMETHEUS_VERSION#v}
major=${version%%.*}; rest=${version#*.}; minor=${rest%%.*}; patch=${rest#*.}
module_version=$(printf 'v0.%d%02d.%d' "$major" "$minor" "$patch")

if ! command -v go >/dev/null 2>&1; then
  echo "Go is not installed (needed once, to build the pinned binaries): see docs/install.md, 'A fresh Debian machine'" >&2
  exit 1
fi
exec 9>"$cache_root/build/.promtool.lock"
flock 9
if [ ! -x "$bin_dir/promtool" ]; then
  log="$cache_root/build/last-promtool-build.log"
  : >"$log"
  echo "$(date -u +%FT%TZ) building promtool $PROMETHEUS_VERSION ($module_version)" >&2
  mod="$cache_root/build/prometheus-$PROMETHEUS_VERSION"
  mkdir -p "$mod"
  (
    cd "$mod"
    if [ ! -f go.mod ]; then
      go mod init example.invalid/promtool
      go mod edit -require="github.com/prometheus/prometheus@$module_version"
    fi
    stamp="-X github.com/prometheus/common/version.Version=$version"
    stamp="$stamp -X github.com/prometheus/common/version.Branch=release-$major.$minor"
    go build -trimpath -tags remove_all_sd -ldflags "-s -w $stamp" \
      -o "$bin_dir/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool &&
      mv "$bin_dir/promtool.tmp" "$bin_dir/promtool"
  ) >>"$log" 2>&1 || { echo "build of promtool failed; full log:" >&2; cat "$log" >&2; exit 1; }
fi
echo "$bin_dir/promtool"
