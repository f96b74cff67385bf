"""ACT step time split into sampling, simulation and DPO update, against a plain TRL DPO step.

    python benchmarks/act_step.py --base models/base --sft models/sft --pairs data/pairs/ambigsql \
        --databases data/raw/spider/database [--steps 4] [--batch-size 8]

Both runs use the same model, adapter, pairs and batch size; the plain run is TRL's DPOTrainer
step on the Phase-1 pairs (`train.on_policy=false`). Offline roles (params.yaml `roles`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--base", required=True)
    p.add_argument("--sft", required=True)
    p.add_argument("--pairs", required=True)
    p.add_argument("--databases", required=True)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)

    from act.metrics.task import record_scorer
    from act.params import load_params
    from act.roles import build_role
    from act.training.act_trainer import OnPolicySampler
    from act.training.dpo import train_dpo
    from act.pairs import load_pairs

    params = load_params(args.params)
    sim = params.simulate
    pairs, records = load_pairs(args.pairs)
    n = args.steps * args.batch_size
    pairs, records = pairs[:n], records[:n]
    train = dataclasses.replace(params.train, batch_size=args.batch_size, max_steps=args.steps)
    out = {}
    for name, sampler in [
        ("plain_dpo", None),
        ("act", OnPolicySampler(build_role("classifier", params.roles), build_role("simulator", params.roles),
                                record_scorer(args.databases), sim.tolerance, sim.max_clarify_turns,
                                max_new_tokens=sim.max_new_tokens, temperature=sim.temperature,
                                max_prompt_tokens=sim.max_prompt_tokens, batch_size=sim.generation_batch_size)),
    ]:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = train_dpo(args.base, args.sft, pairs, records, Path(tmp) / "adapter", train, seed=params.seed,
                            sampler=sampler, prompt_budget=sim.max_prompt_tokens)
            wall = time.perf_counter() - t0
        steps = max(1, res.metrics["steps"])
        sampling = res.metrics["sampling_seconds"] / steps
        simulation = res.metrics["simulation_seconds"] / steps
        step = res.metrics["train_seconds"] / steps
        out[name] = {"steps": steps, "step_s": round(step, 3), "sampling_s": round(sampling, 3),
                     "simulation_s": round(simulation, 3), "dpo_update_s": round(step - sampling - simulation, 3),
                     "wall_s_incl_loading": round(wall, 2)}
    print(json.dumps(out, indent=2))
    print(f"{'run':<10} {'step s':>8} {'sampling':>9} {'simulation':>11} {'DPO update':>11}")
    for name, r in out.items():
        print(f"{name:<10} {r['step_s']:>8.3f} {r['sampling_s']:>9.3f} {r['simulation_s']:>11.3f} {r['dpo_update_s']:>11.3f}")


if __name__ == "__main__":
    main()
