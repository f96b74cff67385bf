"""Trainer runtime settings shared by SFT and DPO runs, their progress output and their MLflow curves.

Progress follows `act.progress`: the trainer's bar on a terminal; off it, no per-step log dicts
(they go to the training log and MLflow) but a progress line per 10 % of the steps.

MLflow: `report_to=["mlflow"]` keeps its meaning (the curves land in the stage's run), but the
transformers `MLflowCallback` is swapped for `MlflowCurves`, which logs each log dict of the
trainer as metrics with their step and nothing else: the stage run already holds the project's
params (its params section), and the ~180 TrainingArguments the stock callback adds as params
(`_name_or_path`, `accelerator_config`, a second `beta`...) would bury them.
"""

from __future__ import annotations

import os

from act.progress import bars, mode, quiet_libraries


def interactive() -> bool:
    """True when progress is drawn as bars (see `act.progress.mode`)."""
    return bars()


def runtime_args(*, seed: int, report_to: str | list[str], gradient_checkpointing: bool = False,
                 save_steps: int = 0, dtype: str = "auto", optim: str | None = None, section: str = "train") -> dict:
    """TrainingArguments every run here shares: mixed precision from the `dtype` param (CPU: none,
    `use_cpu`), the `optim` param, a log entry every step, seeded data order, bars on a terminal
    only. Checkpoints every `save_steps` steps (the last one kept, see act.training.checkpoints);
    0 = none, only the final adapter is kept. `section` names the params in errors."""
    from act.devices import check_optim, precision_args

    optim_arg = {"optim": check_optim(optim, key=f"{section}.optim")} if optim else {}
    return dict(
        logging_steps=1, report_to=report_to, seed=seed, data_seed=seed,
        **precision_args(dtype, key=f"{section}.dtype"), **optim_arg, activation_checkpointing=gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None, dataloader_num_workers=0,
        disable_tqdm=not interactive(), warmup_steps=0,
        **(dict(save_strategy="steps", save_steps=save_steps, save_total_limit=1) if save_steps > 0
           else dict(save_strategy="no")),
    )


def quiet_bars() -> None:
    """Without bars, no weight-loading or `datasets` map/filter bars (call before loading)."""
    quiet_libraries()


def mlflow_curves_callback(run_id: str, tracking_uri: str):
    """A TrainerCallback logging every numeric entry of the trainer's log dicts to MLflow run
    `run_id` as a metric at the trainer's global step (names as the stock callback gives them,
    e.g. `loss`, `rewards/margins`, `eval_rewards/margins`). It logs no params."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    from transformers import TrainerCallback

    from act.tracking import mlflow_key

    class MlflowCurves(TrainerCallback):
        def __init__(self) -> None:
            self.client = MlflowClient(tracking_uri=tracking_uri)
            self.run_id = run_id

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            import time

            ts = int(time.time() * 1000)
            batch = [Metric(mlflow_key(k), float(v), ts, int(state.global_step)) for k, v in logs.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if batch:
                self.client.log_batch(self.run_id, metrics=batch)

    return MlflowCurves()


def lines_callback(desc: str):
    """A TrainerCallback reporting the training steps through `act.progress` in `lines` mode (the
    trainer's own bar is for terminals): position, last loss, rate and time left."""
    from transformers import TrainerCallback

    from act.progress import progress

    class ProgressLines(TrainerCallback):
        def __init__(self) -> None:
            self.bar = None
            self.loss: float | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = progress(state.max_steps, desc, unit="step")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and isinstance(logs.get("loss"), (int, float)):
                self.loss = float(logs["loss"])

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(1, **({"loss": f"{self.loss:.3f}"} if self.loss is not None else {}))

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return ProgressLines()


def quiet_trainer(trainer) -> None:
    """Set the trainer's callbacks: without bars, drop those that print every step's log dict or
    a bar (in `lines` mode a line per 10 % of the steps instead); with `report_to` mlflow, log the
    curves through `MlflowCurves` instead of the stock callback (metrics into the run named by
    MLFLOW_RUN_ID, no TrainingArguments as params)."""
    from transformers.integrations import MLflowCallback

    if any(isinstance(cb, MLflowCallback) for cb in trainer.callback_handler.callbacks):
        trainer.remove_callback(MLflowCallback)
        run_id, uri = os.environ.get("MLFLOW_RUN_ID"), os.environ.get("MLFLOW_TRACKING_URI")
        if run_id and uri:
            trainer.add_callback(mlflow_curves_callback(run_id, uri))
    if interactive():
        return
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if mode() == "lines":
        trainer.add_callback(lines_callback("sft" if "SFT" in type(trainer).__name__ else "dpo"))
