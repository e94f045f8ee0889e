#!/bin/sh
# The image's install steps, kept in one place so that tests/deploy replays exactly what the
# Dockerfile runs (there is no Docker engine in CI).
#   install.sh deps VENV LOCKFILE   a fresh venv with the exact runtime closure (wheels only)
#   install.sh app  VENV SRC        cloudsnap itself, no dependency resolution, then `pip check`
# PYTHON picks the interpreter (default python3).
set -eu
step=$1
venv=$2
from=$3
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
case "$step" in
  deps)
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install --only-binary=:all: --requirement "$from"
    ;;
  app)
    "$venv/bin/pip" install --no-deps "$from"
    "$venv/bin/pip" check
    ;;
  *)
    echo "usage: install.sh deps VENV LOCKFILE | install.sh app VENV SRC" >&2
    exit 2
    ;;
esac
