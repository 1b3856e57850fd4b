#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl, etcd and helm from the Go module proxy
# into a cache directory keyed by their versions (outside the work tree), skipping what is present.
# Quiet on success (one line per binary); the full build log is printed on failure.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC1091
. "$here/versions.env"
cache_root=${REDISDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/redisdb-operator}
# BUILD_RECIPE: bump when the build itself changes (flags, stamping) so cached binaries are rebuilt.
BUILD_RECIPE=2
bin_dir="$cache_root/bin/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION-r$BUILD_RECIPE"
mkdir -p "$bin_dir" "$cache_root/build"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

if [ "${1:-}" = "--print-bin-dir" ]; then echo "$bin_dir"; exit 0; fi

# One build at a time per cache: a second caller (CI and a developer, two worktrees) waits for the first and
# then finds the binaries present, instead of clobbering the shared log and the *.tmp outputs.
if ! command -v go >/dev/null 2>&1; then
  echo "Go is not installed (needed once, to build the pinned binaries): see docs/install.md, 'A fresh Debian machine'" >&2
  exit 1
fi
exec 9>"$cache_root/build/.lock"
flock 9

log="$cache_root/build/last-build.log"
fail() { echo "build of $1 failed; full log:" >&2; cat "$log" >&2; exit 1; }

kube_minor=${KUBERNETES_VERSION#v1.}; kube_minor=${kube_minor%%.*}
staging="v0.${KUBERNETES_VERSION#v1.}"

build_kubernetes() {
  local mod="$cache_root/build/k8s-$KUBERNETES_VERSION"
  mkdir -p "$mod"
  (
    cd "$mod"
    if [ ! -f go.mod ]; then
      go mod init example.invalid/k8s-tools
      upstream_gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
        python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
      go_line=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$upstream_gomod" | head -n1)
      godebug_line=$(sed -n 's/^godebug \(.*\)$/\1/p' "$upstream_gomod" | head -n1)
      go mod edit -go="$go_line"
      [ -n "$godebug_line" ] && go mod edit -godebug="$godebug_line"
      sed -n 's|^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*|\1|p' "$upstream_gomod" |
        while read -r m; do go mod edit -replace="$m=$m@$staging"; done
      go mod edit -require="k8s.io/kubernetes@$KUBERNETES_VERSION"
    fi
    go mod download k8s.io/kubernetes
    ldflags="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags="$ldflags -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$kube_minor -X $p.gitTreeState=clean"
    done
    for cmd in kube-apiserver kube-controller-manager kubectl; do
      [ -x "$bin_dir/$cmd" ] && continue
      echo "$(date -u +%FT%TZ) building $cmd $KUBERNETES_VERSION" >&2
      go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldflags" \
        -o "$bin_dir/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" && mv "$bin_dir/$cmd.tmp" "$bin_dir/$cmd"
    done
  ) >>"$log" 2>&1 || fail kubernetes
}

build_etcd() {
  [ -x "$bin_dir/etcd" ] && return 0
  echo "$(date -u +%FT%TZ) building etcd $ETCD_VERSION" >&2
  local mod="$cache_root/build/etcd-$ETCD_VERSION"
  mkdir -p "$mod"
  (
    cd "$mod"
    [ -f go.mod ] || { go mod init example.invalid/etcd-tools; go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"; }
    go build -trimpath -ldflags "-s -w" -o "$bin_dir/etcd.tmp" go.etcd.io/etcd/server/v3 &&
      mv "$bin_dir/etcd.tmp" "$bin_dir/etcd"
  ) >>"$log" 2>&1 || fail etcd
}

build_helm() {
  [ -x "$bin_dir/helm" ] && return 0
  echo "$(date -u +%FT%TZ) building helm $HELM_VERSION" >&2
  local major=${HELM_VERSION%%.*}
  local mod="$cache_root/build/helm-$HELM_VERSION"
  mkdir -p "$mod"
  (
    cd "$mod"
    [ -f go.mod ] || { go mod init example.invalid/helm-tools; go mod edit -require="helm.sh/helm/$major@$HELM_VERSION"; }
    # Stamp the Kubernetes version helm assumes offline (`helm template`, `helm lint`): the pinned one, not 1.20.
    local k8s_minor=${KUBERNETES_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
    local stamp="-X helm.sh/helm/$major/internal/version.version=$HELM_VERSION"
    for p in pkg/chartutil pkg/lint/rules; do
      stamp="$stamp -X helm.sh/helm/$major/$p.k8sVersionMajor=1 -X helm.sh/helm/$major/$p.k8sVersionMinor=$k8s_minor"
    done
    go build -trimpath -ldflags "-s -w $stamp" \
      -o "$bin_dir/helm.tmp" "helm.sh/helm/$major/cmd/helm" && mv "$bin_dir/helm.tmp" "$bin_dir/helm"
  ) >>"$log" 2>&1 || fail helm
}

missing=0
for b in kube-apiserver kube-controller-manager kubectl etcd helm; do [ -x "$bin_dir/$b" ] || missing=1; done
if [ "$missing" = 1 ]; then
  : >"$log"
  build_etcd
  build_helm
  build_kubernetes
  echo "$(date -u +%FT%TZ) built everything in $bin_dir" >>"$log"
fi
echo "$bin_dir"
