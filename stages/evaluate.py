"""evaluate: every policy on the eval split, at action, turn and trajectory level; plots and report.

    python -m stages.evaluate --in data/annotate/ambigsql --base models/base \
        --adapter sft=models/sft --adapter act=models/act --databases data/raw/spider/database \
        --train-log data/train/log.jsonl --out data/evaluate --metrics metrics/evaluate.json \
        --plots plots/evaluate --report reports/evaluate.html

For each policy in `evaluate.policies` ("base" = the base model; any other name = the adapter
given as --adapter NAME=DIR) and each seed in `evaluate.seeds`, the policy's conversations on the
eval records are simulated (`act.metrics.levels`) and scored. Writes:
- `--metrics`: {policy: {action|turn|trajectory: {metric: value}}}, means over seeds (+ `_std`),
  each with its count; the same dict is logged to MLflow and drawn in the report;
- `--out`: a DatasetDict, split `predictions`, one row per policy x seed x record x branch (first
  response, actions, the simulated conversation, scores and failure statuses): an ambiguous record
  is played out on every interpretation (`branch_index`), and the metrics average its branches
  (`act.metrics.levels.per_record`), so each record counts once;
- `--plots`: confusion.png, metrics.png, reward_margins.png and training_signal.png (when
  `--train-log` has them) for the report, and beside them the same series as DVC plot data
  (`act.report.PLOT_DATA`: headline/ and confusion/ per policy, *.tsv training curves) that
  dvc.yaml's `plots:` section draws, so `dvc plots diff` overlays experiments;
- `--report`: one self-contained HTML page (table, plots, sampled conversations vs gold).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from act.params import Params

log = logging.getLogger("act.evaluate")

PolicyLoader = Callable[[str, "str | None", int], Any]
"""(base_dir, adapter_dir or None, seed) -> Policy."""


def parse_adapters(items: list[str]) -> dict[str, str]:
    adapters = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--adapter {item!r}: expected NAME=DIR")
        adapters[name] = path
    return adapters


def read_train_log(path: str | Path | None) -> list[dict]:
    """The trainer's log history, or [] when training wrote none (the margin plot is skipped)."""
    from act.io import read_jsonl

    if not path or not Path(path).is_file():
        return []
    return [row for _, row in read_jsonl(path)]


def load_eval_records(data: str | Path, limit: int = 0, split: str = "eval") -> list:
    """The labelled records of `split` of `data` ("all" = every split: a held-out corpus has no
    training split to protect)."""
    from act.io import load_dataset_dict
    from act.records import validate_row

    dd = load_dataset_dict(data)
    names = list(dd) if split == "all" else [split]
    missing = [n for n in names if n not in dd]
    if missing:
        raise ValueError(f"{data}: no split {missing[0]!r} (has {sorted(dd)}; --split all takes every one)")
    records = [validate_row(row, file=f"{data}/{n}", index=i) for n in names for i, row in enumerate(dd[n])]
    records = [r for r in records if r.gold_action is not None]
    if limit:
        records = records[:limit]
    if not records:
        raise ValueError(f"{data}: no labeled records to evaluate on in split {split!r}")
    return records


def run(params: Params, *, data: str | Path, base: str | Path, adapters: dict[str, str], databases: str | Path | None,
        train_log: str | Path | None, out: str | Path, metrics_path: str | Path, plots_dir: str | Path,
        report: str | Path, load_policy: PolicyLoader | None = None, split: str = "eval") -> dict[str, Any]:
    from act import report as report_mod
    from act.io import atomic_dir, require_dir, save_dataset
    from act.metrics.embedding import load_similarity
    from act.metrics.levels import evaluate_policy, per_record
    from act.metrics.likelihood import policy_action_auc
    from act.metrics.summary import combine_seeds, summarize
    from act.roles import build_role
    from act.metrics.checks import require_valid
    from act.roles.base import UsageCounter
    from act.tracking import stage_run

    ev = params.evaluate
    missing = [p for p in ev.policies if p != "base" and p not in adapters]
    if missing:
        raise ValueError(f"evaluate.policies names {missing} but no --adapter NAME=DIR was given for them")
    if databases is not None:
        require_dir(databases, "--databases")
    if load_policy is None:
        for name in ev.policies:
            if name in adapters:  # a missing adapter dir would silently evaluate the base model
                require_dir(adapters[name], f"--adapter {name}")
        from act.model import load_policy as load_hf

        def load_policy(base_dir: str, adapter_dir: str | None, seed: int):
            # the prompts fitted as during training's sampling (act.chat.fit_prompt), so a policy is judged as it was trained
            return load_hf(base_dir, adapter_dir, quantization=params.train.quantization,
                           max_new_tokens=ev.max_new_tokens, temperature=ev.temperature, seed=seed,
                           batch_size=params.simulate.generation_batch_size,
                           max_prompt_tokens=params.simulate.max_prompt_tokens, dtype=params.train.dtype,
                           attn_implementation=params.train.attn_implementation)

    started = time.monotonic()
    records = load_eval_records(data, ev.limit, split)
    dataset = records[0].dataset
    with stage_run("evaluate", params, ev, tags={"act.dataset": dataset}) as tracker:
        usage = {"classifier": UsageCounter(), "simulator": UsageCounter()}
        classifier = build_role("classifier", params.roles, usage=usage["classifier"])
        require_valid(classifier, params.roles.classifier)  # an LLM judge must pass the check set first
        simulator = build_role("simulator", params.roles, usage=usage["simulator"])
        similarity = load_similarity(ev.embedding_model)
        metrics: dict[str, Any] = {}
        rows: list[dict] = []
        for name in ev.policies:
            per_seed, prompts, auc = [], {}, {}
            generation = {"samples": 0, "truncated_samples": 0}
            for seed in ev.seeds:
                t0 = time.monotonic()
                policy = load_policy(str(base), adapters.get(name), seed)
                seed_rows = evaluate_policy(
                    records, policy, classifier, simulator, max_turns=ev.max_turns,
                    tolerance=params.simulate.tolerance, db_dir=databases, sql_timeout_s=ev.sql_timeout_s,
                    similarity=similarity, coqa_averaging=ev.coqa_averaging,
                    progress_desc=f"evaluate {name} seed {seed}",
                )
                if seed == ev.seeds[0]:  # log-likelihoods do not depend on the sampling seed: scored once
                    auc = policy_action_auc(records, policy, ev.auc_questions, resamples=ev.auc_resamples,
                                            seed=params.seed, name=name)
                for k, v in getattr(policy, "prompt_stats", {}).items():  # prompts fitted to the budget, over seeds
                    prompts[k] = prompts.get(k, 0) + v
                for k in generation:  # turns cut at evaluate.max_new_tokens, over seeds
                    generation[k] += int(getattr(policy, k, 0))
                del policy
                for r in seed_rows:
                    r.update(policy=name, seed=seed)
                rows.extend(seed_rows)
                per_seed.append(summarize(per_record(seed_rows)))
                log.info("%s seed %d: %d records in %.1f s", name, seed, len(seed_rows), time.monotonic() - t0)
            metrics[name] = combine_seeds(per_seed)
            metrics[name]["action"].update(auc)
            if prompts:
                metrics[name]["prompts"] = prompts
            if generation["samples"]:
                metrics[name]["generation"] = generation

        save_dataset(out, {"predictions": rows})
        with atomic_dir(plots_dir) as tmp:  # no stale plot (e.g. margins of an older run) survives
            train_history = read_train_log(train_log)
            records_rows = per_record(rows)  # confusion matrices count each record once
            plots = report_mod.write_plots(metrics, records_rows, train_history, tmp)
            report_mod.write_plot_data(metrics, records_rows, train_history, tmp)
            report_mod.write_html(metrics, rows, plots, report, title=f"ACT evaluation: {dataset}",
                                  dataset=dataset, samples=ev.samples, provenance=report_mod.provenance(params, ev.seeds))
        tracker.finish(metrics, metrics_path, artifacts=((report, "report"), (plots_dir, "plots")))
        log.info("evaluate: %d policies x %d seeds x %d records in %.1f s (usage %s)", len(ev.policies),
                 len(ev.seeds), len(records), time.monotonic() - started,
                 {k: v.as_dict() for k, v in usage.items()})
    return metrics


def main(argv: list[str] | None = None) -> None:
    from stages.common import load, parser, setup_logging

    p = parser("evaluate", __doc__)
    p.add_argument("--in", dest="data", required=True, help="annotated dataset dir")
    p.add_argument("--split", default="eval", help="split scored: eval (default), all, or any split name")
    p.add_argument("--base", required=True, help="base model dir")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR",
                   help="a LoRA adapter evaluated as policy NAME (repeatable)")
    p.add_argument("--databases", default=None, help="AmbigSQL: dir holding <db_id>/<db_id>.sqlite")
    p.add_argument("--train-log", default=None, help="trainer log JSONL (reward margins plot; optional)")
    p.add_argument("--out", required=True, help="per-example predictions dataset dir")
    p.add_argument("--metrics", required=True, help="metrics JSON")
    p.add_argument("--plots", required=True, help="dir for the PNG plots and their DVC plot data")
    p.add_argument("--report", required=True, help="HTML report file")
    args = p.parse_args(argv)
    setup_logging()
    run(load(args), data=args.data, base=args.base, adapters=parse_adapters(args.adapter), databases=args.databases,
        train_log=args.train_log, out=args.out, metrics_path=args.metrics, plots_dir=args.plots, report=args.report,
        split=args.split)


if __name__ == "__main__":
    from act.errors import run_cli

    run_cli(main)  # one-line errors; --debug or ACT_DEBUG=1 for the traceback
