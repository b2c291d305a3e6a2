#!/usr/bin/env bash
# Create a virtual environment (default .venv, or $VENV) and install requirements.txt into it.
# visdom ships only as a source package whose build needs pkg_resources: setuptools<81 goes in first
# and the requirements are built without build isolation.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "setuptools<81" wheel
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation -r requirements.txt
"$venv/bin/python" -c "import torch, torchvision, cv2, visdom; print('installed torch', torch.__version__, '| torchvision', torchvision.__version__, '| opencv', cv2.__version__)"
