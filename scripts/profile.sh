#!/usr/bin/env bash
# Run the DAG under a profile of params overrides (profiles/<name>.yaml), as a DVC experiment:
#   bash scripts/profile.sh smollm2                    # one run (seed 0) on the profile's dataset
#   bash scripts/profile.sh smollm2 ambigsql           # ... on another dataset
#   SEEDS="0 1 2" bash scripts/profile.sh smollm2      # SFT vs off-policy DPO vs ACT over seeds (act ablate)
#   METHODS="sft act" SEEDS=0 bash scripts/profile.sh smollm2-sql   # some methods only
# A profile may extend another: `extends: smollm2` takes its keys, the file's own keys win.
# Extra `dvc exp run` / `act ablate` arguments follow the dataset, e.g. `-- --rerun`.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="profiles/${1:?usage: scripts/profile.sh PROFILE [DATASET]}.yaml"
dataset="${2:-}"
shift $(( $# >= 2 ? 2 : 1 )); [ "${1:-}" = "--" ] && shift
bash scripts/setup.sh
source scripts/env.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export PATH="$PWD/.venv/bin:$PATH"
# The profile as `-S key=value` items, values as one-line YAML (null stays null, a list a list);
# a bad profile stops here with one `error:` line. Line 1 is the base model the profile names.
lines=$(python scripts/profile_args.py "$profile" "$dataset")
model=$(head -n 1 <<<"$lines")
mapfile -t sets < <(tail -n +2 <<<"$lines")
args=(); for s in "${sets[@]}"; do [ -n "$s" ] && args+=(-S "$s"); done
if [ -n "$model" ] && python - "$model" <<'PY'
import sys
from act.model.pretrained import NAMED_MODELS
sys.exit(sys.argv[1] not in NAMED_MODELS)
PY
then
  python -m act.model.pretrained fetch "$model"
fi
if [ -n "${SEEDS:-}" ]; then
  name=$(basename "$profile" .yaml)-$(grep -E '^dataset=' <(printf '%s\n' "${sets[@]}") | cut -d= -f2 || true)
  act ablate --seeds $SEEDS --methods ${METHODS:-sft dpo_offpolicy act} --out "reports/$name" "${args[@]}" "$@"
else
  dvc exp run "${args[@]}" "$@"
fi
