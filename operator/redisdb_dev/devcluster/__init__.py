"""A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) for tests and the demo.

Built from source by hack/build-k8s-tools.sh because this project runs where Docker (and so kind) is absent.
"""
