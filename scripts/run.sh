#!/usr/bin/env bash
# Set up, then reproduce the whole DAG on the embedded default (offline, CPU): `dvc repro`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export PATH="$PWD/.venv/bin:$PATH"
dvc repro "$@"
act show   # headline metrics per policy (`act show --all`: every metrics file)
