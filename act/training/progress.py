"""Trainer runtime settings shared by SFT and DPO runs, and progress output: bars on a terminal,
nothing per step off it (CI and `dvc repro` logs stay short; the per-step figures go to the
training log and MLflow instead)."""

from __future__ import annotations

import sys


def interactive() -> bool:
    return sys.stderr.isatty()


def runtime_args(*, seed: int, report_to: str | list[str], gradient_checkpointing: bool = False,
                 dtype: str = "auto", optim: str | None = None, section: str = "train") -> dict:
    """TrainingArguments every run here shares: mixed precision from the `dtype` param (CPU: none,
    `use_cpu`), the `optim` param, a log entry every step, no checkpoints (only the adapter is
    kept), seeded data order, bars on a terminal only. `section` names the params in errors."""
    from act.devices import check_optim, precision_args

    optim_arg = {"optim": check_optim(optim, key=f"{section}.optim")} if optim else {}
    return dict(
        logging_steps=1, save_strategy="no", report_to=report_to, seed=seed, data_seed=seed,
        **precision_args(dtype, key=f"{section}.dtype"), **optim_arg, activation_checkpointing=gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None, dataloader_num_workers=0,
        disable_tqdm=not interactive(), warmup_steps=0,
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
