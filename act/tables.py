"""The tables a run and a sweep report: Markdown, CSV and the ablation plot's files.

- `headline_table`: `metrics/evaluate.json` as a Markdown table of the headline metrics per policy
  (`act show`, the pipeline flow's artifact).
- `policy_figures`: the numbers of one policy in a metrics file (a sweep's rows).
- `to_markdown`, `paired_markdown`, `relabel_markdown`, `write_reports`: a sweep's
  `ablations.md`, `.csv`, `.png`, `ablations_seeds.csv` and `ablations_paired.csv`.

Only the standard library at import time: `act show` and `act --help` stay quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def headline_table(metrics: dict) -> str:
    """`metrics/evaluate.json` ({policy: {level: {metric: value}}}) as a Markdown table of the
    headline metrics (`act.metrics.summary.HEADLINE`) and the number of eval turns."""
    from act.metrics.summary import HEADLINE

    columns = [*HEADLINE, ("trajectory", "n", "n")]
    rows = ["| Policy | " + " | ".join(title for _, _, title in columns) + " |",
            "|---|" + "---:|" * len(columns)]
    for policy, levels in metrics.items():
        if not isinstance(levels, dict):
            continue
        cells = []
        for level, key, _ in columns:
            value = levels.get(level, {}).get(key)
            std = levels.get(level, {}).get(f"{key}_std")
            if value is None:
                cells.append("-")
            elif key == "n":
                cells.append(str(int(value)))
            else:
                cells.append(f"{value:.3f}" + (f" ± {std:.3f}" if std else ""))
        rows.append(f"| {policy} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def policy_figures(metrics: dict[str, Any], metrics_file: str, policy: str) -> dict[str, float]:
    """The numbers of one policy in a metrics file: its subtree when the file is keyed by policy
    (evaluate writes {"base": {...}, "sft": {...}, "act": {...}}), else every number in it."""
    from act.tracking import flatten

    data = metrics.get(metrics_file, metrics)
    for key in (policy, "policies"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key] if key == policy else data[key].get(policy, {})
            break
    return {k: float(v) for k, v in flatten(data).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def relabel_markdown(relabels: list[dict[str, Any]]) -> str:
    from act.simulate import OUTCOMES

    if not relabels:
        return ""
    lines = ["", "Relabel outcomes of the on-policy runs (pairs whose side the policy's own sample replaced, "
             "by branch; `metrics/train.json`):", "",
             "| method | seed | " + " | ".join(OUTCOMES) + " | training steps |",
             "|---|---:|" + "---:|" * (len(OUTCOMES) + 1)]
    for r in relabels:
        lines.append(f"| {r['method']} | {r['seed']} | " + " | ".join(str(int(r[o])) for o in OUTCOMES)
                     + f" | {r['steps']} |")
    return "\n".join(lines) + "\n"


def timings_markdown(timings: list[dict[str, Any]]) -> str:
    """Wall time per stage and experiment (minutes), one row per (method, seed); "–" where DVC
    restored the stage from an earlier experiment (e.g. the SFT every method of a seed shares)."""
    if not timings:
        return ""
    stages = sorted({t["stage"] for t in timings})
    cell = {(t["method"], t["seed"], t["stage"]): t["seconds"] for t in timings}
    keys = sorted({(t["method"], t["seed"]) for t in timings}, key=lambda k: (k[1], k[0]))
    lines = ["", "Wall time per stage, minutes (the stages that ran in each experiment; MLflow `seconds`):", "",
             "| method | seed | " + " | ".join(stages) + " | total |", "|---|---:|" + "---:|" * (len(stages) + 1)]
    for m, seed in keys:
        vals = [cell.get((m, seed, st)) for st in stages]
        lines.append(f"| {m} | {seed} | " + " | ".join("–" if v is None else f"{v / 60:.1f}" for v in vals)
                     + f" | {sum(v for v in vals if v) / 60:.1f} |")
    return "\n".join(lines) + "\n"


def paired_markdown(comparisons: list[dict[str, Any]]) -> str:
    from act.metrics.summary import ABLATION_METRICS

    shown = [c for c in comparisons if c["metric"] in ABLATION_METRICS]
    if not shown:
        return ""
    lines = ["", "Paired differences (same seeds; Student's t with n - 1 df, two-sided p; "
             "\"–\": the differences do not vary or there is one seed):", "",
             "| difference | metric | per seed | mean | t | p |", "|---|---|---|---:|---:|---:|"]
    for c in shown:
        per_seed = ", ".join(f"{d:+.3f}" for d in c["diffs"])
        t = "–" if c["t"] is None else f"{c['t']:.2f}"
        p = "–" if c["p"] is None else f"{c['p']:.3f}"
        lines.append(f"| {c['reference']} − {c['method']} | {c['metric']} | {per_seed} | {c['mean']:+.3f} | {t} | {p} |")
    return "\n".join(lines) + "\n"


def to_markdown(table: list[dict[str, Any]], methods: Sequence[str], seconds: float, wall: str = "wall time") -> str:
    """The mean ± std table; `wall` names what `seconds` measured (a sweep's wall time by default)."""
    from act.metrics.paired import headline

    metrics = headline(table)
    cell = {(r["method"], r["metric"]): f"{r['mean']:.3f} ± {r['std']:.3f}" for r in table}
    n = max((r["n"] for r in table), default=0)
    lines = [f"Mean ± std over {n} seed(s); {wall} {seconds / 60:.1f} min.", "",
             "| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(cell.get((m, k), "–") for k in metrics) + " |")
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    from act.io import atomic_file

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_file(path) as fh:
        fh.write(buf.getvalue())


def write_reports(out_dir: Path, table: list[dict[str, Any]], markdown: str, methods: Sequence[str],
                  rows: list[dict[str, Any]] | None = None,
                  comparisons: list[dict[str, Any]] | None = None) -> list[Path]:
    """ablations.md (table + paired differences), ablations.csv (mean/std), ablations.png, and
    with `rows` ablations_seeds.csv (every method x seed x metric value) and ablations_paired.csv."""
    from act.io import atomic_file
    from act.report import plot_ablations

    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv_path, png = out_dir / "ablations.md", out_dir / "ablations.csv", out_dir / "ablations.png"
    with atomic_file(md) as fh:
        fh.write("# Ablations\n\n" + markdown)
    _write_csv(csv_path, ["method", "metric", "mean", "std", "n"], table)
    plot_ablations(table, methods, png)
    files = [md, csv_path, png]
    if rows:
        files.append(out_dir / "ablations_seeds.csv")
        _write_csv(files[-1], ["method", "seed", "metric", "value"], rows)
    if comparisons:
        files.append(out_dir / "ablations_paired.csv")
        _write_csv(files[-1], ["reference", "method", "metric", "seeds", "diffs", "mean", "std", "n", "t", "p"],
                   [{**c, "seeds": " ".join(map(str, c["seeds"])), "diffs": " ".join(f"{d:.6g}" for d in c["diffs"])}
                    for c in comparisons])
    return files
