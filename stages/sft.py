"""sft: supervised fine-tuning on the gold conversations -> `models/sft` (LoRA adapter only).

    python -m stages.sft --base models/base --data data/annotate/ambigsql --out models/sft --metrics metrics/sft.json

The paper's SFT baseline and ACT's starting point: TRL's SFTTrainer on each labelled train turn's
gold chat (for a CLARIFY turn its gold continuation: question, user reply, answer), loss on
assistant tokens only, a LoRA adapter (QLoRA with `sft.quantization: nf4`). `sft.enabled: false`
writes a marker directory that means "use the base model".

Every `sft.save_steps` steps a checkpoint goes to `--checkpoints` (default checkpoints/sft,
outside DVC's outs): a rerun after a crash or kill -9 resumes from it when params and inputs are
unchanged, and it is removed once the adapter is written (act.training.checkpoints). Under
`accelerate launch` (python -m stages.launch sft ..., params `launch`) every process trains and
the main one alone writes the adapter, metrics and MLflow run.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from act.params import Params

log = logging.getLogger("act.sft")


def run(params: Params, *, base: str | Path, data: str | Path, out: str | Path, metrics_path: str | Path,
        checkpoint_dir: str | Path | None = None) -> dict[str, Any]:
    """`checkpoint_dir`: where checkpoints go (the command line: checkpoints/sft; None = `checkpoints/sft` beside `out`)."""
    import dataclasses

    from act import distributed
    from act.io import load_dataset_dict
    from act.model.loading import ADAPTER_MARKER
    from act.records import validate_row
    from act.training import checkpoints
    from act.training.sft import train_sft
    from act.tracking import stage_run

    cfg = params.sft
    started = time.monotonic()
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else Path(out).parent / "checkpoints" / "sft"
    resumed = 0
    with stage_run("sft", params, cfg, tags={"act.dataset": params.dataset}) as tracker:
        with distributed.output_dir(out) as tmp:
            if not cfg.enabled:
                metrics: dict[str, Any] = {"enabled": False}
            else:
                dd = load_dataset_dict(data)
                if "train" not in dd:
                    raise FileNotFoundError(f"{data}: no 'train' split (found {sorted(dd)})")
                records = [validate_row(row, file=f"{data}/train", index=i) for i, row in enumerate(dd["train"])]
                records = [r for r in records if r.action is not None]
                key = checkpoints.run_key({"stage": "sft", "seed": params.seed, "dataset": params.dataset,
                                           "sft": dataclasses.replace(cfg, save_steps=0),
                                           "processes": distributed.world_size()}, [base, data])
                metrics = train_sft(base, records, tmp, cfg, seed=params.seed,
                                    report_to=["mlflow"] if tracker.run_id else "none", work_dir=Path(out).parent,
                                    checkpoint_dir=ckpt, run_key=key)
                resumed = metrics.pop("resumed_from_step")
                if resumed:
                    tracker.set_tags({"act.resumed_from_step": str(resumed)})
            (tmp / ADAPTER_MARKER).write_text(json.dumps({"adapter": cfg.enabled, "stage": "sft"}) + "\n")
        tracker.finish(metrics, metrics_path, started=started, artifacts=((out, "adapter"),) if cfg.enabled else ())
    distributed.wait_for_everyone()
    if distributed.is_main_process():
        checkpoints.finish(ckpt)  # the adapter is written: the checkpoints have served
        log.info("sft: %s%s", metrics, f" (resumed from step {resumed})" if resumed else "")
    return metrics


def main(argv: list[str] | None = None) -> None:
    from stages.common import load, parser, setup_logging

    p = parser("sft", __doc__)
    p.add_argument("--base", required=True, help="base model directory (stage base)")
    p.add_argument("--data", required=True, help="annotated DatasetDict (train split)")
    p.add_argument("--out", required=True, help="output adapter directory")
    p.add_argument("--metrics", required=True, help="metrics JSON path")
    p.add_argument("--checkpoints", default="checkpoints/sft",
                   help="checkpoint folder, outside DVC's outs (default: checkpoints/sft)")
    args = p.parse_args(argv)
    setup_logging()
    from act.distributed import is_main_process

    if not is_main_process():
        logging.getLogger().setLevel(logging.WARNING)  # one log: the main process's
    run(load(args), base=args.base, data=args.data, out=args.out, metrics_path=args.metrics,
        checkpoint_dir=args.checkpoints)


if __name__ == "__main__":
    from act.errors import run_cli

    run_cli(main)  # one-line errors; --debug or ACT_DEBUG=1 for the traceback
