#!/usr/bin/env bash
# Set up, then run the test suite (unit, stage and end-to-end tests; CUDA tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export PATH="$PWD/.venv/bin:$PATH"
python -m pytest "$@"
