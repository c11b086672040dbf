#!/usr/bin/env bash
# A throwaway Docker daemon from Debian's packages (for the opt-in image build test on machines without Docker).
#   local_dockerd.sh start|stop     state in $DOCKERD_ROOT (default /tmp/wan-dockerd); socket $DOCKERD_ROOT/docker.sock
# vfs storage, no iptables, no bridge: slow but needs no kernel features beyond a root shell. Builds use --network host.
set -euo pipefail
ROOT=${DOCKERD_ROOT:-/tmp/wan-dockerd}
case "${1:-start}" in
  start)
    mkdir -p "$ROOT/pkgs" "$ROOT/bin"
    if [ ! -x "$ROOT/bin/usr/sbin/dockerd" ]; then
      (cd "$ROOT/pkgs" && apt-get download docker.io containerd runc docker-buildx tini)
      for deb in "$ROOT"/pkgs/*.deb; do dpkg -x "$deb" "$ROOT/bin"; done
    fi
    export PATH="$ROOT/bin/usr/sbin:$ROOT/bin/usr/bin:$ROOT/bin/usr/libexec/docker/cli-plugins:$PATH"
    mkdir -p "$HOME/.docker/cli-plugins"
    ln -sf "$ROOT/bin/usr/libexec/docker/cli-plugins/docker-buildx" "$HOME/.docker/cli-plugins/docker-buildx"
    nohup dockerd --storage-driver=vfs --iptables=false --bridge=none --data-root "$ROOT/data" \
      --exec-root "$ROOT/exec" --pidfile "$ROOT/dockerd.pid" -H "unix://$ROOT/docker.sock" \
      > "$ROOT/dockerd.log" 2>&1 &
    for _ in $(seq 60); do
      DOCKER_HOST="unix://$ROOT/docker.sock" docker version >/dev/null 2>&1 && break
      sleep 1
    done
    DOCKER_HOST="unix://$ROOT/docker.sock" docker version >/dev/null || { tail -30 "$ROOT/dockerd.log" >&2; exit 1; }
    echo "export DOCKER_HOST=unix://$ROOT/docker.sock" ;;
  stop)
    [ -f "$ROOT/dockerd.pid" ] && kill "$(cat "$ROOT/dockerd.pid")" && echo "dockerd stopped" ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
