"""ACT's quasi-online DPO (the paper's Algorithm 2) as a subclass of TRL's DPOTrainer.

Every `sample_every` optimizer steps, before the DPO update on a batch, the trainer samples the
*current* policy on the batch's prompts, lets `act.simulate.rollout` classify the action and (for
a clarifying question) continue the conversation with the simulated user and score the outcome,
relabels each pair with `act.simulate.relabel`, re-tokenizes the relabelled pairs exactly as the
static ones were, collates them with the trainer's own collator, and hands that batch to the
parent step. Batches in between train on their latest labels. Each round logs the action mix of
the samples, how many of them won (replaced the chosen side), and, with a model classifier, every
sample the offline surface rule judges differently (in the round's pairs and `judge/disagreements`).

How it hooks into TRL 1.16 (read from `trl/trainer/dpo_trainer.py`):
- `_prepare_dataset` is replaced: `act.training.tokenize.tokenize_pair` mirrors TRL's
  conversational tokenization and adds per-token loss masks; a `row_index` column lets
  `training_step` find the raw pair (prompt, sides, record) of every row in a batch.
- `_set_signature_columns_if_needed` keeps those extra columns past `remove_unused_columns`.
- `ActPreferenceCollator` wraps `DataCollatorForPreference`, passes `row_index` through and
  multiplies the loss masks into `completion_mask` (the user-turn mask; TRL has none).
- Checkpoints (`train.save_steps`): `_save_checkpoint` first writes the sampler's state (the
  rounds so far, their log, the call count and each row's latest relabelled pair) into the
  checkpoint as `act_state.json` (`act_state_<rank>.json` per process under a multi-process
  launch), then lets TRL write the rest, `trainer_state.json` last; `train(resume_from_checkpoint=)`
  reads it back, so a resumed run neither repeats nor loses a round. The RNG states are the
  Trainer's own (rng_state*.pth); each round's sampling seed derives from the step.
- The reference: with a PEFT model that already carries the SFT adapter TRL copies it into a
  frozen "ref" adapter (so the reference IS the SFT policy, also on a 4-bit base where merging is
  impossible); with a fresh adapter the reference is the adapter-disabled base model.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from act.records import SYSTEM_TEMPLATE, TurnRecord
from act.roles.base import ActionClassifier, UserSimulator
from act.simulate import OUTCOMES, Scorer, offline_action, relabel, rollout
from act.training.tokenize import tokenize_pair

log = logging.getLogger(__name__)

EXTRA_COLUMNS = ("row_index", "chosen_loss_mask", "rejected_loss_mask")
ACT_STATE = "act_state.json"


def act_state_name(process_index: int = 0, world_size: int = 1) -> str:
    """The sampler state's file in a checkpoint, one per process of a multi-process launch."""
    return f"act_state_{process_index}.json" if world_size > 1 else ACT_STATE


@dataclass
class OnPolicySampler:
    """What a sampling round needs besides the model: roles, scorer and the simulation settings."""

    classifier: ActionClassifier
    simulator: UserSimulator
    scorer: Scorer
    tolerance: float
    max_clarify_turns: int = 1
    simulate_trajectories: bool = True
    max_new_tokens: int = 64
    temperature: float = 0.0
    """0 = greedy, as the reference code samples (train.sample_temperature)."""
    top_p: float = 1.0
    top_k: int = 0
    max_prompt_tokens: int | None = None
    """Prompt budget (simulate.max_prompt_tokens): the policy samples the `act.chat.fit_prompt` prompt."""
    batch_size: int = 16
    """Chats per generate call (simulate.generation_batch_size)."""
    backend: str = "hf"
    """train.sampler: hf (transformers generate) | vllm (TRL's vLLM integration, `act.model.vllm_policy`)."""
    vllm: Any = None
    """train.vllm (VllmParams) for the vllm backend."""
    engine: Any = None
    """vllm backend: a ready generation engine; None = built from `vllm` on the first round."""
    system_template: str = SYSTEM_TEMPLATE
    judge_backend: str = "offline"
    """The classifier's backend. When it is a model, each round also asks the offline surface rule
    and logs every sample the two judge differently (`judge/disagreements`)."""


class TimedPolicy:
    """Wraps a Policy to separate the time spent sampling from the time spent simulating."""

    def __init__(self, policy):
        self.policy, self.seconds, self.calls = policy, 0.0, 0

    def generate(self, chats):
        t = time.perf_counter()
        try:
            return self.policy.generate(chats)
        finally:
            self.seconds += time.perf_counter() - t
            self.calls += 1


def _collator_class():
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    class ActPreferenceCollator(DataCollatorForPreference):
        """TRL's preference collator plus `row_index` and the per-token loss masks."""

        def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            import torch

            base = [{k: v for k, v in ex.items() if k not in EXTRA_COLUMNS} for ex in examples]
            out = super().torch_call(base)
            if "chosen_loss_mask" in examples[0]:
                # same layout as TRL's completion mask: [chosen..., rejected...], prompt first, keep_start/keep_end
                masks = ([[1] * len(ex["prompt_ids"]) + list(ex["chosen_loss_mask"]) for ex in examples]
                         + [[1] * len(ex["prompt_ids"]) + list(ex["rejected_loss_mask"]) for ex in examples])
                if self.max_length is not None:
                    sl = slice(None, self.max_length) if self.truncation_mode == "keep_start" else slice(-self.max_length, None)
                    masks = [m[sl] for m in masks]
                width = out["completion_mask"].shape[1]
                loss_mask = torch.ones_like(out["completion_mask"])
                for row, m in enumerate(masks):
                    loss_mask[row, : len(m)] = torch.tensor(m[:width], dtype=loss_mask.dtype)
                out["completion_mask"] = out["completion_mask"] * loss_mask
            if "row_index" in examples[0]:
                out["row_index"] = torch.tensor([int(ex["row_index"]) for ex in examples], dtype=torch.long)
            return out

    return ActPreferenceCollator


def make_trainer_class():
    """The ActDPOTrainer class (built lazily so importing this module does not import TRL)."""
    from trl import DPOTrainer

    from act.training.fast_forward import FastDPOMixin

    class ActDPOTrainer(FastDPOMixin, DPOTrainer):
        def __init__(self, *args, pairs: Sequence[dict], records: Sequence[TurnRecord],
                     sampler: OnPolicySampler | None = None, sample_every: int = 1,
                     mask_user_turns: bool = False, on_round: Callable[[dict], None] | None = None,
                     prompt_budget: int | None = None, **kwargs):
            self.pairs, self.records = list(pairs), list(records)
            if len(self.pairs) != len(self.records):
                raise ValueError(f"{len(self.pairs)} pairs but {len(self.records)} records")
            self.sampler, self.sample_every, self.mask_user_turns = sampler, sample_every, mask_user_turns
            self.on_round = on_round
            self.prompt_budget = prompt_budget
            """simulate.max_prompt_tokens: relabelled pairs train on the prompt sampling saw (`fit_pair_prompt`)."""
            self.relabel_log: list[dict] = []
            """One entry per sampling round: step, outcome counts, timings."""
            self.rounds: list[dict] = []
            """The relabelled pairs of each round, for people to read."""
            self.sampling_calls = 0
            self._latest: dict[int, dict] = {}
            """row -> its last relabelled example: what a batch between sampling rounds trains on."""
            self._position: dict[int, int] | None = None
            config = kwargs.get("args")
            kwargs.setdefault("data_collator", _collator_class()(
                pad_token_id=kwargs["processing_class"].pad_token_id if kwargs.get("processing_class") else 0,
                max_length=config.max_length if config else None,
                truncation_mode=config.truncation_mode if config else "keep_start",
            ))
            super().__init__(*args, **kwargs)

        # ------------------------------------------------------------------ checkpoint state
        def sampler_state(self) -> dict:
            return {"step": self.state.global_step, "relabel_log": self.relabel_log, "rounds": self.rounds,
                    "sampling_calls": self.sampling_calls,
                    "latest": [[row, ex] for row, ex in sorted(self._latest.items())]}

        def load_sampler_state(self, checkpoint: str) -> None:
            import json
            from pathlib import Path

            path = Path(checkpoint) / act_state_name(self.args.process_index, self.args.world_size)
            state = json.loads(path.read_text(encoding="utf-8"))
            self.relabel_log, self.rounds = list(state["relabel_log"]), list(state["rounds"])
            self.sampling_calls = int(state["sampling_calls"])
            self._latest = {int(row): ex for row, ex in state["latest"]}
            log.info("sampler state of step %d restored: %d rounds", state["step"], len(self.rounds))

        def _save_checkpoint(self, model, trial):
            from pathlib import Path

            from act.io import write_json

            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / act_state_name(self.args.process_index, self.args.world_size), self.sampler_state())
            super()._save_checkpoint(model, trial)  # trainer_state.json, which marks it complete, comes last

        def train(self, resume_from_checkpoint=None, *args, **kwargs):
            if resume_from_checkpoint:
                self.load_sampler_state(str(resume_from_checkpoint))
            return super().train(resume_from_checkpoint, *args, **kwargs)

        # ------------------------------------------------------------------ data preparation
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            mask = self.mask_user_turns

            def fn(example):
                return tokenize_pair(processing_class, example["prompt"], example["chosen"], example["rejected"],
                                     mask_user_turns=mask)

            dataset = dataset.map(fn, desc=f"Tokenizing {dataset_name} pairs")
            if args.max_length is not None and args.truncation_mode == "keep_start":
                dataset = dataset.filter(lambda ex: len(ex["prompt_ids"]) < args.max_length)
            return dataset

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            self._signature_columns = list(dict.fromkeys([*self._signature_columns, *EXTRA_COLUMNS]))

        # ------------------------------------------------------------------ the quasi-online loop
        def training_step(self, model, inputs, *args, **kwargs):
            rows = inputs.pop("row_index", None)
            if self.sampler is not None and rows is not None:
                rows = [int(r) for r in rows.tolist()]
                if self.state.global_step % self.sample_every == 0:
                    inputs = self._relabelled_batch(rows)
                elif any(r in self._latest for r in rows):
                    inputs = self._latest_batch(rows)
            return super().training_step(model, inputs, *args, **kwargs)

        def _latest_batch(self, rows: list[int]) -> dict:
            """A batch of the rows' latest labels: their last relabelled pair, else the Phase-1 pair."""
            if self._position is None:
                self._position = {int(r): i for i, r in enumerate(self.train_dataset["row_index"])}
            examples = [self._latest.get(r) or {k: self.train_dataset[self._position[r]][k] for k in
                                                ("prompt_ids", "chosen_ids", "rejected_ids", *EXTRA_COLUMNS)}
                        for r in rows]
            batch = self.data_collator(examples)
            batch.pop("row_index", None)
            return self._prepare_inputs(batch)

        def _sampling_policy(self, step: int):
            """The current policy as a sampler: HF `generate`, or vLLM with the latest weights pushed."""
            s, seed = self.sampler, self.args.seed * 100_003 + step
            if s.backend == "vllm":
                from act.model.vllm_policy import VLLMPolicy, vllm_engine

                if s.engine is None:
                    s.engine = vllm_engine(self.model, self.accelerator, self.processing_class, s)
                s.engine.sync_weights()  # the policy changed since the last round
                return VLLMPolicy(s.engine, self.processing_class, max_prompt_tokens=s.max_prompt_tokens, seed=seed)
            from act.model.loading import HFPolicy

            return HFPolicy(self.accelerator.unwrap_model(self.model), self.processing_class,
                            max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                            seed=seed, max_prompt_tokens=s.max_prompt_tokens, batch_size=s.batch_size)

        def _relabelled_batch(self, rows: list[int]) -> dict:
            from act.chat import fit_pair_prompt

            s, step = self.sampler, self.state.global_step
            t0 = time.perf_counter()
            policy = TimedPolicy(self._sampling_policy(step))
            trajectories = rollout(
                [self.records[i] for i in rows], policy, s.classifier, s.simulator, s.scorer,
                max_clarify_turns=s.max_clarify_turns if s.simulate_trajectories else 0,
                tolerance=s.tolerance, system_template=s.system_template,
            )
            t_rollout = time.perf_counter() - t0
            self.sampling_calls += policy.calls
            decisions = [relabel(self.pairs[i], t, simulate=s.simulate_trajectories)
                         for i, t in zip(rows, trajectories)]
            examples, prompts_cut, completions_cut = [], 0, 0
            for i, d in zip(rows, decisions):
                fitted = fit_pair_prompt(self.processing_class, self.pairs[i]["prompt"], [d.chosen, d.rejected],
                                         prompt_budget=self.prompt_budget, max_length=self.args.max_length)
                prompts_cut += fitted.truncated
                completions_cut += not fitted.fits  # TRL's keep_start cut then shortens the completion
                ex = tokenize_pair(self.processing_class, fitted.messages, d.chosen, d.rejected,
                                   mask_user_turns=self.mask_user_turns)
                examples.append({**ex, "row_index": i})
                self._latest[i] = examples[-1]
            batch = self.data_collator(examples)
            batch.pop("row_index", None)
            counts = Counter(d.outcome for d in decisions)
            for outcome in OUTCOMES:
                self._metrics["train"][f"relabel/{outcome}"].append(float(counts.get(outcome, 0)))
            offline = ([offline_action(self.records[i].dataset, t) for i, t in zip(rows, trajectories)]
                       if s.judge_backend != "offline" else [t.first_action for t in trajectories])
            disagree = [o != t.first_action for o, t in zip(offline, trajectories)]
            entry = {
                "step": step, "pairs": len(rows), **{f"relabel/{o}": counts.get(o, 0) for o in OUTCOMES},
                "samples/clarify": sum(t.first_action == "clarify" for t in trajectories),
                "samples/answer": sum(t.first_action == "answer" for t in trajectories),
                "samples/policy_wins": sum(d.replaced == "chosen" for d in decisions),
                "judge/disagreements": sum(disagree),
                "samples/pair_prompts_truncated": prompts_cut,
                "samples/completions_cut": completions_cut,
                "samples/prompts_truncated": policy.policy.prompt_stats["truncated"],
                "time/sampling_s": round(policy.seconds, 4),
                "time/simulation_s": round(t_rollout - policy.seconds, 4),
                "time/relabel_total_s": round(time.perf_counter() - t0, 4),
            }
            for key in ("samples/clarify", "samples/policy_wins", "judge/disagreements"):
                self._metrics["train"][key].append(float(entry[key]))
            self.relabel_log.append(entry)
            round_pairs = [{
                "step": step, "row_index": i, "id": self.records[i].id, "gold_action": self.pairs[i]["gold_action"],
                "outcome": d.outcome, "replaced": d.replaced, "score": d.score,
                "chosen_action": d.chosen_action, "rejected_action": d.rejected_action,
                "chosen": d.chosen, "rejected": d.rejected, "trajectory": t.to_row(),
                **({"offline_action": o, "judge_disagrees": True} if dis else {}),
            } for i, d, t, o, dis in zip(rows, decisions, trajectories, offline, disagree)]
            self.rounds.append({"step": step, "pairs": round_pairs})
            if self.on_round is not None:
                self.on_round(entry)
            log.info("step %d relabel %s (sampling %.2fs, simulation %.2fs)", step, dict(counts),
                     entry["time/sampling_s"], entry["time/simulation_s"])
            return self._prepare_inputs(batch)

    return ActDPOTrainer
