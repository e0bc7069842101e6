#!/usr/bin/env bash
# Download here (where the package registry is reachable) the wheels that scripts/gpu_check.py needs on a GPU machine
# that has none: pure-Python packages its image lacks, for Python 3.12 (the GPU image has torch, transformers, peft,
# accelerate, huggingface_hub, safetensors, numpy, scipy, scikit-learn, pandas, pillow, pyyaml, zipp; not diffusers,
# importlib_metadata (a diffusers dependency) or vendi-score (the evaluation's Vendi score)). mlflow, optuna and
# open_clip are not needed: the check tracks nothing, tunes nothing and uses no CLIP reward.
# Writes .gpu-wheels/ (git-ignored; it travels with the working tree, 64 MiB in all) and prints its size.
#
#   bash scripts/gpu_wheels.sh          # then, on the GPU machine: bash scripts/gpu_check.sh --write
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.gpu-wheels
limit_mib=16  # a budget for the wheels inside the tree's 64 MiB; the tree itself is about 15 MiB
pip=(python3 -m pip)
[ -x .venv/bin/pip ] && pip=(.venv/bin/pip)

rm -rf "$dest" && mkdir -p "$dest"
# the versions this repository is tested with (see .venv); pure Python, so any platform tag serves
"${pip[@]}" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$dest" \
    diffusers==0.42.1 importlib-metadata==9.1.0 zipp==4.1.2
# vendi-score publishes only a source archive: build its (pure-Python) wheel here, where setuptools is at hand
"${pip[@]}" wheel -q --no-deps -w "$dest" vendi-score==0.0.3
if ls "$dest"/*.whl | grep -v -- '-none-any\.whl$'; then
    echo "gpu_wheels: the wheels above are not pure Python; the GPU machine's Python may not take them" >&2
    exit 1
fi
bytes=$(cat "$dest"/*.whl | wc -c)
ls -1 "$dest"
echo "gpu_wheels: $(ls "$dest"/*.whl | wc -l) wheels, $((bytes / 1024)) KiB in $dest (budget ${limit_mib} MiB)"
if [ "$bytes" -gt $((limit_mib * 1024 * 1024)) ]; then
    echo "gpu_wheels: over the ${limit_mib} MiB budget" >&2
    exit 1
fi
