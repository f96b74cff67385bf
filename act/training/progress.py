"""Trainer runtime settings shared by SFT and DPO runs, and progress output: bars on a terminal,
nothing per step off it (CI and `dvc repro` logs stay short; the per-step figures go to the
training log and MLflow instead)."""

from __future__ import annotations

import sys


def interactive() -> bool:
    return sys.stderr.isatty()


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
    """Without a terminal, no weight-loading or `datasets` map/filter bars (call before loading)."""
    if not interactive():
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def quiet_trainer(trainer) -> None:
    """Without a terminal, drop the callbacks that print every step's log dict or a bar."""
    if interactive():
        return
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
