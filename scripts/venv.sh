# Sourced by demo.sh and test.sh: the virtual environment both use. VENV picks it (default .venv); sets PY.
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"

# pip install into it: pinned torch, the package's requirements, this package (editable, so `import wan_animate`
# works from any folder), and any further pip arguments given.
venv_install() {
  # torch and torchvision are pinned together, or a dependency pulls another torch build.
  "$PY" -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 -r requirements.txt -e . "$@"
}
