#!/usr/bin/env bash
# Measure docker-driver rotation latency against the local Docker Engine, with a FROM-scratch
# image the test builds itself. Two measurements, N rotations each, p50/p99 printed:
#   - driver: make-before-break by hand (start the replacement container, poll it until HTTP 200,
#     stop and remove the old one);
#   - pool: executor.Pool.Rotate on the docker driver (the executor.rotation event's duration:
#     replacement started, healthy and in service, old drained, stopped and removed).
#
#   bench/docker-rotation.sh [N]      (default N=20; needs a Docker Engine socket)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20}"
go test -count=1 -v -run '^(TestRotationLatency|TestPoolRotationLatency)$' ./executor/docker/ \
  -args -docker.rotations="$N" -docker.pool-rotations="$N" \
  | grep -vE '^(=== RUN|--- (PASS|SKIP)|PASS$|ok )'
