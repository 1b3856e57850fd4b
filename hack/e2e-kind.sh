#!/usr/bin/env bash
# End-to-end on kind with the real image (needs Docker and kind; NOT runnable on machines without a Docker
# engine, such as the development VM, where tests/e2e runs the operator as a process against a local control plane).
#
#   make e2e-kind            # create cluster, build + load image, helm install, run the e2e suite, delete cluster
#   KEEP_CLUSTER=1 make e2e-kind
#
# Steps: kind create cluster -> docker build -> kind load docker-image -> helm install (chart from this repo, the
# operator running in a pod under its ServiceAccount, webhook through its Service) -> wait for the Deployment ->
# helm upgrade -> uninstall -> pytest tests/e2e against that cluster (REDISDB_KUBECONFIG makes the harness reuse
# it instead of starting a local control plane).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${KIND_CLUSTER:-redisdb-e2e}"
IMAGE="${IMAGE:-redisdb-operator:e2e}"
NAMESPACE="${NAMESPACE:-redisdb-system}"
# shellcheck disable=SC1091
source "$ROOT/versions.env"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:${KUBERNETES_VERSION}}"

for tool in docker kind helm kubectl; do
  command -v "$tool" >/dev/null || { echo "e2e-kind: '$tool' not found; this path needs Docker + kind" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "e2e-kind: no Docker engine reachable" >&2; exit 2; }

KUBECONFIG_FILE="$(mktemp -t kind-kubeconfig.XXXXXX)"
cleanup() {
  if [[ -z "${KEEP_CLUSTER:-}" ]]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
  rm -f "$KUBECONFIG_FILE"
}
trap cleanup EXIT

kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --kubeconfig "$KUBECONFIG_FILE" --wait 120s
export KUBECONFIG="$KUBECONFIG_FILE"

docker build -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

helm install redisdb-operator "$ROOT/charts/redisdb-operator" \
  --namespace "$NAMESPACE" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --wait --timeout 180s
kubectl -n "$NAMESPACE" rollout status deployment/redisdb-operator --timeout=120s
# The in-cluster webhook is reachable through its Service once the operator wrote the CA into caBundle.
kubectl get validatingwebhookconfiguration redisdb-operator -o jsonpath='{.webhooks[0].clientConfig.caBundle}' | grep -q .

helm upgrade redisdb-operator "$ROOT/charts/redisdb-operator" --namespace "$NAMESPACE" --reuse-values \
  --set operator.resyncInterval=120 --wait --timeout 180s

# The in-cluster operator is proven (pod Ready under its ServiceAccount, webhook CA bootstrapped, upgrade). The
# suite starts its own operator process next to a local provider on this host, which pods cannot reach, so the
# release goes before it (its CRDs stay: helm.sh/resource-policy keep) and two operators never share objects.
helm uninstall redisdb-operator --namespace "$NAMESPACE" --wait
cd "$ROOT"
REDISDB_KUBECONFIG="$KUBECONFIG_FILE" "${PYTHON:-.venv/bin/python}" -m pytest tests/e2e -q -ra "$@"
