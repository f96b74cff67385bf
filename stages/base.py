"""base: provision the policy's base model -> `models/base`.

    python -m stages.base --data data/annotate/ambigsql --out models/base --metrics metrics/base.json

`base.model: embedded` (the offline default) builds a small Llama: a byte-level BPE tokenizer
trained on the TRAIN split's text (chat template with `{% generation %}` around assistant turns,
a pad token), random init, then causal-LM pre-training on the train split's rendered gold
conversations so its samples are text in the chat format. Eval data is never read.

A named offline model (`smollm2-135m-instruct`, fetched once with `bash scripts/fetch_model.sh`)
or a `.gguf` file is converted to a trainable safetensors directory here, once. A local HF
directory or a hub name (HuggingFaceH4/zephyr-7b-beta, pinned by `base.revision`) writes only a
pointer file; the weights are loaded with `from_pretrained` where they are used. Either way the
tokenizer is loaded and its chat template checked now (`base.chat_template` overrides it), so a
model that cannot chat fails here, naming the param.
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


def provision_pretrained(cfg, out: str | Path) -> dict[str, Any]:
    """models/base for a non-embedded `base.model`: a converted directory or a pointer file."""
    import json

    from act.io import atomic_dir
    from act.chat import resolve_chat_template
    from act.model.loading import POINTER, load_tokenizer
    from act.model.pretrained import convert_gguf, gguf_path, source_kind

    kind = source_kind(cfg.model)
    with atomic_dir(out) as tmp:
        if kind in ("named", "gguf"):
            figures = convert_gguf(gguf_path(cfg.model), tmp, chat_template=cfg.chat_template or None)
            pointer = {"source": "converted", "model": cfg.model}
        else:
            figures = {}
            pointer = {"source": "pretrained", "model": cfg.model, "revision": cfg.revision,
                       "chat_template_text": resolve_chat_template(cfg.chat_template) if cfg.chat_template else ""}
        (tmp / POINTER).write_text(json.dumps(pointer, indent=2) + "\n")
        tok = load_tokenizer(tmp)  # fails here, naming base.chat_template, when the model cannot chat
    return {"model": cfg.model, "embedded": False, "source": kind, "vocab_size": len(tok),
            "fold_system": bool(tok.act_fold_system), **figures}


def run(params: Params, *, data: str | Path, out: str | Path, metrics_path: str | Path) -> dict[str, Any]:
    import json

    from act.io import atomic_dir, load_dataset_dict
    from act.model.loading import POINTER
    from act.records import validate_row
    from act.tracking import stage_run

    cfg = params.base
    started = time.monotonic()
    with stage_run("base", params, cfg, tags={"act.dataset": params.dataset}) as tracker:
        if cfg.model != "embedded":
            metrics = provision_pretrained(cfg, out)
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
        tracker.finish(metrics, metrics_path, started=started)
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
    run(load(args), data=args.data, out=args.out, metrics_path=args.metrics)


if __name__ == "__main__":
    from act.errors import run_cli

    run_cli(main)  # one-line errors; --debug or ACT_DEBUG=1 for the traceback
