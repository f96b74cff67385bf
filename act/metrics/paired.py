"""Across-seed statistics of a sweep: mean and std per method and metric, and paired differences.

Rows are (method, seed, metric, value), one per figure of one experiment. `summarize` gives the
mean and std per (method, metric); `paired` gives ACT minus each other method on the seeds both
ran, with Student's t (`act.metrics.summary.paired_difference`).
"""

from __future__ import annotations

from typing import Any, Sequence

def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """rows: (method, seed, metric, value) -> (method, metric, mean, std, n)."""
    from act.metrics.summary import mean_std

    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["metric"]), []).append(r["value"])
    out = []
    for (m, k), v in groups.items():
        mean, std = mean_std(v)
        out.append({"method": m, "metric": k, "mean": mean, "std": std, "n": len(v)})
    return out


def headline(table: list[dict[str, Any]]) -> list[str]:
    """The headline metrics (`act.metrics.summary.HEADLINE`) the table has, else all of them
    (the CSV and MLflow always hold every metric)."""
    from act.metrics.summary import HEADLINE_KEYS

    metrics = list(dict.fromkeys(r["metric"] for r in table))
    shown = [m for m in HEADLINE_KEYS if m in metrics]
    return shown or metrics


def paired(rows: list[dict[str, Any]], methods: Sequence[str], reference: str = "act") -> list[dict[str, Any]]:
    """ACT (`reference`) minus each other method, per seed, on the seeds both have: the mean
    difference, its std, Student's t and two-sided p (`act.metrics.summary.paired_difference`), per
    headline metric. Seeds share data and split, so pairing removes the seed-to-seed spread."""
    from act.metrics.summary import paired_difference

    value = {(r["method"], r["metric"], r["seed"]): r["value"] for r in rows}
    metrics = headline([{"metric": r["metric"]} for r in rows])
    out = []
    for other in methods:
        if other == reference or reference not in methods:
            continue
        for metric in metrics:
            seeds = sorted({s for (m, k, s) in value if m == reference and k == metric}
                           & {s for (m, k, s) in value if m == other and k == metric})
            if not seeds:
                continue
            d = paired_difference([value[(reference, metric, s)] for s in seeds],
                                  [value[(other, metric, s)] for s in seeds])
            out.append({"reference": reference, "method": other, "metric": metric, "seeds": seeds, **d})
    return out
