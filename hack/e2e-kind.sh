#!/usr/bin/env bash
# End-to-end on kind with the real image (needs Docker and kind; NOT runnable on machines without a Docker
# engine, such as the development VM, where tests/e2e runs the operator as a process against a local control plane).
#
#   make e2e-kind            # create cluster, build + load image, helm install, connect pods, e2e suite, delete cluster
#   KEEP_CLUSTER=1 make e2e-kind
#
# Steps: kind create cluster -> docker build -> kind load docker-image -> helm install (chart from this repo, the
# operator running in a pod under its ServiceAccount, webhook through its Service) -> wait for the Deployment ->
# helm upgrade -> `kubectl redisdb connect --mode pod` for real (below) -> uninstall -> pytest tests/e2e against
# that cluster (REDISDB_KUBECONFIG makes the harness reuse it instead of starting a local control plane).
#
# The connect step: the local provider runs on this host, listening on the kind Docker network's gateway and
# handing that address out (--listen-host/--advertise-host), so the in-cluster operator reaches its APIs and pods
# reach its redis-servers. The operator makes a Fly-type (plain) and an Upstash-type (TLS, private CA) database;
# for each, `kubectl redisdb connect NAME --mode pod --command PING` runs redis-cli in a short-lived pod in a
# namespace that enforces the `restricted` Pod Security level, must print PONG, and its pod (and CA ConfigMap)
# must be gone afterwards. Needs redis-server on this host (as tests/e2e does) and a Linux Docker engine (the
# gateway address must be on a local interface; a host firewall must let the kind network reach it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${KIND_CLUSTER:-redisdb-e2e}"
IMAGE="${IMAGE:-redisdb-operator:e2e}"
NAMESPACE="${NAMESPACE:-redisdb-system}"
# shellcheck disable=SC1091
source "$ROOT/versions.env"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:${KUBERNETES_VERSION}}"

PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
# The plugin (kubectl-redisdb, a console script of the venv) and the dev tooling (operator/redisdb_dev).
VENV_BIN="$(dirname "$PYTHON")"
export PATH="$VENV_BIN:$PATH"
export PYTHONPATH="$ROOT/operator${PYTHONPATH:+:$PYTHONPATH}"
CONNECT_NAMESPACE="${CONNECT_NAMESPACE:-redisdb-connect-e2e}"

KUBECONFIG_FILE=""
PROVIDER_DIR="${PROVIDER_DIR:-}" # the local provider's state, CA and log (made by main)
PROVIDER_PID=""
PROVIDER_PORT=""

stop_local_provider() {
  if [[ -n "$PROVIDER_PID" ]]; then
    kill -TERM "$PROVIDER_PID" 2>/dev/null || true
    wait "$PROVIDER_PID" 2>/dev/null || true
    PROVIDER_PID=""
  fi
}
cleanup() {
  local status=$?
  if [[ $status -ne 0 && -n "$PROVIDER_DIR" && -s "$PROVIDER_DIR/provider.log" ]]; then
    echo "e2e-kind: the local provider's log (last 50 lines):" >&2
    tail -n 50 "$PROVIDER_DIR/provider.log" >&2
  fi
  stop_local_provider
  if [[ -z "${KEEP_CLUSTER:-}" ]]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
  rm -f "$KUBECONFIG_FILE"
  rm -rf "$PROVIDER_DIR"
}

fail() {
  echo "e2e-kind: $*" >&2
  exit 1
}

# The IPv4 gateway of the kind Docker network: an address of this host that the nodes (and, NATed, pods) reach.
kind_gateway() {
  local gateway
  gateway="$(docker network inspect kind --format '{{range .IPAM.Config}}{{.Gateway}} {{end}}' | tr ' ' '\n' |
    grep -E '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$' | head -n 1 || true)"
  [[ -n "$gateway" ]] || fail "the kind Docker network has no IPv4 gateway (docker network inspect kind)"
  echo "$gateway"
}

# Start the local provider listening on $1 and handing $1 out; sets PROVIDER_PORT once it is healthy.
start_local_provider() {
  local address="$1" port_file="$PROVIDER_DIR/port"
  "$PYTHON" -m redisdb_dev.cli local-provider \
    --listen-host "$address" --advertise-host "$address" --port 0 --port-file "$port_file" \
    --state-dir "$PROVIDER_DIR/state" --tls-ca-dir "$PROVIDER_DIR/ca" \
    --upstash-email dev@example.com --upstash-api-key local-api-key \
    --fly-token local-fly-token --fly-org personal \
    >"$PROVIDER_DIR/provider.log" 2>&1 &
  PROVIDER_PID=$!
  for _ in $(seq 1 120); do
    if [[ -s "$port_file" ]]; then
      PROVIDER_PORT="$(cat "$port_file")"
      return 0
    fi
    kill -0 "$PROVIDER_PID" 2>/dev/null || { cat "$PROVIDER_DIR/provider.log" >&2; fail "the local provider exited"; }
    sleep 1
  done
  cat "$PROVIDER_DIR/provider.log" >&2
  fail "the local provider did not start listening on $address"
}

# The RedisProviders of both wire APIs at the local provider's base URL $1 (credentials: the provider's dev ones).
provider_manifests() {
  local url="$1"
  cat <<EOF_PROVIDERS
apiVersion: redisdb.dev/v1alpha1
kind: RedisProvider
metadata: {name: kind-fly}
spec:
  type: fly
  url: $url
  organization: personal
  credentialsSecretRef: {namespace: $NAMESPACE, name: kind-fly-credentials, tokenKey: token}
---
apiVersion: redisdb.dev/v1alpha1
kind: RedisProvider
metadata: {name: kind-upstash}
spec:
  type: upstash
  url: $url/v2
  credentialsSecretRef: {namespace: $NAMESPACE, name: kind-upstash-credentials, emailKey: email, apiKeyKey: apiKey}
EOF_PROVIDERS
}

# A Fly-type database (plain redis://) and an Upstash-type one (TLS only, certificate from a private CA).
database_manifests() {
  cat <<EOF_DATABASES
apiVersion: redisdb.dev/v1alpha1
kind: RedisDatabase
metadata: {name: plain}
spec: {providerRef: {name: kind-fly}, primaryRegion: cdg, plan: payg}
---
apiVersion: redisdb.dev/v1alpha1
kind: RedisDatabase
metadata: {name: secure}
spec: {providerRef: {name: kind-upstash}, primaryRegion: us-east-1, plan: payg}
EOF_DATABASES
}

# No pod or ConfigMap of a connect session for database $1 may be left (deletion is asynchronous: wait for it).
assert_connect_objects_gone() {
  local database="$1" selector left=""
  selector="app.kubernetes.io/component=kubectl-redisdb-connect,redisdb.dev/database=$database"
  for _ in $(seq 1 60); do
    left="$(kubectl get pods,configmaps -n "$CONNECT_NAMESPACE" -l "$selector" -o name)"
    [[ -z "$left" ]] && return 0
    sleep 1
  done
  fail "connect $database left behind: $left"
}

# `kubectl redisdb connect $1 --mode pod --command PING [extra flags]` must answer PONG and clean up after itself.
assert_pod_connect_pongs() {
  local database="$1" answer
  shift
  answer="$(kubectl redisdb connect "$database" -n "$CONNECT_NAMESPACE" --mode pod --command PING "$@")" ||
    fail "kubectl redisdb connect $database --mode pod failed"
  [[ "$(echo "$answer" | tr -d '\r' | tail -n 1)" == "PONG" ]] || fail "connect $database answered '$answer', not PONG"
  assert_connect_objects_gone "$database"
  echo "e2e-kind: connect $database --mode pod: PONG, pod removed"
}

# The pod path of `kubectl redisdb connect`, run for real against the in-cluster operator.
connect_pods_for_real() {
  local gateway url ca_file connect_image endpoint untrusted
  gateway="$(kind_gateway)"
  start_local_provider "$gateway"
  url="http://$gateway:$PROVIDER_PORT"
  ca_file="$PROVIDER_DIR/ca/ca.pem"
  echo "e2e-kind: local provider on $url (its redis-servers on $gateway)"

  # The plugin's pinned image, loaded into the nodes so the pod does not depend on a registry pull.
  connect_image="$("$PYTHON" -c 'from redisdb_operator.kubectl_plugin.pod import DEFAULT_IMAGE; print(DEFAULT_IMAGE)')"
  docker pull "$connect_image"
  kind load docker-image "$connect_image" --name "$CLUSTER"

  kubectl -n "$NAMESPACE" create secret generic kind-fly-credentials --from-literal=token=local-fly-token
  kubectl -n "$NAMESPACE" create secret generic kind-upstash-credentials \
    --from-literal=email=dev@example.com --from-literal=apiKey=local-api-key
  provider_manifests "$url" | kubectl apply -f -
  kubectl wait --for=condition=Ready redisproviders.redisdb.dev/kind-fly redisproviders.redisdb.dev/kind-upstash \
    --timeout=180s

  kubectl create namespace "$CONNECT_NAMESPACE"
  kubectl label namespace "$CONNECT_NAMESPACE" pod-security.kubernetes.io/enforce=restricted
  database_manifests | kubectl -n "$CONNECT_NAMESPACE" apply -f -
  kubectl -n "$CONNECT_NAMESPACE" wait --for=condition=Ready redisdatabases.redisdb.dev/plain \
    redisdatabases.redisdb.dev/secure --timeout=300s
  endpoint="$(kubectl -n "$CONNECT_NAMESPACE" get redisdatabases.redisdb.dev secure -o jsonpath='{.status.endpoint}')"
  [[ "$endpoint" == "$gateway" ]] || fail "the Upstash-type database's endpoint is $endpoint, not $gateway"

  assert_pod_connect_pongs plain
  assert_pod_connect_pongs secure --cacert "$ca_file"
  # Without the private CA, redis-cli in the pod refuses the certificate: TLS and its verification are real.
  untrusted="$(kubectl redisdb connect secure -n "$CONNECT_NAMESPACE" --mode pod --command PING 2>&1 || true)"
  if [[ "$untrusted" == *PONG* || "${untrusted,,}" != *certificate* ]]; then
    fail "connect secure without --cacert: expected a refused certificate, got: $untrusted"
  fi
  assert_connect_objects_gone secure

  # Deleted while the operator still runs (their finalizers need it), then the provider goes.
  kubectl -n "$CONNECT_NAMESPACE" delete redisdatabases.redisdb.dev plain secure --wait --timeout=180s
  kubectl delete redisproviders.redisdb.dev kind-fly kind-upstash --wait --timeout=120s
  kubectl delete namespace "$CONNECT_NAMESPACE" --wait --timeout=120s
  kubectl -n "$NAMESPACE" delete secret kind-fly-credentials kind-upstash-credentials
  stop_local_provider
}

main() {
  for tool in docker kind helm kubectl kubectl-redisdb redis-server; do
    command -v "$tool" >/dev/null || {
      echo "e2e-kind: '$tool' not found; needs Docker + kind, helm, kubectl, redis-server and \`make venv\`" >&2
      exit 2
    }
  done
  docker info >/dev/null 2>&1 || { echo "e2e-kind: no Docker engine reachable" >&2; exit 2; }

  KUBECONFIG_FILE="$(mktemp -t kind-kubeconfig.XXXXXX)"
  PROVIDER_DIR="$(mktemp -d -t kind-local-provider.XXXXXX)"
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
  kubectl get validatingwebhookconfiguration redisdb-operator \
    -o jsonpath='{.webhooks[0].clientConfig.caBundle}' | grep -q .

  helm upgrade redisdb-operator "$ROOT/charts/redisdb-operator" --namespace "$NAMESPACE" --reuse-values \
    --set operator.resyncInterval=120 --wait --timeout 180s

  connect_pods_for_real

  # The in-cluster operator is proven (pod Ready under its ServiceAccount, webhook CA bootstrapped, upgrade). The
  # suite starts its own operator process next to a local provider on loopback, which pods cannot reach, so the
  # release goes before it (its CRDs stay: helm.sh/resource-policy keep) and two operators never share objects.
  helm uninstall redisdb-operator --namespace "$NAMESPACE" --wait
  cd "$ROOT"
  REDISDB_KUBECONFIG="$KUBECONFIG_FILE" "$PYTHON" -m pytest tests/e2e -q -ra "$@"
}

# Sourced (tests/unit/test_e2e_kind_script.py, tests/local_provider/test_listen_and_advertise.py): functions only.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
