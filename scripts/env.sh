# Environment shared by scripts/run.sh and scripts/test.sh (sourced, not executed).
# Telemetry off. The hub is not switched off here: scripts/run.sh and scripts/test.sh set
# HF_HUB_OFFLINE=1 themselves (the default run and the tests never touch a hub), while a user with
# network who sources this file can load hub models (base.model=HuggingFaceH4/zephyr-7b-beta).
export HF_HUB_DISABLE_TELEMETRY=1
export MLFLOW_DISABLE_TELEMETRY=true
export DO_NOT_TRACK=true
export DVC_NO_ANALYTICS=1
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_LOGGING_LEVEL="${PREFECT_LOGGING_LEVEL:-WARNING}"
export TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1
