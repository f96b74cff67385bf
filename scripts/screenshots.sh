#!/usr/bin/env bash
# Regenerate the screenshots in docs/ with headless Chromium: a sweep and a pipeline run in the
# Prefect UI, the MLflow runs table, its chart view and a comparison of two runs, `dvc plots diff` of
# two experiments overlaid, and the HTML report. A docs tool, not a test dependency.
#
#   act ui &                                   # (optional) the Prefect shots need it, and the MLflow
#   act run; act ablate --seeds 0 1            #   shots then use its server
#   bash scripts/screenshots.sh
#   REVS="beta-0.1 beta-0.5" bash scripts/screenshots.sh        # the experiments (or revisions) to overlay
#
# REVS           what `dvc plots diff` overlays (default: the two newest experiments of HEAD; with
#                fewer, the workspace against HEAD)
# PLOT_TARGETS   the plots on the DVC page, ids from dvc.yaml's `plots:` joined by | (default: the
#                training curves and the headline metrics)
# MLFLOW_DB      without a running `act ui`: the MLflow store a throwaway server shows (default:
#                mlflow.db); COMPARE_STAGE: the stage whose two newest finished runs are compared
#                (default: train)
# CHROMIUM       the browser (default: chromium on PATH)
# On first use it installs, under .cache/ (git-ignored), Playwright in a venv of its own (it drives
# the Chromium above; it downloads no browser). The DVC page needs nothing: .dvc/config names
# configs/dvc-plots.html, which inlines vega, so `dvc plots diff` writes a page that draws offline.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$CHROMIUM" ] || { echo "screenshots: no chromium on PATH (set CHROMIUM=/path/to/chromium)" >&2; exit 1; }
MLFLOW_DB=${MLFLOW_DB:-mlflow.db}
CACHE=.cache/screenshots
mkdir -p "$CACHE"

# Playwright, in its own venv
if [ ! -x "$CACHE/venv/bin/python" ] || ! "$CACHE/venv/bin/python" -c "import playwright" 2>/dev/null; then
  .venv/bin/uv venv -q "$CACHE/venv"
  .venv/bin/uv pip install -q --python "$CACHE/venv/bin/python" "playwright==1.65.*"
fi

# dvc plots diff of two experiments
if [ -z "${REVS:-}" ]; then
  REVS=$(.venv/bin/dvc exp list --name-only 2>/dev/null | tail -n 2 | tr '\n' ' ' || true)
  [ "$(echo $REVS | wc -w)" -ge 2 ] || REVS=""
fi
PLOT_TARGETS=${PLOT_TARGETS:-"DPO reward margin during ACT training|Fixed probe set during ACT training|On-policy samples per round|Headline metrics per policy"}
IFS='|' read -r -a targets <<< "$PLOT_TARGETS"
rm -rf "$CACHE/dvc_plots"
# shellcheck disable=SC2086  # REVS is a list of revisions
.venv/bin/dvc plots diff $REVS --targets "${targets[@]}" -o "$CACHE/dvc_plots"  # configs/dvc-plots.html (.dvc/config)

# the running `act ui` of this project (its Prefect and MLflow servers), else a throwaway MLflow server
PREFECT_URL="" MLFLOW_URL=""
if [ -f .prefect/act-ui.json ]; then
  read -r PREFECT_URL MLFLOW_URL < <(.venv/bin/python -c "import json; s = json.load(open('.prefect/act-ui.json')); print(s['prefect_url'], s['mlflow_url'])")
  curl -sf "$PREFECT_URL/api/health" >/dev/null && curl -sf "$MLFLOW_URL/health" >/dev/null || PREFECT_URL="" MLFLOW_URL=""
fi
if [ -z "$MLFLOW_URL" ]; then
  echo "screenshots: no running \`act ui\`: no Prefect shots; MLflow from $MLFLOW_DB on a throwaway server"
  PORT=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid .venv/bin/mlflow server --host 127.0.0.1 --port "$PORT" \
    --workers 1 --backend-store-uri "sqlite:///$(realpath "$MLFLOW_DB")" > "$CACHE/mlflow.log" 2>&1 &
  MLFLOW_PID=$!
  trap 'kill -- -$MLFLOW_PID 2>/dev/null; wait $MLFLOW_PID 2>/dev/null || true' EXIT
  MLFLOW_URL="http://127.0.0.1:$PORT"
  for _ in $(seq 120); do
    curl -sf "$MLFLOW_URL/health" >/dev/null && break
    sleep 1
  done
fi

"$CACHE/venv/bin/python" scripts/screenshots.py --chromium "$CHROMIUM" --mlflow "$MLFLOW_URL" ${PREFECT_URL:+--prefect "$PREFECT_URL"} \
  --experiment "$(.venv/bin/python -c "import yaml; print(yaml.safe_load(open('params.yaml'))['tracking']['experiment'])")" \
  --compare-stage "${COMPARE_STAGE:-train}" --dvc-page "$CACHE/dvc_plots/index.html" \
  --report reports/evaluate.html --out docs
