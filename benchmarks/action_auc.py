"""`action_auc` of one or more policies on an annotated dataset, without the rest of evaluation.

    python benchmarks/action_auc.py --data data/annotate/ambigsql --base models/base \
        [--adapter sft=models/sft --adapter act=models/act] [--split eval] \
        [--question "Which one do you mean?" ...]
    python benchmarks/action_auc.py --data data/annotate/abg_coqa --gguf smollm2-135m-instruct

Prints, per policy and clarifying question (default: the dataset's `evaluate.auc_questions`
entry; several --question flags score each wording, the gold answers once), the AUC, its 95%
bootstrap interval, the class counts, the scoring wall time and the load average. `--gguf NAME`
converts a named offline model (`act.model.pretrained`, already fetched) into a temporary HF
directory and scores it as the base policy. Prompts as evaluation renders them
(`simulate.max_prompt_tokens`), batches of `simulate.generation_batch_size`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--data", required=True, help="annotated dataset dir")
    p.add_argument("--split", default="eval")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--base", help="base model dir (models/base or an HF dir)")
    src.add_argument("--gguf", help="a named offline model (act.model.pretrained.NAMED_MODELS), converted on the fly")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR")
    p.add_argument("--question", action="append", default=[], help="clarifying question(s) to score (repeatable)")
    p.add_argument("--params", default="params.yaml")
    args = p.parse_args(argv)

    from act.metrics.likelihood import action_auc, encode, mean_logprobs, question_for
    from act.model.loading import load_model
    from act.pairs import final_answer
    from act.params import load_params
    from act.records import with_system
    from stages.evaluate import load_eval_records, parse_adapters

    params = load_params(args.params)
    records = load_eval_records(args.data, 0, args.split)
    questions = args.question or [question_for(records[0].dataset, params.evaluate.auc_questions)]
    budget, batch = params.simulate.max_prompt_tokens, params.simulate.generation_batch_size
    with tempfile.TemporaryDirectory() as tmp:
        base = args.base
        if args.gguf:
            from act.model.pretrained import convert_gguf, gguf_path

            convert_gguf(gguf_path(args.gguf), tmp)
            base = tmp
        policies = {"base": None, **parse_adapters(args.adapter)}
        for name, adapter in policies.items():
            model, tok = load_model(base, adapter)
            if adapter and hasattr(model, "merge_and_unload"):
                model = model.merge_and_unload()
            limit = getattr(model.config, "max_position_embeddings", None)
            kept = [r for r in records if final_answer(r).strip()]
            t0 = time.monotonic()
            answers = mean_logprobs(model, tok, [encode(tok, with_system(r), final_answer(r).strip(),
                                                        max_prompt_tokens=budget, max_length=limit) for r in kept],
                                    batch_size=batch)
            t_answers = time.monotonic() - t0
            for q in questions:
                t1 = time.monotonic()
                asks = mean_logprobs(model, tok, [encode(tok, with_system(r), q, max_prompt_tokens=budget,
                                                         max_length=limit) for r in kept], batch_size=batch)
                out = action_auc(kept, [a - b for a, b in zip(asks, answers)], resamples=params.evaluate.auc_resamples,
                                 seed=params.seed)
                print(json.dumps({"policy": name, "question": q, **{k: round(v, 4) if isinstance(v, float) else v
                                                                    for k, v in out.items()},
                                  "seconds": round(t_answers + time.monotonic() - t1, 1),
                                  "loadavg": [round(x, 2) for x in os.getloadavg()]}))
            del model


if __name__ == "__main__":
    main()
