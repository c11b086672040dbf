# Sourced by test.sh: sets COMFYUI_DIR to a ComfyUI source for the integration tests, or leaves it unset.
#   1. COMFYUI_DIR, when it holds main.py, is used as it is.
#   2. COMFYUI_TARBALL names a source tarball (one top folder, e.g. ComfyUI/): extracted once into a cache folder
#      keyed by the tarball's checksum, then reused.
#   3. Otherwise, when online, the pinned release is downloaded once into the same cache.
# With none of these the integration tests skip with a loud reason (tests/comfyui_server.py).
COMFYUI_PINNED_VERSION=0.3.64
COMFYUI_CACHE=${COMFYUI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/comfyui-wan-animate}

# Extract tarball $1 into folder $2 (strip the one top folder), atomically: a half-extracted tree is never used.
_comfyui_extract() {
  local tarball=$1 dest=$2 tmp
  mkdir -p "$(dirname "$dest")"
  tmp=$(mktemp -d "$dest.partial.XXXXXX")
  if tar -xzf "$tarball" -C "$tmp" --strip-components=1 && [ -f "$tmp/main.py" ]; then
    rm -rf "$dest" && mv "$tmp" "$dest"
  else
    rm -rf "$tmp"
    echo "!!! $tarball is not a ComfyUI source tarball (no main.py under its top folder)" >&2
    return 1
  fi
}

_comfyui_locate() {
  if [ -n "${COMFYUI_DIR:-}" ] && [ -f "$COMFYUI_DIR/main.py" ]; then
    return 0
  fi
  local dest
  if [ -n "${COMFYUI_TARBALL:-}" ]; then
    if [ ! -f "$COMFYUI_TARBALL" ]; then
      echo "!!! COMFYUI_TARBALL=$COMFYUI_TARBALL does not exist" >&2
      return 1
    fi
    dest="$COMFYUI_CACHE/comfyui-$(sha256sum "$COMFYUI_TARBALL" | cut -c1-16)"
    [ -f "$dest/main.py" ] || _comfyui_extract "$COMFYUI_TARBALL" "$dest" || return 1
  else
    dest="$COMFYUI_CACHE/comfyui-v$COMFYUI_PINNED_VERSION"
    if [ ! -f "$dest/main.py" ]; then
      local url="https://github.com/comfyanonymous/ComfyUI/archive/refs/tags/v$COMFYUI_PINNED_VERSION.tar.gz"
      local download
      download=$(mktemp)
      if ! curl -fsSL --max-time 120 -o "$download" "$url"; then
        rm -f "$download"
        echo "!!! could not download ComfyUI $COMFYUI_PINNED_VERSION (offline?)" >&2
        return 1
      fi
      if ! _comfyui_extract "$download" "$dest"; then
        rm -f "$download"
        return 1
      fi
      rm -f "$download"
    fi
  fi
  COMFYUI_DIR=$dest
}

if _comfyui_locate; then
  export COMFYUI_DIR
  echo "ComfyUI source for the integration tests: $COMFYUI_DIR" >&2
else
  unset COMFYUI_DIR
  echo "!!! no ComfyUI source: the ComfyUI integration tests will be SKIPPED" >&2
fi
