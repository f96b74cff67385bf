#!/usr/bin/env bash
# Regenerate the screenshots in docs/ with headless Chromium: the MLflow run list and a comparison
# of two runs, `dvc plots diff` of two experiments overlaid, and the HTML report. A docs tool, not a
# test dependency.
#
#   bash scripts/screenshots.sh                                  # after `dvc repro` and two `dvc exp run`s
#   REVS="beta-0.1 beta-0.5" bash scripts/screenshots.sh        # the experiments (or revisions) to overlay
#
# REVS           what `dvc plots diff` overlays (default: the two newest experiments of HEAD; with
#                fewer, the workspace against HEAD)
# PLOT_TARGETS   the plots on the DVC page, ids from dvc.yaml's `plots:` joined by | (default: the
#                training curves and the headline metrics)
# MLFLOW_DB      the MLflow store shown (default: mlflow.db); COMPARE_STAGE: the stage whose two newest
#                finished runs are compared (default: train)
# CHROMIUM       the browser (default: chromium on PATH)
# On first use it installs, under .cache/ (git-ignored), Playwright in a venv of its own (it drives
# the Chromium above; it downloads no browser) and vega, vega-lite and vega-embed from npm, the
# versions DVC's page asks a CDN for, so that page renders offline.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$CHROMIUM" ] || { echo "screenshots: no chromium on PATH (set CHROMIUM=/path/to/chromium)" >&2; exit 1; }
command -v npm >/dev/null || { echo "screenshots: npm is needed once, to fetch vega for the DVC page" >&2; exit 1; }
MLFLOW_DB=${MLFLOW_DB:-mlflow.db}
CACHE=.cache/screenshots
mkdir -p "$CACHE"

# Playwright, in its own venv
if [ ! -x "$CACHE/venv/bin/python" ] || ! "$CACHE/venv/bin/python" -c "import playwright" 2>/dev/null; then
  .venv/bin/uv venv -q "$CACHE/venv"
  .venv/bin/uv pip install -q --python "$CACHE/venv/bin/python" "playwright==1.65.*"
fi

# vega for the DVC page, beside its index.html
VEGA="$CACHE/vega"
if [ ! -f "$VEGA/vega-embed.min.js" ]; then
  mkdir -p "$VEGA/pack"
  (cd "$VEGA/pack" && npm pack --silent vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2 >/dev/null)
  for pkg in vega vega-lite vega-embed; do
    tar -xzf "$VEGA"/pack/"$pkg"-[0-9]*.tgz -C "$VEGA/pack" package/build/"$pkg".min.js
    mv "$VEGA/pack/package/build/$pkg.min.js" "$VEGA/"
  done
  rm -rf "$VEGA/pack"
fi
cat > "$CACHE/dvc_page.html" <<'HTML'
<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>dvc plots diff</title>
<script src="vega.min.js"></script><script src="vega-lite.min.js"></script><script src="vega-embed.min.js"></script>
<style>body { font-family: sans-serif; margin: 16px; } body > div { display: inline-block; vertical-align: top; margin: 8px; }</style>
</head><body>{plot_divs}</body></html>
HTML

# dvc plots diff of two experiments
if [ -z "${REVS:-}" ]; then
  REVS=$(.venv/bin/dvc exp list --name-only 2>/dev/null | tail -n 2 | tr '\n' ' ' || true)
  [ "$(echo $REVS | wc -w)" -ge 2 ] || REVS=""
fi
PLOT_TARGETS=${PLOT_TARGETS:-"DPO reward margin during ACT training|Fixed probe set during ACT training|On-policy samples per round|Headline metrics per policy"}
IFS='|' read -r -a targets <<< "$PLOT_TARGETS"
rm -rf "$CACHE/dvc_plots"
# shellcheck disable=SC2086  # REVS is a list of revisions
.venv/bin/dvc plots diff $REVS --targets "${targets[@]}" --html-template "$CACHE/dvc_page.html" -o "$CACHE/dvc_plots"
cp "$VEGA"/*.min.js "$CACHE/dvc_plots/"

# a throwaway MLflow server on a free port over the store
PORT=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid .venv/bin/mlflow server --host 127.0.0.1 --port "$PORT" \
  --workers 1 --backend-store-uri "sqlite:///$(realpath "$MLFLOW_DB")" > "$CACHE/mlflow.log" 2>&1 &
MLFLOW_PID=$!
trap 'kill -- -$MLFLOW_PID 2>/dev/null; wait $MLFLOW_PID 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  sleep 1
done

"$CACHE/venv/bin/python" scripts/screenshots.py --chromium "$CHROMIUM" --mlflow "http://127.0.0.1:$PORT" \
  --experiment "$(.venv/bin/python -c "import yaml; print(yaml.safe_load(open('params.yaml'))['tracking']['experiment'])")" \
  --compare-stage "${COMPARE_STAGE:-train}" --dvc-page "$CACHE/dvc_plots/index.html" \
  --report reports/evaluate.html --out docs
