#!/usr/bin/env bash
# A throwaway Docker daemon from Debian's packages (for the opt-in image build test on machines without Docker).
#   eval "$(bash local_dockerd.sh start)"   starts it and prints the PATH/DOCKER_HOST/DOCKER_BUILDKIT to use
#   bash local_dockerd.sh stop
# State lives in $DOCKERD_ROOT (default /tmp/wan-dockerd). overlay2 storage (DOCKERD_STORAGE_DRIVER=vfs where
# overlay mounts are not allowed; vfs copies every layer in full: the worker image then needs ~80 GB), no iptables,
# no bridge; builds and runs use --network host. Debian 12's docker.io is 20.10, whose own CLI
# builds with BuildKit (cache mounts) without the buildx plugin, so its CLI is put first on PATH.
set -euo pipefail
ROOT=${DOCKERD_ROOT:-/tmp/wan-dockerd}
BIN="$ROOT/pkg/usr/sbin:$ROOT/pkg/usr/bin"
case "${1:-start}" in
  start)
    mkdir -p "$ROOT/debs" "$ROOT/pkg"
    if [ ! -x "$ROOT/pkg/usr/sbin/dockerd" ]; then
      (cd "$ROOT/debs" && apt-get download docker.io containerd runc tini >&2)
      for deb in "$ROOT"/debs/*.deb; do dpkg -x "$deb" "$ROOT/pkg"; done
    fi
    PATH="$BIN:$PATH" nohup dockerd --storage-driver="${DOCKERD_STORAGE_DRIVER:-overlay2}" --iptables=false --bridge=none \
      --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$ROOT/dockerd.pid" \
      -H "unix://$ROOT/docker.sock" > "$ROOT/dockerd.log" 2>&1 &
    for _ in $(seq 60); do
      PATH="$BIN:$PATH" DOCKER_HOST="unix://$ROOT/docker.sock" docker version >/dev/null 2>&1 && break
      sleep 1
    done
    PATH="$BIN:$PATH" DOCKER_HOST="unix://$ROOT/docker.sock" docker version >/dev/null \
      || { tail -30 "$ROOT/dockerd.log" >&2; exit 1; }
    echo "export PATH=$BIN:\$PATH DOCKER_HOST=unix://$ROOT/docker.sock DOCKER_BUILDKIT=1" ;;
  stop)
    if [ -f "$ROOT/dockerd.pid" ]; then kill "$(cat "$ROOT/dockerd.pid")" && echo "dockerd stopped"; fi ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
