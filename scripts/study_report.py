"""The study's report from a sweep's committed files: `<dir>/study.md` and `<dir>/study.png`.

    python scripts/study_report.py reports/study-ambigsql

Reads what `act ablate --out <dir>` wrote under `runs/<method>-s<seed>/` (evaluate.json,
train.json, simulate.json, sampling_rounds.tsv, probe.tsv, timings.json: every seed any sweep
added) and writes:
- per method, mean ± sd over seeds of the action-, turn- and trajectory-level figures, the probe
  margins and accuracy, and the samples cut at the turn cap;
- paired ACT - DPO, ACT - SFT and ACT - ACT w/o simulation differences per seed, with t and p
  (Student's t, n - 1 df, two-sided: `act.metrics.paired`);
- the relabel outcomes of the on-policy runs and the share of on-policy samples that clarify per
  sampling round (first, last, mean);
- wall time per stage;
- a plot of `action_auc` and trajectory success per method (mean, sd error bars, each seed a dot);
- `act ablate`'s own reports (ablations.md/.csv/.png, ablations_seeds.csv, ablations_paired.csv)
  over every seed under runs/: each sweep writes them over its own seeds only, so a study grown one
  seed per sweep would otherwise keep the last sweep's.
Nothing is recomputed from models: the report can be rebuilt from a clone at any time.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from act.metrics.summary import mean_std

METHOD_ORDER = ("sft", "dpo_offpolicy", "act", "act_no_simulation", "act_random_actions", "act_from_base")
LABEL = {"sft": "SFT", "dpo_offpolicy": "Off-policy DPO", "act": "ACT", "act_no_simulation": "ACT w/o simulation",
         "act_random_actions": "ACT, random actions", "act_from_base": "ACT from base"}
EVAL = (("action.action_auc", "Action AUC"), ("action.informedness", "Informedness"),
        ("action.clarify_f1", "Clarify F1"), ("action.macro_f1", "Macro F1"),
        ("turn.answer_score", "Turn exec. match"), ("trajectory.score", "Trajectory exec. match"),
        ("trajectory.success_rate", "Trajectory success"), ("generation.truncated_samples", "Eval turns cut"))
TRAIN = (("probe.start_margin", "Probe margin, start"), ("probe.end_margin", "Probe margin, end"),
         ("probe.end_accuracy", "Probe accuracy, end"), ("train.clarify_share", "On-policy samples clarifying"),
         ("train.truncated_samples", "Training samples cut"), ("train.steps", "Steps"))
MODEL_STAGES = ("base", "sft", "simulate", "train", "evaluate")
PAIRED = ("action.action_auc", "action.informedness", "action.clarify_f1", "action.macro_f1", "turn.answer_score",
          "trajectory.score", "trajectory.success_rate", "probe.end_margin")


def read_rows(study: Path) -> list[dict]:
    """Every (method, seed, metric, value): the eval figures of each run's evaluate.json (the ACT
    experiment's also give the `sft` method's) and, per trained method, its train.json's probe
    and sampling figures. Every `runs/<method>-s<seed>/` counts, whichever sweep wrote it."""
    from act.simulate import OUTCOMES
    from act.tables import policy_figures

    rows = []
    for run in sorted((study / "runs").glob("*-s*")):
        method, _, seed = run.name.rpartition("-s")
        evaluate = run / "evaluate.json"
        if not seed.isdigit() or not evaluate.is_file():
            continue
        metrics = json.loads(evaluate.read_text())
        for m, policy in ((method, "act"), *((("sft", "sft"),) if method == "act" else ())):
            for metric, value in policy_figures(metrics, "evaluate.json", policy).items():
                rows.append({"method": m, "seed": int(seed), "metric": metric, "value": value})
    methods_seeds = {(r["method"], r["seed"]) for r in rows}
    for method, seed in sorted(methods_seeds):
        if method == "sft":
            continue
        train = study / "runs" / f"{method}-s{seed}" / "train.json"
        if not train.is_file():
            continue
        t = json.loads(train.read_text())
        extra = {"probe.start_margin": t.get("probe/start/rewards/margins"), "probe.end_margin": t.get("probe/end/rewards/margins"),
                 "probe.end_accuracy": t.get("probe/end/rewards/accuracies"), "train.steps": t.get("steps"),
                 "train.truncated_samples": t.get("truncated_samples", t.get("samples/completions_cut"))}
        if t.get("on_policy_sampling"):
            n = (t.get("samples/clarify") or 0) + (t.get("samples/answer") or 0)
            extra["train.clarify_share"] = (t.get("samples/clarify") or 0) / n if n else None
            for o in OUTCOMES:
                extra[f"relabel.{o}"] = t.get(f"relabel/{o}", 0)
        rows += [{"method": method, "seed": seed, "metric": k, "value": float(v)} for k, v in extra.items() if v is not None]
    return rows


def table(rows: list[dict], methods: list[str], metrics, fmt: str = ".3f") -> list[str]:
    by = {}
    for r in rows:
        by.setdefault((r["method"], r["metric"]), []).append(r["value"])
    out = ["| method | seeds | " + " | ".join(label for _, label in metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for m in methods:
        n = max((len(by.get((m, k), [])) for k, _ in metrics), default=0)
        if not n:
            continue
        cells = []
        for k, _ in metrics:
            vals = by.get((m, k))
            if not vals:
                cells.append("–")
                continue
            mu, sd = mean_std(vals)
            cells.append(f"{mu:{fmt}} ± {sd:{fmt}}")
        out.append(f"| {LABEL.get(m, m)} | {n} | " + " | ".join(cells) + " |")
    return out


def auc_intervals(study: Path, methods: list[str], seeds: list[int]) -> list[str]:
    """Each seed's action_auc with its bootstrap 95% interval (evaluate.json)."""
    out = ["| method | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for m in methods:
        cells = []
        for s in seeds:
            run = study / "runs" / f"{'act' if m == 'sft' else m}-s{s}" / "evaluate.json"
            a = json.loads(run.read_text()).get("sft" if m == "sft" else "act", {}).get("action", {}) if run.is_file() else {}
            cells.append(f"{a['action_auc']:.3f} [{a['action_auc_lo']:.3f}, {a['action_auc_hi']:.3f}]"
                         if "action_auc" in a else "–")
        if any(c != "–" for c in cells):
            out.append(f"| {LABEL.get(m, m)} | " + " | ".join(cells) + " |")
    return out


def paired_table(rows: list[dict], methods: list[str]) -> list[str]:
    from act.metrics.summary import paired_difference

    value = {(r["method"], r["metric"], r["seed"]): r["value"] for r in rows}
    out = ["| difference | metric | per seed | mean | t | p |", "|---|---|---|---:|---:|---:|"]
    for other in [m for m in methods if m != "act"]:
        for metric in PAIRED:
            seeds = sorted(s for (m, k, s) in value if m == "act" and k == metric and (other, metric, s) in value)
            if not seeds:
                continue
            c = paired_difference([value[("act", metric, s)] for s in seeds], [value[(other, metric, s)] for s in seeds])
            t = "–" if c["t"] is None else f"{c['t']:.2f}"
            p = "–" if c["p"] is None else f"{c['p']:.3f}"
            out.append(f"| ACT − {LABEL.get(other, other)} | {metric} | "
                       + ", ".join(f"{d:+.3f}" for d in c["diffs"]) + f" | {c['mean']:+.3f} | {t} | {p} |")
    return out


def relabel_table(rows: list[dict], methods: list[str]) -> list[str]:
    """One row per on-policy run. The clarify success rate is over the clarifying samples on
    CLARIFY turns: clarify_success / (clarify_success + clarify_failure); w/o simulation every such
    sample wins on its action alone (right_action) and no trajectory is scored. Columns: every
    outcome some run reached, and the rate's two terms always."""
    from act.simulate import OUTCOMES

    by = {(r["method"], r["seed"], r["metric"]): r["value"] for r in rows}
    keys = sorted({(r["method"], r["seed"]) for r in rows if r["metric"].startswith("relabel.")},
                  key=lambda k: (methods.index(k[0]) if k[0] in methods else 99, k[1]))
    shown = [o for o in OUTCOMES if o in ("clarify_success", "clarify_failure")
             or any(by.get((m, s, f"relabel.{o}")) for m, s in keys)]
    out = ["| method | seed | " + " | ".join(shown) + " | clarify success rate |", "|---|---:|" + "---:|" * (len(shown) + 1)]
    for m, s in keys:
        c = {o: int(by.get((m, s, f"relabel.{o}"), 0)) for o in shown}
        tried = c["clarify_success"] + c["clarify_failure"]
        if tried:
            rate = f"{c['clarify_success'] / tried:.2f} ({c['clarify_success']}/{tried})"
        elif c.get("right_action"):
            rate = f"– ({c['right_action']} clarifying samples won on their action, unsimulated)"
        else:
            rate = "– (no clarifying sample on a CLARIFY turn)"
        out.append(f"| {LABEL.get(m, m)} | {s} | " + " | ".join(str(c[o]) for o in shown) + f" | {rate} |")
    return out


def rounds_table(study: Path, methods: list[str], seeds: list[int]) -> list[str]:
    """Share of each sampling round's on-policy samples that clarify (sampling_rounds.tsv)."""
    out = ["| method | seed | logged steps | first | last | mean | steps with a clarifying sample |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for m in methods:
        for s in seeds:
            f = study / "runs" / f"{m}-s{s}" / "sampling_rounds.tsv"
            if m == "sft" or not f.is_file():
                continue
            with open(f, newline="") as fh:
                shares = [float(r["clarify_share"]) for r in csv.DictReader(fh, delimiter="\t")]
            if shares:
                out.append(f"| {LABEL.get(m, m)} | {s} | {len(shares)} | {shares[0]:.2f} | {shares[-1]:.2f} | "
                           f"{sum(shares) / len(shares):.2f} | {sum(1 for x in shares if x > 0)} |")
    return out


def read_timings(study: Path, methods: list[str], seeds: list[int]) -> list[dict]:
    """Every run's timings.json as (method, seed, stage, seconds) rows (`act.tables.timings_markdown`'s)."""
    out = []
    for m in methods:
        for s in seeds:
            f = study / "runs" / f"{m}-s{s}" / "timings.json"
            if m != "sft" and f.is_file():
                out += [{"method": m, "seed": s, "stage": st, "seconds": sec} for st, sec in json.loads(f.read_text()).items()]
    return out


def timings_table(timings: list[dict]) -> list[str]:
    per: dict[str, dict[str, list[float]]] = {}
    for t in timings:
        per.setdefault(t["method"], {}).setdefault(t["stage"], []).append(t["seconds"])
    stages = [st for st in MODEL_STAGES if any(st in d for d in per.values())]  # data stages take seconds
    if not stages:
        return []
    out = ["| experiment | seeds | " + " | ".join(stages) + " |", "|---|---:|" + "---:|" * len(stages)]
    for m, d in per.items():
        n = max(len(v) for v in d.values())
        out.append(f"| {LABEL.get(m, m)}{' (+ SFT policy)' if m == 'act' else ''} | {n} | "
                   + " | ".join(f"{mean_std(d[st])[0] / 60:.1f}" if st in d else "–" for st in stages) + " |")
    return out


def plot(rows: list[dict], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("action.action_auc", "Action AUC (likelihood of asking vs answering)", 0.5),
              ("trajectory.success_rate", "Trajectory success (execution match)", None))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (metric, title, chance) in zip(axes, panels):
        for i, m in enumerate(methods):
            vals = [r["value"] for r in rows if r["method"] == m and r["metric"] == metric]
            if not vals:
                continue
            mu, sd = mean_std(vals)
            ax.bar(i, mu, yerr=sd, capsize=5, color=f"C{i}", alpha=0.75)
            ax.scatter([i + 0.12 * (j - (len(vals) - 1) / 2) for j in range(len(vals))], vals, color="k", s=12, zorder=3)
        if chance is not None:
            ax.axhline(chance, color="grey", ls="--", lw=1)
        ax.set_xticks(range(len(methods)), [LABEL.get(m, m) for m in methods], rotation=15)
        ax.set_title(title, fontsize=10)
    fig.suptitle("Mean ± sd over seeds; dots: seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rewrite_ablations(study: Path, rows: list[dict], methods: list[str], timings: list[dict]) -> list[Path]:
    """`act ablate`'s reports, as one sweep over all of `runs/` would have written them: the eval
    figures per (method, seed), ACT minus each other method, the relabel counts and the stage timings."""
    from act.metrics.paired import paired, summarize
    from act.simulate import OUTCOMES
    from act.tables import paired_markdown, relabel_markdown, timings_markdown, to_markdown, write_reports

    figures = [r for r in rows if not r["metric"].startswith(("probe.", "train.", "relabel."))]
    table_rows = summarize(figures)
    comparisons = paired(figures, methods) if "act" in methods else []
    value = {(r["method"], r["seed"], r["metric"]): r["value"] for r in rows}
    on_policy = sorted({(m, s) for m, s, k in value if k.startswith("relabel.")}, key=lambda k: (methods.index(k[0]), k[1]))
    relabel_rows = [{"method": m, "seed": s, "steps": int(value.get((m, s, "train.steps"), 0)),
                     **{o: int(value.get((m, s, f"relabel.{o}"), 0)) for o in OUTCOMES}} for m, s in on_policy]
    markdown = (to_markdown(table_rows, methods, sum(t["seconds"] for t in timings),
                            wall="summed stage time of every sweep")
                + paired_markdown(comparisons) + relabel_markdown(relabel_rows) + timings_markdown(timings))
    return write_reports(study, table_rows, markdown, methods, figures, comparisons)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("study", help="the sweep's --out dir (holds ablations_seeds.csv and runs/)")
    args = p.parse_args(argv)
    study = Path(args.study)
    if not any((study / "runs").glob("*-s*/evaluate.json")):
        print(f"error: {study}/runs/: no <method>-s<seed>/evaluate.json (run `act ablate --out {study}` first)", file=sys.stderr)
        return 2
    from act.io import atomic_file

    rows = read_rows(study)
    present = {r["method"] for r in rows}
    methods = [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))
    seeds = sorted({r["seed"] for r in rows})
    timings = read_timings(study, methods, seeds)
    md = [f"# Study: {study.name}", "",
          f"Seeds {', '.join(map(str, seeds))}. Rebuilt by `python scripts/study_report.py {study}` from the files beside it.", "",
          "## Per method (mean ± sd over seeds)", "", *table(rows, methods, EVAL), "",
          *table(rows, [m for m in methods if m != "sft"], TRAIN), "",
          "## action_auc per seed, with its bootstrap 95% interval", "", *auc_intervals(study, methods, seeds), "",
          "## Paired differences (same seeds; Student's t, n - 1 df, two-sided p)", "", *paired_table(rows, methods), "",
          "## Relabel outcomes of the on-policy runs (per seed)", "", *relabel_table(rows, methods), "",
          "## Share of on-policy samples that clarify, per training step", "",
          "From `sampling_rounds.tsv`. Runs made before commit 2e87873 logged only the last sampling round of each "
          "step (with `train.gradient_accumulation_steps` 2, half the samples); the totals in the table above "
          "(train.json) count every round.", "", *rounds_table(study, methods, seeds), "",
          "## Wall time per stage (minutes, mean over seeds; stages DVC reused from an earlier experiment are not counted again)",
          "", *timings_table(timings), ""]
    with atomic_file(study / "study.md") as fh:
        fh.write("\n".join(md))
    plot(rows, methods, study / "study.png")
    files = rewrite_ablations(study, rows, methods, timings)
    print(f"wrote {study / 'study.md'}, {study / 'study.png'} and " + ", ".join(f.name for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
