#!/usr/bin/env bash
# Builds the Kubernetes test binaries pinned in tools/k8s/go.mod (kube-apiserver,
# kube-scheduler, kube-controller-manager, etcd, kwok) once, into a cache directory named after
# go.mod and go.sum, and prints that directory. executor/kubernetes/k8stest looks there (or in
# $PROTEUS_K8S_BIN). A first build takes several minutes on 2 cores; later runs only check.
set -euo pipefail
cd "$(dirname "$0")"
hash=$(cat go.mod go.sum | sha256sum | cut -c1-16)
out="${PROTEUS_K8S_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/proteus-k8s/$hash}"
bins=(etcd kube-apiserver kube-scheduler kube-controller-manager kwok)
missing=0
for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing=1; done
[ -f "$out/kwok-stages.yaml" ] || missing=1
if [ "$missing" = 1 ]; then
  mkdir -p "$out.tmp"
  start=$(date +%s)
  go build -o "$out.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kube-controller-manager sigs.k8s.io/kwok/cmd/kwok >&2
  go build -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3 >&2
  # kwok's own "fast" stages: nodes become Ready, pods Running and Ready at once, deleted pods go.
  stages="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
  for f in node/fast/node-initialize.yaml pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"; cat "$stages/$f"
  done > "$out.tmp/kwok-stages.yaml"
  mkdir -p "$out" && mv "$out.tmp"/* "$out/" && rmdir "$out.tmp"
  echo "tools/k8s: built ${bins[*]} in $(( $(date +%s) - start ))s into $out" >&2
fi
echo "$out"
