#!/bin/sh
# The image's install steps, kept in one place so that the Dockerfile, the engine-less OCI build
# (hack/image.py, run in a chroot of the image) and tests/deploy all run exactly the same steps.
#   install.sh deps VENV LOCKFILE   a fresh venv with the exact runtime closure (wheels only,
#                                   each checked against the lock's hashes)
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
    "$venv/bin/pip" install --require-hashes --only-binary=:all: --requirement "$from"
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
