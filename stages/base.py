"""base: provision the policy's base model -> `models/base`.

    python -m stages.base --data data/annotate/ambigsql --out models/base --metrics metrics/base.json

`base.model: embedded` (the offline default) builds a small Llama: a byte-level BPE tokenizer
trained on the TRAIN split's text (chat template with `{% generation %}` around assistant turns,
a pad token), random init, then causal-LM pre-training on the train split's rendered gold
conversations so its samples are text in the chat format. Eval data is never read. Any other
value (a hub name such as HuggingFaceH4/zephyr-7b-beta, or a local path) writes only a pointer
file; the weights are loaded with `from_pretrained` where they are used.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from act.params import Params

log = logging.getLogger("act.base")


def corpus(records) -> list[str]:
    """The texts the tokenizer and the language prior learn from: each train record's gold chat,
    rendered later with the chat template; contexts repeat across turns, so exact repeats go."""
    from act.training.sft import gold_conversation

    seen, chats = set(), []
    for r in records:
        chat = gold_conversation(r)
        key = repr(chat)
        if key not in seen:
            seen.add(key)
            chats.append(chat)
    return chats


def run(params: Params, data: str | Path, out: str | Path, metrics_path: str | Path) -> dict[str, Any]:
    import json

    from act.io import atomic_dir, load_dataset_dict, write_json
    from act.model.loading import POINTER
    from act.records import validate_row
    from stages.common import stage_run

    cfg = params.base
    started = time.monotonic()
    with stage_run("base", params, cfg, tags={"act.dataset": params.dataset}) as tracker:
        if cfg.model != "embedded":
            with atomic_dir(out) as tmp:
                (tmp / POINTER).write_text(json.dumps({"source": "pretrained", "model": cfg.model}, indent=2) + "\n")
            metrics: dict[str, Any] = {"model": cfg.model, "embedded": False}
        else:
            from act.model.embedded import build_model, build_tokenizer, pretrain

            dd = load_dataset_dict(data)
            if "train" not in dd:
                raise FileNotFoundError(f"{data}: no 'train' split (found {sorted(dd)})")
            records = [validate_row(row, file=f"{data}/train", index=i) for i, row in enumerate(dd["train"])]
            chats = corpus(records)
            e = cfg.embedded
            raw_texts = [m["content"] for chat in chats for m in chat]
            tok = build_tokenizer(raw_texts, e.vocab_size)
            texts = [tok.apply_chat_template(c, tokenize=False) for c in chats]
            model = build_model(tok, hidden_size=e.hidden_size, layers=e.layers, heads=e.heads,
                                max_positions=e.max_positions, seed=params.seed)
            figures = pretrain(model, tok, texts, block_size=e.block_size, batch_size=e.batch_size,
                               steps=e.steps, learning_rate=e.learning_rate, seed=params.seed)
            with atomic_dir(out) as tmp:
                model.save_pretrained(str(tmp))
                tok.save_pretrained(str(tmp))
                (tmp / POINTER).write_text(json.dumps({"source": "embedded", "model": "embedded"}, indent=2) + "\n")
            metrics = {
                "model": "embedded", "embedded": True, "parameters": sum(p.numel() for p in model.parameters()),
                "vocab_size": len(tok), "train_records": len(records), "corpus_chats": len(chats), **figures,
            }
        metrics["seconds"] = round(time.monotonic() - started, 2)
        write_json(metrics_path, metrics)
        tracker.log_metrics(metrics)
        tracker.log_artifact(metrics_path)
    log.info("base: %s", {k: metrics[k] for k in ("model", "seconds") if k in metrics})
    return metrics


def main(argv: list[str] | None = None) -> None:
    from stages.common import load, parser, setup_logging

    p = parser("base", __doc__)
    p.add_argument("--data", required=True, help="annotated DatasetDict (its train split is the corpus)")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--metrics", required=True, help="metrics JSON path")
    args = p.parse_args(argv)
    setup_logging()
    run(load(args), args.data, args.out, args.metrics)


if __name__ == "__main__":
    from act.errors import run_cli

    run_cli(main)  # one-line errors; --debug or ACT_DEBUG=1 for the traceback
