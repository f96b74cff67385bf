"""sft: supervised fine-tuning on the gold conversations -> `models/sft` (LoRA adapter only).

    python -m stages.sft --base models/base --data data/annotate/ambigsql --out models/sft --metrics metrics/sft.json

The paper's SFT baseline and ACT's starting point: TRL's SFTTrainer on each labelled train turn's
gold chat (for a CLARIFY turn its gold continuation: question, user reply, answer), loss on
assistant tokens only, a LoRA adapter (QLoRA with `sft.quantization: nf4`). `sft.enabled: false`
writes a marker directory that means "use the base model".
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from act.params import Params

log = logging.getLogger("act.sft")


def run(params: Params, *, base: str | Path, data: str | Path, out: str | Path, metrics_path: str | Path) -> dict[str, Any]:
    from act.io import atomic_dir, load_dataset_dict
    from act.model.loading import ADAPTER_MARKER
    from act.records import validate_row
    from act.training.sft import train_sft
    from act.tracking import stage_run

    cfg = params.sft
    started = time.monotonic()
    with stage_run("sft", params, cfg, tags={"act.dataset": params.dataset}) as tracker:
        with atomic_dir(out) as tmp:
            if not cfg.enabled:
                metrics: dict[str, Any] = {"enabled": False}
            else:
                dd = load_dataset_dict(data)
                if "train" not in dd:
                    raise FileNotFoundError(f"{data}: no 'train' split (found {sorted(dd)})")
                records = [validate_row(row, file=f"{data}/train", index=i) for i, row in enumerate(dd["train"])]
                records = [r for r in records if r.action is not None]
                metrics = train_sft(base, records, tmp, cfg, seed=params.seed,
                                    report_to=["mlflow"] if tracker.run_id else "none", work_dir=Path(out).parent)
            (tmp / ADAPTER_MARKER).write_text(json.dumps({"adapter": cfg.enabled, "stage": "sft"}) + "\n")
        tracker.finish(metrics, metrics_path, started=started, artifacts=((out, "adapter"),) if cfg.enabled else ())
    log.info("sft: %s", metrics)
    return metrics


def main(argv: list[str] | None = None) -> None:
    from stages.common import load, parser, setup_logging

    p = parser("sft", __doc__)
    p.add_argument("--base", required=True, help="base model directory (stage base)")
    p.add_argument("--data", required=True, help="annotated DatasetDict (train split)")
    p.add_argument("--out", required=True, help="output adapter directory")
    p.add_argument("--metrics", required=True, help="metrics JSON path")
    args = p.parse_args(argv)
    setup_logging()
    run(load(args), base=args.base, data=args.data, out=args.out, metrics_path=args.metrics)


if __name__ == "__main__":
    from act.errors import run_cli

    run_cli(main)  # one-line errors; --debug or ACT_DEBUG=1 for the traceback
