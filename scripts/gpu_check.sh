#!/usr/bin/env bash
# On a GPU machine with no package registry: install the wheels that scripts/gpu_wheels.sh put in .gpu-wheels/
# (offline: --no-index --find-links, no dependency resolution, into a private folder) and run scripts/gpu_check.py
# with the arguments given (e.g. --write FOLDER). benchsuite itself runs from this source tree (PYTHONPATH).
#
#   bash scripts/gpu_check.sh --write            # table on stdout and in results/gpu/<date>.md
set -euo pipefail
cd "$(dirname "$0")/.."
site=${GPU_CHECK_SITE:-/tmp/benchsuite-gpu-site}
python=${PYTHON:-python3}
if ! ls .gpu-wheels/*.whl >/dev/null 2>&1; then
    echo "gpu_check: no wheels in .gpu-wheels/; run 'bash scripts/gpu_wheels.sh' where pip reaches a registry" >&2
    exit 2
fi
names=$(ls .gpu-wheels/*.whl | xargs -n1 basename | cut -d- -f1)
# shellcheck disable=SC2086  # one argument per wheel name
"$python" -m pip install -q --no-index --find-links .gpu-wheels --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" $names
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
exec "$python" scripts/gpu_check.py "$@"
