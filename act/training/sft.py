"""Supervised fine-tuning on the gold conversations (the paper's SFT baseline and ACT's start).

Each training record becomes one chat: system message with the context, the history, then the
gold assistant turn; for a CLARIFY turn the gold continuation (clarifying question, the user's
reply from branch 0, the final answer). TRL's SFTTrainer trains a LoRA adapter on assistant
tokens only. The chats are tokenized here (`act.chat.tokenize_chat`: labels -100 outside
assistant turns), so any chat template trains the same way, with or without `{% generation %}`
markers, and with the system message folded in where a template rejects it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

from act.actions import Action
from act.params import SftParams
from act.records import SYSTEM_TEMPLATE, TurnRecord, with_system
from act.training import checkpoints
from act.training.progress import quiet_bars, quiet_trainer, runtime_args


def gold_conversation(record: TurnRecord, system_template: str = SYSTEM_TEMPLATE) -> list[dict[str, str]]:
    """The record's chat with its gold assistant turn(s) appended."""
    chat = with_system(record, system_template)
    if record.action is Action.CLARIFY:
        branch = next((b for b in record.branches if b.reply), record.branches[0])
        return chat + [
            {"role": "assistant", "content": record.gold_response},
            {"role": "user", "content": branch.reply or branch.intent},
            {"role": "assistant", "content": branch.target},
        ]
    return chat + [{"role": "assistant", "content": record.gold_response}]


def sft_config(sft: SftParams, output_dir: str | Path, *, seed: int, report_to: str | list[str] = "none"):
    from trl import SFTConfig

    from act.devices import one_process_one_gpu

    return one_process_one_gpu(SFTConfig(
        output_dir=str(output_dir),
        learning_rate=sft.learning_rate,
        num_train_epochs=sft.epochs,
        per_device_train_batch_size=sft.batch_size,
        gradient_accumulation_steps=sft.gradient_accumulation_steps,
        max_length=sft.max_length,
        assistant_only_loss=False,  # the rows carry their own labels (assistant tokens only)
        packing=False,
        lr_scheduler_type="cosine",
        **runtime_args(seed=seed, report_to=report_to, gradient_checkpointing=sft.gradient_checkpointing,
                       save_steps=sft.save_steps, dtype=sft.dtype, optim=sft.optim, section="sft"),
    ))


def sft_trainer_class():
    """TRL's SFTTrainer with the compact LM head (`act.training.fast_forward`, switch `sft.fast_lm_head`);
    built lazily so importing this module does not import TRL."""
    from trl import SFTTrainer

    from act.training.fast_forward import FastSFTMixin

    class ActSFTTrainer(FastSFTMixin, SFTTrainer):
        pass

    return ActSFTTrainer


def train_sft(base_dir: str | Path, records: Sequence[TurnRecord], out_dir: str | Path, sft: SftParams, *,
              seed: int, report_to: str | list[str] = "none", work_dir: str | Path | None = None,
              checkpoint_dir: str | Path | None = None, run_key: dict | None = None,
              return_history: bool = False, callbacks: Sequence[Any] = ()) -> dict[str, Any] | tuple[dict[str, Any], list[dict]]:
    """Train a LoRA adapter on the gold conversations; saves the adapter only to `out_dir` (on the
    main process of a multi-process launch). With `sft.save_steps` and `checkpoint_dir`, checkpoints
    go there and a run with the same `run_key` resumes from the last one (act.training.checkpoints).
    The returned `resumed_from_step` (0 = fresh) is for logs, not for the DVC metric. With
    `return_history`: (metrics, the Trainer's log history). `callbacks`: extra `TrainerCallback`s
    (e.g. scripts/sft_epochs.py's adapter saved at each epoch end)."""
    import tempfile

    from datasets import Dataset

    from act.chat import completion_length, fit_prompt, tokenize_chat
    from act.model.loading import get_peft_config, load_model, save_adapter
    from act.training.fast_forward import fast_paths

    if not records:
        raise ValueError("no training records for SFT")
    quiet_bars()
    model, tok = load_model(base_dir, None, quantization=sft.quantization, trainable=True,
                          gradient_checkpointing=sft.gradient_checkpointing, dtype=sft.dtype,
                          attn_implementation=sft.attn_implementation, section="sft")
    tok.padding_side = "right"  # training pads on the right; sampling sets left itself
    rows, truncated, dropped = [], 0, 0
    for r in records:
        # the gold turns stay whole; the prompt gives way (act.chat.fit_prompt: context middle, then oldest history)
        prompt = with_system(r)
        gold = gold_conversation(r)[len(prompt):]
        fitted = fit_prompt(tok, prompt, sft.max_length, reserve=completion_length(tok, prompt, gold))
        if not fitted.fits:
            dropped += 1  # even a minimal prompt leaves no room for the whole gold turns
            continue
        truncated += fitted.truncated
        rows.append(tokenize_chat(tok, fitted.messages + gold))
    if not rows:
        raise ValueError(f"no SFT conversation's gold turns fit sft.max_length={sft.max_length} tokens, even with "
                         "its context and history cut; raise sft.max_length")
    dataset = Dataset.from_list(rows)
    saving = sft.save_steps > 0 and checkpoint_dir is not None
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        args = sft_config(sft, checkpoint_dir if saving else tmp, seed=seed, report_to=report_to)
        resume = None
        if saving:
            with args.main_process_first(desc="checkpoint check"):
                resume = checkpoints.prepare(checkpoint_dir, run_key or {"key": ""})
        trainer = sft_trainer_class()(model=model, args=args, train_dataset=dataset, processing_class=tok,
                                      peft_config=get_peft_config(sft.lora), fast=fast_paths(sft))
        for callback in callbacks:
            trainer.add_callback(callback)
        quiet_trainer(trainer)
        t0 = time.perf_counter()
        out = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        seconds = time.perf_counter() - t0
    if trainer.accelerator.is_main_process:
        save_adapter(trainer.model, str(out_dir))  # target_modules sorted: byte-reproducible
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h and math.isfinite(h["loss"])]
    metrics = {
        "enabled": True,
        "examples": len(records),
        "examples_truncated": truncated,
        "examples_dropped_too_long": dropped,
        "steps": int(trainer.state.global_step),
        # resumed: the Trainer averages only the steps it ran itself; the log holds every step's loss
        "train_loss": round(float(sum(losses) / len(losses) if resume and losses else out.training_loss), 6),
        "loss_first": round(losses[0], 6) if losses else None,
        "loss_last": round(losses[-1], 6) if losses else None,
        "train_seconds": round(seconds, 2),
        "resumed_from_step": checkpoints.resumed_step(resume),
    }
    return (metrics, list(trainer.state.log_history)) if return_history else metrics
