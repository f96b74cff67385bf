"""ACT's quasi-online DPO (the paper's Algorithm 2): `ActDPOTrainer`, a subclass of TRL's DPOTrainer.

This module imports TRL; `act.training.dpo.train_dpo` imports it only when it trains, and stages
build their `OnPolicySampler` from the light `act.training.sampler`, so `--help` stays quick.
`ActDPOTrainer.on_policy_batch` is ACT's step, top to bottom: sample, classify, simulate,
relabel, tokenize; `training_step` then hands the batch to TRL's update. Each departure from
the reference (google-research `learning_to_clarify/act/src/act/trainer/act_trainer.py:
ACTTrainer.concatenated_forward`, `simulation/simulator.py:Simulator.generate_trajectory`) is
noted where it happens; the README's departures table lists them with their switches.

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

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from act.records import TurnRecord
from act.simulate import OUTCOMES, RelabelDecision, Trajectory, offline_action, relabel, rollout
from act.training.fast_forward import FastDPOMixin
from act.training.sampler import ACT_STATE, EXTRA_COLUMNS, OnPolicySampler, TimedPolicy, act_state_name
from act.training.tokenize import tokenize_pair

__all__ = ["ACT_STATE", "EXTRA_COLUMNS", "ActDPOTrainer", "ActPreferenceCollator", "OnPolicySampler",
           "TimedPolicy", "act_state_name", "make_trainer_class"]

log = logging.getLogger(__name__)


class ActPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator plus `row_index` and the per-token loss masks."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
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


class ActDPOTrainer(FastDPOMixin, DPOTrainer):
    """DPOTrainer that relabels each batch from the current policy's trajectories before updating.

    `pairs[i]` is the Phase-1 pair of dataset row i and `records[i]` its record; `sampler` (None =
    plain DPO on the static pairs) holds the roles and settings of a sampling round."""

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
        kwargs.setdefault("data_collator", ActPreferenceCollator(
            pad_token_id=kwargs["processing_class"].pad_token_id if kwargs.get("processing_class") else 0,
            max_length=config.max_length if config else None,
            truncation_mode=config.truncation_mode if config else "keep_start",
        ))
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ the quasi-online loop
    def training_step(self, model, inputs, *args, **kwargs):
        """Every `sample_every` optimizer steps the batch is relabelled on-policy (`on_policy_batch`);
        in between a batch trains on its rows' latest labels. Then TRL's DPO update.
        The reference counts sampling by forward calls (`sample_frequency`); with gradient
        accumulation each micro-batch of a sampling step samples here too, so at 1 they agree."""
        rows = inputs.pop("row_index", None)
        if self.sampler is not None and rows is not None:
            rows = [int(r) for r in rows.tolist()]
            if self.state.global_step % self.sample_every == 0:
                inputs = self.on_policy_batch(rows)
            elif any(r in self._latest for r in rows):
                inputs = self._latest_batch(rows)
        # update: TRL's DPO loss on the (relabelled) pairs. Departures: LoRA, not the reference's full
        # fine-tune; the optimizer and schedule are train.optim / train.lr_scheduler (reference: RMSprop, cosine)
        return super().training_step(model, inputs, *args, **kwargs)

    def on_policy_batch(self, rows: list[int]) -> dict:
        """ACT's step on one batch (Algorithm 2, lines 4-12), top to bottom."""
        s, step = self.sampler, self.state.global_step
        started = time.perf_counter()
        # 1-3. sample the current policy, classify each first turn, simulate the user where it asks
        policy = TimedPolicy(self._sampling_policy(step))
        trajectories = self._rollout(rows, policy)
        rollout_s = time.perf_counter() - started
        # 4. relabel each pair from its trajectory (the reference's decision table, act.simulate.relabel)
        decisions = [relabel(self.pairs[i], t, simulate=s.simulate_trajectories, wrong_action_rule=s.wrong_action_rule)
                     for i, t in zip(rows, trajectories)]
        # 5. tokenize the relabelled pairs exactly as the static ones were, and collate them
        examples, fit = self._tokenize(rows, decisions)
        batch = self.data_collator(examples)
        batch.pop("row_index", None)
        self._log_round(step, rows, trajectories, decisions, policy, fit, rollout_s, started)
        # 6. update: `training_step` hands this batch to TRL's DPO step
        return self._prepare_inputs(batch)

    def _sampling_policy(self, step: int):
        """The current policy as a sampler: HF `generate`, or vLLM with the latest weights pushed.
        Departures from `Simulator.generate_response`: the chats are batched and rendered with the
        chat template, and a turn is kept whole (the reference keeps its first line)."""
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

    def _rollout(self, rows: list[int], policy) -> list[Trajectory]:
        """Sample, classify and simulate (`act.simulate.rollout`). As in the reference, the user
        follows the gold branch (the one the kept winner and SFT use) and answers a question only
        where the pair's winning action is CLARIFY (`Simulator.should_simulate`). Departure: the
        user is the simulator role answering from the branch's intent (offline: its recorded
        reply), not an intent-summary model plus a prompted LLM. "w/o trajectory simulation":
        no question is answered, and a direct answer is still scored."""
        s = self.sampler
        return rollout(
            [self.records[i] for i in rows], policy, s.classifier, s.simulator, s.scorer,
            max_clarify_turns=s.max_clarify_turns if s.simulate_trajectories else 0,
            tolerance=s.tolerance, system_template=s.system_template,
            reply_to=[self.pairs[i]["chosen_action"] == "clarify" for i in rows],
        )

    def _tokenize(self, rows: list[int], decisions: Sequence[RelabelDecision]) -> tuple[list[dict], Counter]:
        """The relabelled pairs as training examples, on the prompt sampling saw (`fit_pair_prompt`);
        each becomes its row's latest label. Departure: a trajectory is a list of chat turns (the
        user's reply its own turn, maskable with train.mask_user_turns), not one "Assistant: ...
        User: ..." string; a pair whose sides came out identical trains as it is (zero margin, no
        gradient) where the reference falls back to the Phase-1 pair (`post_process_features`)."""
        from act.chat import fit_pair_prompt

        examples, fit = [], Counter()
        for i, d in zip(rows, decisions):
            fitted = fit_pair_prompt(self.processing_class, self.pairs[i]["prompt"], [d.chosen, d.rejected],
                                     prompt_budget=self.prompt_budget, max_length=self.args.max_length)
            fit["prompts_cut"] += fitted.truncated
            fit["completions_cut"] += not fitted.fits  # TRL's keep_start cut then shortens the completion
            ex = tokenize_pair(self.processing_class, fitted.messages, d.chosen, d.rejected,
                               mask_user_turns=self.mask_user_turns)
            examples.append({**ex, "row_index": i})
            self._latest[i] = examples[-1]
        return examples, fit

    def _log_round(self, step: int, rows: list[int], trajectories: Sequence[Trajectory],
                   decisions: Sequence[RelabelDecision], policy: TimedPolicy, fit: Counter,
                   rollout_s: float, started: float) -> None:
        """The round's counts and timings (`relabel_log`, the trainer's metrics) and its pairs (`rounds`)."""
        s = self.sampler
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
            "samples/truncated": int(getattr(policy.policy, "truncated_samples", 0)),
            "judge/disagreements": sum(disagree),
            "samples/pair_prompts_truncated": fit["prompts_cut"],
            "samples/completions_cut": fit["completions_cut"],
            "samples/prompts_truncated": policy.policy.prompt_stats["truncated"],
            "time/sampling_s": round(policy.seconds, 4),
            "time/simulation_s": round(rollout_s - policy.seconds, 4),
            "time/relabel_total_s": round(time.perf_counter() - started, 4),
        }
        self.sampling_calls += policy.calls
        for key in ("samples/clarify", "samples/policy_wins", "judge/disagreements"):
            self._metrics["train"][key].append(float(entry[key]))
        self.relabel_log.append(entry)
        self.rounds.append({"step": step, "pairs": [{
            "step": step, "row_index": i, "id": self.records[i].id, "gold_action": self.pairs[i]["gold_action"],
            "outcome": d.outcome, "replaced": d.replaced, "score": d.score,
            "chosen_action": d.chosen_action, "rejected_action": d.rejected_action,
            "chosen": d.chosen, "rejected": d.rejected, "trajectory": t.to_row(),
            **({"offline_action": o, "judge_disagrees": True} if dis else {}),
        } for i, d, t, o, dis in zip(rows, decisions, trajectories, offline, disagree)]})
        if self.on_round is not None:
            self.on_round(entry)
        log.info("step %d relabel %s (sampling %.2fs, simulation %.2fs)", step, dict(counts),
                 entry["time/sampling_s"], entry["time/simulation_s"])

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

    # ------------------------------------------------------------------ checkpoint state
    def sampler_state(self) -> dict:
        return {"step": self.state.global_step, "relabel_log": self.relabel_log, "rounds": self.rounds,
                "sampling_calls": self.sampling_calls,
                "latest": [[row, ex] for row, ex in sorted(self._latest.items())]}

    def load_sampler_state(self, checkpoint: str) -> None:
        path = Path(checkpoint) / act_state_name(self.args.process_index, self.args.world_size)
        state = json.loads(path.read_text(encoding="utf-8"))
        self.relabel_log, self.rounds = list(state["relabel_log"]), list(state["rounds"])
        self.sampling_calls = int(state["sampling_calls"])
        self._latest = {int(row): ex for row, ex in state["latest"]}
        log.info("sampler state of step %d restored: %d rounds", state["step"], len(self.rounds))

    def _save_checkpoint(self, model, trial):
        from act.io import write_json

        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / act_state_name(self.args.process_index, self.args.world_size), self.sampler_state())
        super()._save_checkpoint(model, trial)  # trainer_state.json, which marks it complete, comes last

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if resume_from_checkpoint:
            self.load_sampler_state(str(resume_from_checkpoint))
        return super().train(resume_from_checkpoint, *args, **kwargs)


def make_trainer_class() -> type[ActDPOTrainer]:
    """`ActDPOTrainer` (kept for callers written before it had a module-level name)."""
    return ActDPOTrainer


def _collator_class() -> type[ActPreferenceCollator]:
    return ActPreferenceCollator
