"""Config -> TRL/PEFT objects, the starting policy, and one ACT (or plain DPO) training run.

Which policy starts and which is the reference (tested in tests/test_train.py):

    train.init=sft, SFT adapter present -> policy: base + SFT adapter (trainable, continued);
                                           reference: base + a frozen copy of the SFT adapter
                                           ("ref" adapter that TRL makes) = the SFT policy.
                                           Works on a 4-bit base too, where merging is impossible.
    train.init=base or no SFT adapter   -> policy: base + fresh LoRA (train.lora);
                                           reference: adapter disabled = the base model.

Only the trained adapter ("default") is saved; never the (possibly 4-bit) base weights.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from act.params import TrainParams
from act.records import TurnRecord
from act.training.progress import quiet_bars, quiet_trainer, runtime_args

log = logging.getLogger(__name__)


def dpo_config(train: TrainParams, output_dir: str | Path, *, seed: int, report_to: str | list[str] = "none",
               probe: bool = False):
    """DPOConfig from the `train` section (CPU: use_cpu, no bf16). With `probe`, the eval dataset
    (the fixed probe pairs) is scored before training and every `train.probe_every` steps."""
    from trl import DPOConfig

    from act.devices import one_process_one_gpu

    evals = dict(eval_strategy="steps", eval_steps=train.probe_every, eval_on_start=True, prediction_loss_only=True,
                 per_device_eval_batch_size=train.batch_size) if probe and train.probe_every > 0 else {}
    return one_process_one_gpu(DPOConfig(
        **evals,
        output_dir=str(output_dir),
        beta=train.beta,
        loss_type=list(train.loss_type),
        learning_rate=train.learning_rate,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        # prompts arrive fitted (act.chat.fit_pair_prompt): prompt + completion <= max_length, so TRL's
        # keep_start cut (the end of the completion) only acts on a relabelled pair that cannot fit (counted)
        max_length=train.max_length,
        truncation_mode="keep_start",
        lr_scheduler_type=train.lr_scheduler,  # the reference: cosine (TrainingConfig.lr_scheduler_type)
        remove_unused_columns=True,
        **runtime_args(seed=seed, report_to=report_to, gradient_checkpointing=train.gradient_checkpointing,
                       save_steps=train.save_steps, dtype=train.dtype, optim=train.optim, section="train"),
    ))


def start_policy(base_dir: str | Path, sft_dir: str | Path | None, train: TrainParams):
    """(model, tokenizer, peft_config, reference description) for the DPO run; see module doc."""
    from act.model.loading import get_peft_config, has_adapter, load_model

    knobs = dict(quantization=train.quantization, trainable=True, gradient_checkpointing=train.gradient_checkpointing,
                 dtype=train.dtype, attn_implementation=train.attn_implementation, section="train")
    if train.init == "sft" and has_adapter(sft_dir):
        model, tok = load_model(base_dir, sft_dir, **knobs)
        peft_config, reference = None, "sft_adapter_copy"
    else:
        model, tok = load_model(base_dir, None, **knobs)
        peft_config, reference = get_peft_config(train.lora), "base_adapter_disabled"
    return model, tok, peft_config, reference


def _fitted(tok, pair: dict, prompt_budget: int | None, max_length: int | None, counts: Counter) -> list | None:
    """The pair's prompt fitted for DPO (`act.chat.fit_pair_prompt`), counted; None when it cannot fit."""
    from act.chat import fit_pair_prompt, fit_prompt

    fitted = fit_pair_prompt(tok, pair["prompt"], [pair["chosen"], pair["rejected"]], prompt_budget=prompt_budget,
                             max_length=max_length)
    if not fitted.fits:
        return None
    sampled = fit_prompt(tok, pair["prompt"], prompt_budget) if prompt_budget else None
    counts["truncated"] += fitted.truncated
    counts["context_tokens_cut"] += fitted.context_cut
    counts["turns_dropped"] += fitted.turns_dropped
    counts["cut_below_sampling_prompt"] += sampled is not None and fitted.messages != sampled.messages
    return fitted.messages


@dataclass
class TrainResult:
    metrics: dict[str, Any]
    log_history: list[dict] = field(default_factory=list)
    relabel_log: list[dict] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)
    probe_history: list[dict] = field(default_factory=list)
    """{step, loss, rewards/margins, rewards/accuracies, ...} on the probe pairs, before training and every N steps."""
    resumed_from_step: int = 0
    """The checkpoint's step this run resumed from (0 = it started fresh)."""


def train_dpo(base_dir: str | Path, sft_dir: str | Path | None, pairs: Sequence[dict], records: Sequence[TurnRecord],
              out_dir: str | Path, train: TrainParams, *, seed: int, sampler=None,
              report_to: str | list[str] = "none", work_dir: str | Path | None = None,
              probe: Sequence[dict] = (), prompt_budget: int | None = None,
              checkpoint_dir: str | Path | None = None, run_key: dict | None = None) -> TrainResult:
    """Train the adapter with DPO on `pairs` (relabelled on-policy when `sampler` is given) and
    save it to `out_dir`. `records[i]` is the record of `pairs[i]`. `probe`: fixed pairs (the eval
    split's Phase-1 pairs) whose DPO margins and reward accuracy are measured before training and
    every `train.probe_every` steps: unlike the training batches' figures, taken on fresh samples,
    these show whether the policy moves towards the gold action on turns it never trains on.

    `prompt_budget` (simulate.max_prompt_tokens): every prompt is fitted by `act.chat.fit_pair_prompt`,
    so DPO trains on the prompt sampling sees, with the whole completion; pairs that cannot fit
    train.max_length even with a minimal prompt are dropped (counted).
    With `train.save_steps` and `checkpoint_dir`, checkpoints go there and a run with the same
    `run_key` resumes from the last one, sampler state included (act.training.checkpoints).
    Under a multi-process launch only the main process saves the adapter."""
    import tempfile

    from datasets import Dataset

    from act.training import checkpoints
    from act.training.act_trainer import act_state_name, make_trainer_class
    from act.training.fast_forward import fast_paths

    if not pairs:
        raise ValueError("no preference pairs to train on")
    quiet_bars()
    model, tok, peft_config, reference = start_policy(base_dir, sft_dir, train)
    from act.chat import normalize

    # the fitted prompt, as this template takes it (system folded into the first user turn where it must be)
    fit_counts = Counter()
    rows = [{"prompt": normalize(tok, fitted), "chosen": list(p["chosen"]), "rejected": list(p["rejected"]),
             "row_index": i} for i, p in enumerate(pairs)
            if (fitted := _fitted(tok, p, prompt_budget, train.max_length, fit_counts)) is not None]
    if not rows:
        raise ValueError(f"no pair fits train.max_length={train.max_length} tokens even with its context and history "
                         "cut; raise train.max_length")
    dataset = Dataset.from_list(rows)
    use_probe = bool(probe) and train.probe_every > 0
    probe_rows = [{"prompt": normalize(tok, fitted), "chosen": list(p["chosen"]), "rejected": list(p["rejected"])}
                  for p in probe if (fitted := _fitted(tok, p, prompt_budget, train.max_length, Counter())) is not None]
    probe_set = Dataset.from_list(probe_rows) if use_probe and probe_rows else None
    use_probe = probe_set is not None
    saving = train.save_steps > 0 and checkpoint_dir is not None
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        args = dpo_config(train, checkpoint_dir if saving else tmp, seed=seed, report_to=report_to, probe=use_probe)
        resume = None
        if saving:
            with args.main_process_first(desc="checkpoint check"):
                resume = checkpoints.prepare(checkpoint_dir, run_key or {"key": ""},
                                             required=[act_state_name(args.process_index, args.world_size)])
        trainer = make_trainer_class()(
            model=model, args=args,
            train_dataset=dataset, eval_dataset=probe_set, processing_class=tok, peft_config=peft_config,
            pairs=pairs, records=records, sampler=sampler, sample_every=train.sample_every,
            mask_user_turns=train.mask_user_turns, prompt_budget=prompt_budget, fast=fast_paths(train),
        )
        kept = len(trainer.train_dataset)
        if kept == 0:
            raise ValueError(f"all {len(pairs)} pairs have a prompt of at least train.max_length="
                             f"{train.max_length} tokens; raise train.max_length")
        if kept < len(pairs):
            log.warning("%d of %d pairs dropped: even with a minimal prompt they pass train.max_length=%d tokens",
                        len(pairs) - kept, len(pairs), train.max_length)
        quiet_trainer(trainer)
        t0 = time.perf_counter()
        out = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        seconds = time.perf_counter() - t0
        probed = [h["step"] for h in trainer.state.log_history if "eval_rewards/margins" in h]
        if use_probe and (not probed or probed[-1] != trainer.state.global_step):
            trainer.evaluate()  # the probe figures of the trained policy, also between two probe steps
    if trainer.args.world_size > 1:  # each process sampled its own share of every batch
        trainer.relabel_log, trainer.rounds, trainer.sampling_calls = _gather_rounds(trainer)
    if trainer.accelerator.is_main_process:
        from act.model.loading import save_adapter

        save_adapter(trainer.model, str(out_dir), selected_adapters=["default"])  # byte-reproducible
    history = [h for h in trainer.state.log_history if "loss" in h or "train_loss" in h]
    probe_history = [{"step": int(h["step"]), **{k.removeprefix("eval_"): v for k, v in h.items() if k.startswith("eval_")}}
                     for h in trainer.state.log_history if "eval_rewards/margins" in h]
    steps = [h for h in history if "rewards/margins" in h]
    last = steps[-1] if steps else {}
    totals = {k: sum(e[k] for e in trainer.relabel_log)
              for k in (trainer.relabel_log[0] if trainer.relabel_log else {})
              if k.startswith(("relabel/", "samples/", "judge/"))}
    probe_figures = {}
    if probe_history:
        first_p, last_p = probe_history[0], probe_history[-1]
        probe_figures = {"probe/pairs": len(trainer.eval_dataset),
                         **{f"probe/{when}/{k}": round(float(h[k]), 6) for when, h in (("start", first_p), ("end", last_p))
                            for k in ("rewards/margins", "rewards/accuracies", "loss") if k in h}}
    metrics = {
        "steps": int(trainer.state.global_step),
        "pairs": len(pairs),
        "pairs_dropped_too_long": len(pairs) - kept,
        **{f"prompts/{k}": v for k, v in sorted(fit_counts.items())},
        # resumed: the Trainer averages only the steps it ran itself; the log holds every step's loss
        "train_loss": round(float(_mean_loss(history) if resume else out.training_loss), 6),
        "train_seconds": round(seconds, 2),
        "reference": reference,
        "reference_rows_computed": trainer.ref_rows["computed"],
        "reference_rows_cached": trainer.ref_rows["cached"],
        "sampling_rounds": len(trainer.relabel_log),
        "sampling_calls": trainer.sampling_calls,
        "sampling_seconds": round(sum(e["time/sampling_s"] for e in trainer.relabel_log), 2),
        "simulation_seconds": round(sum(e["time/simulation_s"] for e in trainer.relabel_log), 2),
        **{f"final/{k}": round(float(v), 6) for k, v in last.items()
           if k.startswith(("rewards/", "logps/", "loss")) and isinstance(v, (int, float)) and math.isfinite(v)},
        "mean/rewards/accuracies": round(sum(h["rewards/accuracies"] for h in steps) / len(steps), 6) if steps else 0.0,
        "mean/rewards/margins": round(sum(h["rewards/margins"] for h in steps) / len(steps), 6) if steps else 0.0,
        **totals,
        **probe_figures,
    }
    return TrainResult(metrics, history, trainer.relabel_log, trainer.rounds, probe_history,
                       checkpoints.resumed_step(resume))


def _gather_rounds(trainer) -> tuple[list[dict], list[dict], int]:
    """Every process's sampling rounds as one log: per step, counts and timings summed over the
    processes and the relabelled pairs of all of them."""
    from accelerate.utils import gather_object

    logs = gather_object([trainer.relabel_log])
    rounds = gather_object([trainer.rounds])
    calls = sum(gather_object([trainer.sampling_calls]))
    merged: dict[int, dict] = {}
    for entry in (e for log_ in logs for e in log_):
        into = merged.setdefault(entry["step"], {"step": entry["step"]})
        for k, v in entry.items():
            if k != "step":
                into[k] = round(into.get(k, 0) + v, 4) if isinstance(v, float) else into.get(k, 0) + v
    pairs: dict[int, list] = {}
    for r in (r for part in rounds for r in part):
        pairs.setdefault(r["step"], []).extend(r["pairs"])
    return ([merged[s] for s in sorted(merged)], [{"step": s, "pairs": pairs[s]} for s in sorted(pairs)], calls)


def _mean_loss(history: list[dict]) -> float:
    losses = [h["loss"] for h in history if "loss" in h and math.isfinite(h["loss"])]
    return sum(losses) / len(losses) if losses else float("nan")
