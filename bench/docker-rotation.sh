#!/usr/bin/env bash
# Measure docker-driver rotation latency: N make-before-break cycles (start the replacement
# container, wait until it answers HTTP 200, stop and remove the old one) against the local
# Docker Engine, with a FROM-scratch image the test builds itself. Prints p50/p99.
#
#   bench/docker-rotation.sh [N]      (default N=20; needs a Docker Engine socket)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20}"
go test -count=1 -v -run '^TestRotationLatency$' ./executor/docker/ -args -docker.rotations="$N" \
  | grep -vE '^(=== RUN|--- (PASS|SKIP)|PASS$|ok )'
