"""train: ACT, quasi-online DPO from the SFT policy -> `models/act` (LoRA adapter) + `data/train`.

    python -m stages.train --base models/base --sft models/sft --pairs data/pairs/ambigsql \
        --simulated data/simulate/ambigsql --databases data/raw/spider/database \
        --out models/act --log-dir data/train --metrics metrics/train.json

With the defaults (`train.on_policy: true`, `train.sampling: every`) the current policy is
sampled every `train.sample_every` optimizer steps on the upcoming batch, each sample is
classified, clarifying ones are continued with the simulated user and scored, and the pairs are
relabelled before the DPO update (`act.training.act_trainer.ActDPOTrainer.on_policy_batch`; the
simulated user follows the gold branch, the one the kept Phase-1 winner and SFT use). Ablations: `on_policy: false`
trains on the Phase-1 pairs; `sampling: once` on the simulate stage's relabelled pairs;
`simulate_trajectories: false` judges samples by action only; `init: base` starts unaligned.

On-policy samples are drawn at `train.sample_temperature` (default 0: greedy, as the reference
code). An http/local classifier must first pass the labelled check set (`roles.classifier.min_check_f1`).

`data/train` holds `log.jsonl` (one line per logged step: DPO loss, rewards, margins,
accuracies, relabel counts; these are taken on the batch's fresh samples), `probe.jsonl` (DPO
loss, margins and reward accuracy on the fixed probe set, the eval split's Phase-1 pairs, before
training and every `train.probe_every` steps), `relabel.jsonl` (one line per sampling round:
outcome counts, action mix of the samples, policy-side winners, judge disagreements, timings)
and `rounds/step_XXXXX.jsonl` (the relabelled pairs of every round; a pair whose sample the
offline rule judges differently from a model classifier carries `offline_action` and
`judge_disagrees`).

Every `train.save_steps` steps a checkpoint (adapter, optimizer, RNG states and the sampler's
rounds) goes to `--checkpoints` (default checkpoints/train, outside DVC's outs): a rerun after a
crash or kill -9 resumes from it when params and inputs are unchanged, and the rounds log holds
each round once. It is removed once the outputs are written (act.training.checkpoints). Under
`accelerate launch` (python -m stages.launch train ..., params `launch`) every process trains and
the main one alone writes the adapter, logs, metrics and MLflow run.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from act.params import Params

log = logging.getLogger("act.train")


CLOCK_KEYS = frozenset({"runtime", "samples_per_second", "steps_per_second"})
"""Wall-clock figures of the Trainer's log (`train_runtime`, `eval_samples_per_second`, the
probe's `runtime`, ...) and ACT's `time/*`: they differ on every run, so they stay out of the
DVC-tracked log (data/train) and reach MLflow and metrics/timings/ with the stage's timings."""


def _is_clock(key: str) -> bool:
    name = key.rsplit("/", 1)[-1].removeprefix("train_").removeprefix("eval_")
    return name in CLOCK_KEYS or key.startswith("time/")


def without_clock(entry: dict) -> dict:
    """`entry` without wall-clock keys, so two runs of the same training write byte-identical
    logs and dvc.lock stays put."""
    return {k: v for k, v in entry.items() if not _is_clock(k)}


def run(params: Params, *, base: str | Path, sft: str | Path, pairs_dir: str | Path, simulated: str | Path,
        databases: str | Path, out: str | Path, log_dir: str | Path, metrics_path: str | Path,
        classifier=None, simulator=None, checkpoint_dir: str | Path | None = None) -> dict[str, Any]:
    """`classifier` / `simulator` replace the configured roles (e.g. in tests). `checkpoint_dir`:
    where checkpoints go (the command line: checkpoints/train; None = `checkpoints/train` beside `out`)."""
    import dataclasses

    from act import distributed
    from act.io import require_dir
    from act.metrics.task import record_scorer
    from act.model.loading import ADAPTER_MARKER
    from act.roles import build_role
    from act.metrics.checks import require_valid
    from act.training import checkpoints
    from act.training.sampler import OnPolicySampler
    from act.training.dpo import train_dpo
    from act.tracking import stage_run
    from act.pairs import load_pairs

    cfg, sim = params.train, params.simulate
    if cfg.sampler == "vllm" and cfg.on_policy and cfg.sampling == "every":
        from act.model.vllm_policy import check_vllm

        check_vllm()  # before any model loads: the [vllm] extra and a GPU, or a ParamsError naming train.sampler
    require_dir(sft, "--sft")  # a missing SFT dir would silently train from the base model
    require_dir(databases, "--databases")
    started = time.monotonic()
    online = cfg.on_policy and cfg.sampling == "every"
    if cfg.on_policy and cfg.sampling == "once":
        pairs, records, source = *load_pairs(simulated, relabelled=True), "simulate"
    else:
        pairs, records, source = *load_pairs(pairs_dir), "pairs"
    probe = load_probe(pairs_dir) if cfg.probe_every > 0 else []
    sampler = None
    if online:
        if classifier is None:
            classifier = build_role("classifier", params.roles)
            require_valid(classifier, params.roles.classifier)  # an LLM judge must pass the check set first
        sampler = OnPolicySampler(
            classifier=classifier,
            simulator=simulator or build_role("simulator", params.roles),
            scorer=record_scorer(databases), tolerance=sim.tolerance,
            max_clarify_turns=sim.max_clarify_turns, simulate_trajectories=cfg.simulate_trajectories,
            max_new_tokens=sim.max_new_tokens, temperature=cfg.sample_temperature, top_p=cfg.sample_top_p,
            top_k=cfg.sample_top_k, max_prompt_tokens=sim.max_prompt_tokens,
            judge_backend=params.roles.classifier.backend,
            batch_size=sim.generation_batch_size, backend=cfg.sampler, vllm=cfg.vllm,
            wrong_action_rule=sim.wrong_action_rule,
        )
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else Path(out).parent / "checkpoints" / "train"
    key = checkpoints.run_key({"stage": "train", "seed": params.seed, "dataset": params.dataset,
                               "train": dataclasses.replace(cfg, save_steps=0), "simulate": sim,
                               "classifier": params.roles.classifier, "simulator": params.roles.simulator,
                               "processes": distributed.world_size()},
                              [base, sft, pairs_dir, databases, *([simulated] if source == "simulate" else [])])
    with stage_run("train", params, cfg, tags={"act.dataset": params.dataset}) as tracker:
        with distributed.output_dir(out) as tmp:
            result = train_dpo(base, sft, pairs, records, tmp, cfg, seed=params.seed, sampler=sampler,
                               report_to=["mlflow"] if tracker.run_id else "none", work_dir=Path(out).parent,
                               probe=probe, prompt_budget=sim.max_prompt_tokens, checkpoint_dir=ckpt, run_key=key)
            (tmp / ADAPTER_MARKER).write_text(json.dumps({"adapter": True, "stage": "train", "init": cfg.init}) + "\n")
        if result.resumed_from_step:
            tracker.set_tags({"act.resumed_from_step": str(result.resumed_from_step)})
        with distributed.output_dir(log_dir) as tmp:
            by_step = rounds_by_step(result.relabel_log)
            with open(tmp / "log.jsonl", "w", encoding="utf-8") as fh:
                for i, h in enumerate(result.log_history):
                    step = int(h.get("step", i + 1)) - 1  # TRL logs after the update; sampling happened before it
                    relabel = {k: v for k, v in by_step.get(step, {}).items() if k != "step"}
                    fh.write(json.dumps(without_clock({**h, **relabel}), sort_keys=True) + "\n")
                for h in result.probe_history:  # the probe figures, keyed apart from the batch's own
                    fh.write(json.dumps({"step": h["step"], **{f"probe/{k}": v for k, v in without_clock(h).items()
                                                               if k != "step"}}, sort_keys=True) + "\n")
            with open(tmp / "probe.jsonl", "w", encoding="utf-8") as fh:
                for h in result.probe_history:
                    fh.write(json.dumps(without_clock(h), sort_keys=True) + "\n")
            with open(tmp / "relabel.jsonl", "w", encoding="utf-8") as fh:
                for e in result.relabel_log:
                    fh.write(json.dumps(without_clock(e), sort_keys=True) + "\n")
            (tmp / "rounds").mkdir()
            for r in result.rounds:
                with open(tmp / "rounds" / f"step_{r['step']:05d}.jsonl", "w", encoding="utf-8") as fh:
                    for row in r["pairs"]:
                        fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        metrics = {"pair_source": source, "on_policy_sampling": online, "init": cfg.init, **result.metrics,
                   # on-policy turns cut at simulate.max_new_tokens (a cut answer rarely scores)
                   "truncated_samples": int(result.metrics.get("samples/truncated", 0))}
        tracker.finish(metrics, metrics_path, started=started,
                       artifacts=((out, "adapter"), (Path(log_dir) / "log.jsonl", "train_log")))
    distributed.wait_for_everyone()
    if distributed.is_main_process():
        checkpoints.finish(ckpt)  # adapter and logs are written: the checkpoints have served
        log.info("train: %d steps, %d sampling rounds, %.1fs%s", metrics["steps"], metrics["sampling_rounds"],
                 metrics["seconds"], f" (resumed from step {result.resumed_from_step})" if result.resumed_from_step else "")
    return metrics


def load_probe(pairs_dir: str | Path) -> list[dict]:
    """The eval split's Phase-1 pairs (the fixed probe set), or none when the pair set has no eval split."""
    from act.io import load_dataset_dict
    from act.pairs import load_pairs

    if "eval" not in load_dataset_dict(pairs_dir):
        log.warning("%s has no eval split: no probe-set margins are logged (re-run the pairs stage)", pairs_dir)
        return []
    return load_pairs(pairs_dir, "eval")[0]


def rounds_by_step(relabel_log: list[dict]) -> dict[int, dict]:
    """The sampling rounds' counts summed per optimizer step (wall-clock keys dropped): with
    `train.gradient_accumulation_steps` > 1 every forward pass of a step samples its own round,
    and all of them belong to that step's line of the training log."""
    by_step: dict[int, dict] = {}
    for entry in relabel_log:
        merged = by_step.setdefault(entry["step"], {"step": entry["step"]})
        for k, v in without_clock(entry).items():
            if k != "step":
                merged[k] = merged.get(k, 0) + v
    return by_step


def main(argv: list[str] | None = None) -> None:
    from stages.common import load, parser, setup_logging

    p = parser("train", __doc__)
    p.add_argument("--base", required=True, help="base model directory")
    p.add_argument("--sft", required=True, help="SFT adapter directory (start and reference policy)")
    p.add_argument("--pairs", required=True, help="Phase-1 pair DatasetDict")
    p.add_argument("--simulated", required=True, help="simulate stage output (pairs for sampling=once)")
    p.add_argument("--databases", required=True, help="SQLite databases dir for SQL execution scoring")
    p.add_argument("--out", required=True, help="output adapter directory")
    p.add_argument("--log-dir", required=True, help="training log + relabelled pairs directory")
    p.add_argument("--metrics", required=True, help="metrics JSON path")
    p.add_argument("--checkpoints", default="checkpoints/train",
                   help="checkpoint folder, outside DVC's outs (default: checkpoints/train)")
    args = p.parse_args(argv)
    setup_logging()
    from act.distributed import is_main_process

    if not is_main_process():
        logging.getLogger().setLevel(logging.WARNING)  # one log: the main process's
    run(load(args), base=args.base, sft=args.sft, pairs_dir=args.pairs, simulated=args.simulated,
        databases=args.databases, out=args.out, log_dir=args.log_dir, metrics_path=args.metrics,
        checkpoint_dir=args.checkpoints)


if __name__ == "__main__":
    from act.errors import run_cli

    run_cli(main)  # one-line errors; --debug or ACT_DEBUG=1 for the traceback
