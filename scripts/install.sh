#!/usr/bin/env bash
# Install vmas's exact stack into a virtual environment: what `make install` and the Dockerfile run.
#   scripts/install.sh VENV [--editable | --deps-only]
# requirements.lock pins everything; audiocraft comes after it with --no-deps (its own pins are stale).
set -euo pipefail
venv=${1:?usage: scripts/install.sh VENV [--editable | --deps-only]}
mode=${2:-}
python=${PYTHON:-python3.11}
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
  echo "vmas needs Python 3.11; set PYTHON=/path/to/python3.11" >&2; exit 1; }
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --no-cache-dir --requirement requirements.lock
"$venv/bin/pip" install --quiet --no-cache-dir --no-deps --requirement requirements-nodeps.txt
if [ "$mode" = "--deps-only" ]; then
  exit 0  # the image installs vmas itself in a later layer, so code changes keep this one cached
elif [ "$mode" = "--editable" ]; then
  "$venv/bin/pip" install --quiet --no-deps --editable .
else
  "$venv/bin/pip" install --quiet --no-cache-dir --no-deps .
fi
