"""Do sampled token ids survive decode -> strip -> re-tokenize? (what DPO scores on a policy sample)

On-policy samples reach the DPO loss as text: the policy's tokens are decoded, stripped and
tokenized again inside the chat template, as every other pair is. This script samples the policy
greedily on the first turn of N training records, re-tokenizes each reply the way a relabelled
pair is tokenized (`act.training.tokenize.tokenize_pair`), and prints how many completions
start with exactly the sampled ids (before the stop token), how many differ only in leading or
trailing whitespace, and how many differ elsewhere.

    python benchmarks/retokenize.py --base models/base --adapter models/sft --data data/annotate/ambigsql
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True)
    p.add_argument("--adapter", default=None)
    p.add_argument("--data", required=True, help="annotated DatasetDict (python -m stages.annotate output)")
    p.add_argument("--limit", type=int, default=48)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--max-prompt-tokens", type=int, default=0)
    args = p.parse_args(argv)

    import torch
    from datasets import load_from_disk

    from act.chat import normalize
    from act.model.loading import load_model, stop_ids
    from act.records import TurnRecord, with_system
    from act.training.tokenize import tokenize_pair

    model, tok = load_model(args.base, args.adapter)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.eval()
    rows = [r for r in load_from_disk(args.data)["train"] if r.get("gold_action")][: args.limit]
    stops = set(stop_ids(model, tok))
    same = whitespace = other = 0
    for row in rows:
        rec = TurnRecord.from_row(row)
        chat = normalize(tok, with_system(rec))
        ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True,
                                      return_tensors="pt")["input_ids"]
        if args.max_prompt_tokens:
            ids = ids[:, -args.max_prompt_tokens:]
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=sorted(stops))
        sampled = [t for t in gen[0, ids.shape[1]:].tolist() if t not in stops]
        text = tok.decode(sampled, skip_special_tokens=True)
        reply = [{"role": "assistant", "content": text.strip()}]
        retok = tokenize_pair(tok, with_system(rec), reply, reply)["chosen_ids"][: len(sampled)]
        if retok == sampled:
            same += 1
        elif tok.decode(retok, skip_special_tokens=True).strip() == text.strip():
            whitespace += 1
        else:
            other += 1
    n = len(rows)
    print(f"samples: {n}")
    print(f"re-tokenized completion == sampled ids:        {same} ({same / n:.0%})")
    print(f"same text, other ids (whitespace/merges):     {whitespace} ({whitespace / n:.0%})")
    print(f"differs (truncated turn, template, decoding):  {other} ({other / n:.0%})")


if __name__ == "__main__":
    main()
