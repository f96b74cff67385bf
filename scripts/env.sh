# Environment shared by scripts/run.sh and scripts/test.sh (sourced, not executed).
# Telemetry off. The hub is not switched off here: scripts/run.sh and scripts/test.sh set
# HF_HUB_OFFLINE=1 themselves (the default run and the tests never touch a hub), while a user with
# network who sources this file can load hub models (base.model=HuggingFaceH4/zephyr-7b-beta).
export HF_HUB_DISABLE_TELEMETRY=1
export MLFLOW_DISABLE_TELEMETRY=true
export DO_NOT_TRACK=true
export DVC_NO_ANALYTICS=1
export PREFECT_SERVER_ANALYTICS_ENABLED=false
# Prefect: its own chatter at warnings, while flow and task run logs (each stage's `dvc repro` output)
# reach the Prefect API at INFO, so the UI shows them. `act run` keeps them off the terminal itself
# (PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL, flows/cli.py): set that to INFO to see them there too.
export PREFECT_LOGGING_LEVEL="${PREFECT_LOGGING_LEVEL:-WARNING}"
export PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL="${PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL:-INFO}"
export PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL="${PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL:-INFO}"
export TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1
