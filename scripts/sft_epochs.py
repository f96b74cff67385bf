"""Pick the SFT epochs on a validation slice carved from the *training* databases, never the eval split.

    python scripts/sft_epochs.py --data data/annotate/ambigsql --base models/base \
        --databases data/raw/spider/database --out reports/study-ambigsql/sft_epochs \
        --max-epochs 10 [-S key=value ...]

1. The annotated training split is cut in two by whole groups (AmbigSQL: databases,
   `act.data.splits.carve_validation`, `--fraction` of the conversations, seeded with `seed`):
   the validation databases are schemas the selection run never trains on, as the eval
   databases are for the study.
2. One SFT run of `--max-epochs` epochs on the rest (every `sft.*` param as given) saves the
   adapter at the end of each epoch.
3. Each epoch's adapter is scored on the validation slice by the evaluate stage (policy `sft`
   only; greedy, as in the study).
4. The pick is the epoch with the highest validation execution match of answer turns
   (`turn.answer_score`): the skill SFT is there to teach, writing SQL that runs and returns the
   gold rows. Ties go to fewer epochs. The study then trains SFT for that many epochs on the whole
   training split (its own learning-rate schedule, so the epoch count, not the checkpoint, transfers).

Writes `<out>/sft_epochs.json` (per epoch: SFT loss, the validation figures) and `<out>/sft_epochs.md`;
scratch (adapters, predictions) goes to a fresh `<out>/.sft_epochs-*/` folder of its own, removed at the
end unless `--keep` (nothing already under `<out>` is touched but the two report files).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIGURES = ("turn.answer_score", "trajectory.success_rate", "action.macro_f1", "action.action_auc")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="annotated DatasetDict (python -m stages.annotate output)")
    p.add_argument("--base", required=True, help="base model dir (stage base)")
    p.add_argument("--databases", required=True, help="dir holding <db_id>/<db_id>.sqlite")
    p.add_argument("--out", required=True, help="output dir for sft_epochs.json / .md")
    p.add_argument("--max-epochs", type=int, default=10)
    p.add_argument("--fraction", type=float, default=0.2, help="share of training conversations held out (default 0.2)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="params override")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (the per-epoch adapters)")
    return p.parse_args(argv)


def pick_epoch(rows: list[dict]) -> dict:
    """The row with the highest validation `turn.answer_score` (None counts as 0); ties go to
    fewer epochs, so a flat curve picks the shortest SFT."""
    if not rows:
        raise ValueError("no epochs to pick from")
    return max(rows, key=lambda r: (r["turn.answer_score"] or 0.0, -r["epoch"]))


def epoch_saver(work: Path):
    """A TrainerCallback that saves the LoRA adapter to `work/epoch-<k>` at the end of epoch k."""
    from transformers import TrainerCallback

    from act.model.loading import ADAPTER_MARKER, save_adapter

    class EpochSaver(TrainerCallback):
        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            k = round(state.epoch)
            out = work / f"epoch-{k}"
            save_adapter(model, str(out))
            (out / ADAPTER_MARKER).write_text(json.dumps({"adapter": True, "stage": "sft"}) + "\n")
            return control

    return EpochSaver()


def main(argv=None) -> int:
    args = parse_args(argv)
    from act.params import load_params, parse_overrides

    params = load_params(args.params, parse_overrides(args.set))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".sft_epochs-", dir=out))  # ours alone: removed at the end
    try:
        best = select(args, params, out, work)
    finally:
        if args.keep:
            print(f"scratch kept: {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"pick: {best['epoch']} epochs", flush=True)
    return 0


def select(args: argparse.Namespace, params, out: Path, work: Path) -> dict:
    """Steps 1-4 of the module doc; writes the two reports and returns the picked epoch's row."""
    import dataclasses

    from act.data.splits import carve_validation, validation_group
    from act.io import atomic_file, load_dataset_dict, save_dataset
    from act.records import validate_row
    from act.training.sft import train_sft

    dd = load_dataset_dict(args.data)
    records = [validate_row(row, file=f"{args.data}/train", index=i) for i, row in enumerate(dd["train"])]
    records = [r for r in records if r.action is not None]
    train, val = carve_validation(records, fraction=args.fraction, seed=params.seed)
    held = sorted({validation_group(r) for r in val})
    print(f"validation slice: {len(val)} of {len(records)} training conversations, groups {held}", flush=True)
    save_dataset(work / "val", {"eval": [r.to_row() for r in val]})

    sft = dataclasses.replace(params.sft, epochs=args.max_epochs, save_steps=0)
    t0 = time.perf_counter()
    fit, history = train_sft(args.base, train, work / "final", sft, seed=params.seed, work_dir=work,
                             return_history=True, callbacks=[epoch_saver(work)])
    sft_seconds = time.perf_counter() - t0
    loss_at = {}
    for h in history:
        if "loss" in h:
            loss_at[max(1, math.ceil(h["epoch"]))] = h["loss"]  # the last loss logged within epoch k

    rows = []
    for k in range(1, args.max_epochs + 1):
        adapter = work / f"epoch-{k}"
        ev = work / f"eval-{k}"
        cmd = [sys.executable, "-m", "stages.evaluate", "--params", args.params, "--in", str(work / "val"),
               "--split", "eval", "--base", args.base, "--adapter", f"sft={adapter}", "--databases", args.databases,
               "--out", str(ev / "predictions"), "--metrics", str(ev / "metrics.json"), "--plots", str(ev / "plots"),
               "--report", str(ev / "report.html")]
        for s in [*args.set, "evaluate.policies=[sft]"]:
            cmd += ["-S", s]
        t1 = time.perf_counter()
        subprocess.run(cmd, check=True)
        m = json.loads((ev / "metrics.json").read_text())["sft"]
        row = {"epoch": k, "sft_loss": loss_at.get(k), "eval_seconds": round(time.perf_counter() - t1, 1)}
        for f in FIGURES:
            level, name = f.split(".")
            row[f] = m.get(level, {}).get(name)
        rows.append(row)
        print(json.dumps(row), flush=True)
    best = pick_epoch(rows)
    result = {"pick": best["epoch"], "criterion": "turn.answer_score on the validation slice (ties: fewer epochs)",
              "validation_groups": held, "validation_conversations": len(val), "train_conversations": len(train),
              "max_epochs": args.max_epochs, "sft_seconds": round(sft_seconds, 1),
              "steps_per_epoch": fit["steps"] // args.max_epochs, "epochs": rows,
              "overrides": args.set}
    with atomic_file(out / "sft_epochs.json") as fh:
        fh.write(json.dumps(result, indent=2) + "\n")
    lines = ["# SFT epochs picked on a validation slice of the training databases\n",
             f"Validation: {len(val)} conversations of databases {', '.join(held)} (held out of SFT); "
             f"SFT on the other {len(train)}. Pick: **{best['epoch']} epochs** ({result['criterion']}).\n",
             "| epochs | SFT loss | " + " | ".join(FIGURES) + " |", "|---:|---:|" + "---:|" * len(FIGURES)]
    for r in rows:
        cells = [f"{r[f]:.3f}" if isinstance(r[f], (int, float)) else "–" for f in FIGURES]
        loss = f"{r['sft_loss']:.3f}" if r["sft_loss"] is not None else "–"
        lines.append(f"| {r['epoch']} | {loss} | " + " | ".join(cells) + " |")
    with atomic_file(out / "sft_epochs.md") as fh:
        fh.write("\n".join(lines) + "\n")
    return best


if __name__ == "__main__":
    sys.exit(main())
