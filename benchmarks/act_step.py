"""ACT, plain DPO and SFT step times before and after the fast paths, side by side, plus the step's anatomy.

    python benchmarks/act_step.py --base models/base --pairs data/pairs/ambigsql \
        --databases data/raw/spider/database [--sft models/sft] [--steps 2] [--batch-size 4] [--repeats 3]

"Before" is TRL's own forward (`train.fast_*` / `sft.fast_lm_head` false), "after" the fast paths of
`act.training.fast_forward` (the defaults). Each repeat runs every variant once, in turn
(interleaved, so a load change hits all of them alike); the table gives medians and the 1-minute
load average around the runs. Every variant trains the same model, adapter, pairs and batches with the
same seed; the benchmark asserts that before and after give the same per-step losses (to --tolerance).
ACT samples greedily, so its relabelled batches, and so its losses, match too.

The anatomy (one collated DPO batch, median of --repeats): policy forward+backward, reference
forward, and the LM head alone (forward+backward over the positions each path projects).
Sampling and simulation per step come from the ACT runs. Offline roles (params.yaml `roles`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FAST_OFF = {"fast_lm_head": False, "fast_shared_prefix": False, "fast_ref_cache": False}
FAST_ON = {"fast_lm_head": True, "fast_shared_prefix": True, "fast_ref_cache": True}


_TRAIN_CPU: list[float] = []


def _time_trainer_cpu() -> None:
    """Record the process CPU seconds of every `Trainer.train` call: on a shared machine CPU time
    is far steadier than wall time (it does not count the time other processes hold the cores)."""
    import transformers

    original = transformers.Trainer.train
    if getattr(original, "_act_timed", False):
        return

    def train(self, *args, **kwargs):
        t = time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            _TRAIN_CPU.append(time.process_time() - t)

    train._act_timed = True
    transformers.Trainer.train = train


def _losses(history: list[dict]) -> list[float]:
    return [h["loss"] for h in history if "loss" in h]


def run_dpo(args, params, pairs, records, fast: dict, sampler) -> dict:
    from act.training.dpo import train_dpo

    train = dataclasses.replace(params.train, batch_size=args.batch_size, max_steps=args.steps, save_steps=0,
                                probe_every=0, **fast)
    with tempfile.TemporaryDirectory() as tmp:
        res = train_dpo(args.base, args.sft, pairs, records, Path(tmp) / "adapter", train, seed=params.seed,
                        sampler=sampler, prompt_budget=params.simulate.max_prompt_tokens)
    steps = max(1, res.metrics["steps"])
    m = res.metrics
    return {"step_s": m["train_seconds"] / steps, "step_cpu_s": _TRAIN_CPU[-1] / steps, "sampling_s": m["sampling_seconds"] / steps,
            "simulation_s": m["simulation_seconds"] / steps, "losses": [h["loss"] for h in res.log_history if "loss" in h],
            "ref_rows_computed": m.get("reference_rows_computed"), "ref_rows_cached": m.get("reference_rows_cached")}


def run_sft(args, params, records, fast: bool) -> dict:
    from act.training.sft import train_sft

    sft = dataclasses.replace(params.sft, batch_size=args.batch_size, epochs=1, gradient_accumulation_steps=1,
                              save_steps=0, fast_lm_head=fast)
    with tempfile.TemporaryDirectory() as tmp:
        m, history = train_sft(args.base, records, Path(tmp) / "adapter", sft, seed=params.seed, return_history=True)
    steps = max(1, m["steps"])
    return {"step_s": m["train_seconds"] / steps, "step_cpu_s": _TRAIN_CPU[-1] / steps, "losses": _losses(history)}


def make_sampler(args, params):
    from act.metrics.task import record_scorer
    from act.roles import build_role
    from act.training.act_trainer import OnPolicySampler

    sim = params.simulate
    return OnPolicySampler(build_role("classifier", params.roles), build_role("simulator", params.roles),
                           record_scorer(args.databases), sim.tolerance, sim.max_clarify_turns,
                           max_new_tokens=sim.max_new_tokens, temperature=0.0,
                           max_prompt_tokens=sim.max_prompt_tokens, batch_size=sim.generation_batch_size)


def anatomy(args, params, pairs) -> dict:
    """Median CPU seconds of each part of one DPO update on the first batch, before and after."""
    import torch
    from peft import get_peft_model
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.dpo_trainer import DataCollatorForPreference
    from trl.trainer.utils import add_fused_lm_head

    from act.chat import normalize
    from act.model.loading import get_peft_config, load_model
    from act.training.fast_forward import FastPaths, install_fast_forward, paired_batches
    from act.training.tokenize import tokenize_pair

    outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
    models = {}
    for name in ("before", "after"):
        model, tok = load_model(args.base, None, trainable=True, dtype="fp32", section="train")
        model = get_peft_model(model, get_peft_config(params.train.lora))
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        add_fused_lm_head(model.get_base_model(), outputs=outputs)
        if name == "after":
            install_fast_forward(model.get_base_model(), outputs, FastPaths(shared_prefix=True))
        model.train()
        models[name] = model
    from act.chat import fit_pair_prompt

    examples = []
    for p in pairs[: args.batch_size]:
        fitted = fit_pair_prompt(tok, p["prompt"], [p["chosen"], p["rejected"]],
                                 prompt_budget=params.simulate.max_prompt_tokens, max_length=params.train.max_length)
        ex = tokenize_pair(tok, normalize(tok, fitted.messages), p["chosen"], p["rejected"])
        examples.append({k: ex[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")})
    batch = DataCollatorForPreference(pad_token_id=tok.pad_token_id, max_length=params.train.max_length)(examples)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    kw = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, fused_lm_head=True)
    prompt_tokens = sum(len(e["prompt_ids"]) for e in examples)
    completion_tokens = sum(len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in examples)

    def policy(model, shared):
        model.zero_grad(set_to_none=True)
        with paired_batches(shared):
            out = model(**kw)
        out.log_probs.sum().backward()
        return out.log_probs.detach()

    def reference(model, shared):
        with torch.no_grad(), model.disable_adapter(), paired_batches(shared):
            return model(**kw).log_probs

    lm_head = models["before"].get_base_model().get_output_embeddings()
    hidden_all = torch.randn(batch["input_ids"].size(0) * (batch["input_ids"].size(1) - 1), lm_head.weight.size(1))
    n_scored = int((labels[:, 1:] != -100).sum())

    def head(n):
        h = hidden_all[:n].clone().requires_grad_(True)
        t = torch.zeros(n, dtype=torch.long)
        out = ChunkedLogProbFunction.apply(h, lm_head.weight.detach(), None, t, 1.0, 32768, None, 1.0, outputs)
        out[0].sum().backward()

    parts = {f"{what}_{name}": [] for what in ("policy_fwd_bwd", "reference_fwd", "lm_head_fwd_bwd")
             for name in ("before", "after")}
    check = {}
    for _ in range(args.repeats):
        for name, shared in (("before", False), ("after", True)):
            t = time.process_time()
            check[f"policy_{name}"] = policy(models[name], shared)
            parts[f"policy_fwd_bwd_{name}"].append(time.process_time() - t)
            t = time.process_time()
            check[f"ref_{name}"] = reference(models[name], shared)
            parts[f"reference_fwd_{name}"].append(time.process_time() - t)
            t = time.process_time()
            head(hidden_all.size(0) if name == "before" else n_scored)
            parts[f"lm_head_fwd_bwd_{name}"].append(time.process_time() - t)
    diff = max(float((check["policy_before"] - check["policy_after"]).abs().max()),
               float((check["ref_before"] - check["ref_after"]).abs().max()))
    out = {k: round(statistics.median(v), 3) for k, v in parts.items()}
    out.update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, scored_positions=n_scored,
               projected_positions_before=hidden_all.size(0), max_token_logp_diff=diff)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--base", required=True)
    p.add_argument("--sft", default=None, help="SFT adapter; none = fresh LoRA, reference = base model")
    p.add_argument("--pairs", required=True)
    p.add_argument("--databases", required=True)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="params override, e.g. simulate.max_new_tokens=128")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", default="dpo,act,sft", help="comma-separated subset of dpo,act,sft")
    p.add_argument("--no-anatomy", action="store_true")
    p.add_argument("--tolerance", type=float, default=1e-5, help="largest allowed loss difference before/after")
    p.add_argument("--out", default=None, help="also write the figures here (JSON)")
    args = p.parse_args(argv)

    import yaml

    from act.pairs import load_pairs
    from act.params import load_params

    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    params = load_params(args.params, overrides)
    pairs, records = load_pairs(args.pairs)
    n = args.steps * args.batch_size
    pairs, records = pairs[:n], records[:n]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    _time_trainer_cpu()
    runs: dict[str, list[dict]] = {}
    loads = []
    for rep in range(args.repeats):
        for variant in variants:
            for when, fast in (("before", FAST_OFF), ("after", FAST_ON)):
                loads.append(os.getloadavg()[0])
                if variant == "sft":
                    r = run_sft(args, params, records, fast["fast_lm_head"])
                else:
                    r = run_dpo(args, params, pairs, records, fast, make_sampler(args, params) if variant == "act" else None)
                runs.setdefault(f"{variant}_{when}", []).append(r)
                print(f"repeat {rep} {variant:<4} {when:<6} step {r['step_s']:.2f}s ({r['step_cpu_s']:.2f} CPU s) load {os.getloadavg()[0]:.2f} "
                      f"losses {[round(x, 6) for x in r['losses']]}", flush=True)
    loads.append(os.getloadavg()[0])
    table, worst = {}, {}
    for name, rs in runs.items():
        table[name] = {k: round(statistics.median(r[k] for r in rs), 3)
                       for k in ("step_s", "step_cpu_s", "sampling_s", "simulation_s") if k in rs[0]}
    for variant in variants:
        pairs_ = zip(runs[f"{variant}_before"], runs[f"{variant}_after"])
        worst[variant] = max(abs(a - b) for rb, ra in pairs_ for a, b in zip(rb["losses"], ra["losses"]))
    figures = {"table": table, "max_loss_diff": worst,
               "load_avg_1min": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)},
               "cores": os.cpu_count(), "steps": args.steps, "batch_size": args.batch_size, "repeats": args.repeats}
    for key in ("step_s", "step_cpu_s"):
        for variant in variants:
            b, a = table[f"{variant}_before"][key], table[f"{variant}_after"][key]
            figures[f"{variant}_cut_{key}"] = round(1 - a / b, 3)
        if "act" in variants and "dpo" in variants:
            for when in ("before", "after"):
                figures[f"act_over_dpo_{when}_{key}"] = round(table[f"act_{when}"][key] / table[f"dpo_{when}"][key], 3)
    if not args.no_anatomy:
        figures["anatomy"] = anatomy(args, params, pairs)
    print(json.dumps(figures, indent=2))
    print(f"{'run':<12} {'step s':>8} {'step CPU s':>11} {'sampling':>9} {'simulation':>11}")
    for name, r in table.items():
        print(f"{name:<12} {r['step_s']:>8.3f} {r['step_cpu_s']:>11.3f} {r.get('sampling_s', 0):>9.3f} "
              f"{r.get('simulation_s', 0):>11.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"figures": figures, "runs": runs}, indent=2), encoding="utf-8")
    bad = {v: d for v, d in worst.items() if d > args.tolerance}
    if bad:
        raise SystemExit(f"losses differ before/after the fast paths by more than {args.tolerance}: {bad}")


if __name__ == "__main__":
    main()
