"""Rollout throughput of the policy: generated turns per second at several batch sizes, with the
LoRA adapter merged into the weights while sampling and without.

    python benchmarks/rollout.py --base models/base --adapter models/sft --pairs data/pairs/ambigsql
    python benchmarks/rollout.py --base /tmp/smollm2-base --pairs data/pairs/abg_coqa --prompts 32

Without --adapter a fresh LoRA (r=16 on attention and MLP, random B so it is not a no-op) is put
on the base. Greedy decoding, `--max-new-tokens` per turn, prompts from the pairs' train split.
Prints one row per (batch, merged) with turns/s and CPU seconds.
"""

from __future__ import annotations

import argparse
import resource
import time


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True)
    p.add_argument("--adapter", default=None)
    p.add_argument("--pairs", required=True)
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16, 32])
    args = p.parse_args(argv)

    import torch

    from act.io import load_dataset_dict
    from act.model.loading import HFPolicy, load_model

    torch.manual_seed(0)
    model, tok = load_model(args.base, args.adapter)
    if args.adapter is None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM", target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
        with torch.no_grad():
            for name, w in model.named_parameters():
                if "lora_B" in name:
                    w.normal_(0, 0.01)
    model.eval()
    prompts = [list(r["prompt"]) for r in load_dataset_dict(args.pairs)["train"]][: args.prompts]
    print(f"{len(prompts)} prompts, {args.max_new_tokens} new tokens each, threads {torch.get_num_threads()}")
    print("| batch | LoRA | turns/s | wall s | CPU s |")
    print("|---:|---|---:|---:|---:|")
    for batch in args.batches:
        for merged in (False, True):
            policy = HFPolicy(model, tok, max_new_tokens=args.max_new_tokens, batch_size=batch, merge_lora=merged)
            t0, c0 = time.perf_counter(), _cpu()
            policy.generate(prompts)
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
            print(f"| {batch} | {'merged' if merged else 'separate'} | {len(prompts) / wall:.2f} | {wall:.1f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()
