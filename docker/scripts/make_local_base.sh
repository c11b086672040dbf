#!/usr/bin/env bash
# A minimal Debian base image made locally (debootstrap bookworm minbase + `docker import`), standing in for the CUDA
# base image when no registry is reachable. The host's CA bundle is copied in (beside the system one, which apt's
# ca-certificates regenerates) and pip/requests/openssl are pointed at it, so PyPI verifies behind a TLS proxy too.
#   make_local_base.sh [TAG]   (default wan-worker-base:local; needs root, debootstrap and a Docker daemon)
set -euo pipefail
TAG=${1:-wan-worker-base:local}
WORK=$(mktemp -d)
command -v debootstrap >/dev/null || apt-get install -y debootstrap
debootstrap --variant=minbase bookworm "$WORK/rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$WORK/rootfs/usr/local/share/host-ca"
cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/usr/local/share/host-ca/ca-certificates.crt"
bundle=/usr/local/share/host-ca/ca-certificates.crt
tar -C "$WORK/rootfs" -c . | docker import --change "ENV PIP_CERT=$bundle" --change "ENV SSL_CERT_FILE=$bundle" \
  --change "ENV REQUESTS_CA_BUNDLE=$bundle" - "$TAG"
rm -rf "$WORK"
echo "base image $TAG ready"
