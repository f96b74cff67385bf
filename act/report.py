"""Evaluation plots (PNG), their data for DVC, and a self-contained HTML report: data in, files out.

    write_plots(metrics, rows, train_log, out_dir)      -> list of PNG paths (embedded in the report)
    write_plot_data(metrics, rows, train_log, out_dir)  -> list of TSV/JSON files (`PLOT_DATA`)
    write_html(metrics, rows, plots, path, ...)          -> the report file
    plot_ablations(table, methods, path)                 -> reports/ablations.png

The plot data files are what dvc.yaml's top-level `plots:` section draws with DVC's templates, so
`dvc plots diff <exp1> <exp2>` overlays two experiments; the PNGs draw the same series for the
report.

`metrics` is the nested {policy: {level: {metric: value}}} dict of `metrics/evaluate.json`;
`rows` the per-example evaluation rows (see `act.metrics.summary`); `train_log` the trainer's log
history (dicts with `step`, `rewards/margins`, `rewards/accuracies`). Images go into the HTML as
base64 data URIs and the page has no scripts or external styles, so it opens offline.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Sequence

from act.actions import ACTIONS
from act.io import atomic_file
from act.metrics.summary import ABLATION_METRICS, HEADLINE, HEADLINE_KEYS

CONFUSION_PNG = "confusion.png"
METRICS_PNG = "metrics.png"
MARGINS_PNG = "reward_margins.png"
SIGNAL_PNG = "training_signal.png"

PLOT_DATA: dict[str, tuple[str, ...]] = {
    "headline.json": ("policy", "metric", "score"),
    "confusion": ("gold", "predicted"),
    "reward_margins.tsv": ("step", "margin", "accuracy"),
    "probe.tsv": ("step", "margin", "accuracy"),
    "sampling_rounds.tsv": ("step", "clarify_share", "policy_wins_share"),
}
"""The plot data `write_plot_data` writes under the plots dir, and the fields of each row:
headline.json one row per policy and headline metric (`metric` reads "act: Action Macro F1"), the
folder `confusion/` one JSON list per policy (`<policy>.json`, a row per eval example), the TSVs
one row per logged training step. dvc.yaml's `plots:` section names these paths and fields
(tests/test_plot_data.py holds the two together)."""


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> Path:
    """Write `fig` as a PNG atomically (no half-written plot survives a crash)."""
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_confusion(rows: Sequence[dict], policies: Sequence[str], path: Path) -> Path:
    """One gold x predicted action matrix per policy (counts, and share of the gold row)."""
    plt = pyplot()
    labels = [a.value for a in ACTIONS]
    fig, axes = plt.subplots(1, len(policies), figsize=(3.6 * len(policies), 3.4), squeeze=False)
    for ax, policy in zip(axes[0], policies):
        own = [r for r in rows if r["policy"] == policy]
        counts = [[sum(1 for r in own if r["gold_action"] == g and r["pred_action"] == p) for p in labels] for g in labels]
        shares = [[c / max(1, sum(row)) for c in row] for row in counts]
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for i, row in enumerate(counts):
            for j, c in enumerate(row):
                ax.text(j, i, f"{c}\n({shares[i][j]:.0%})", ha="center", va="center",
                        color="white" if shares[i][j] > 0.6 else "black", fontsize=10)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted action")
        ax.set_ylabel("gold action")
        ax.set_title(f"{policy} (n={len(own)})")
    fig.suptitle("Action confusion (first response)")
    fig.tight_layout()
    path = save_png(fig, path)
    plt.close(fig)
    return path


SIGNED = frozenset({"informedness"})
"""Metrics that live in [-1, 1] rather than [0, 1]: informedness (Youden's J) is below 0 when a
policy's actions are worse than chance."""


def metric_range(key: str) -> tuple[float, float]:
    """The range a headline metric lives in (`key` as `level.metric` or `metric`)."""
    return (-1.0, 1.0) if key.rsplit(".", 1)[-1] in SIGNED else (0.0, 1.0)


def unit_error_bars(means: Sequence[float], stds: Sequence[float],
                    ranges: Sequence[tuple[float, float]] | None = None) -> list[list[float]]:
    """matplotlib's asymmetric `yerr` ([below], [above]): the std, cut so a bar never leaves the
    range its metric lives in (`ranges`, one per bar; default [0, 1] for all)."""
    ranges = ranges or [(0.0, 1.0)] * len(means)
    return [[min(s, max(0.0, v - lo)) for v, s, (lo, _) in zip(means, stds, ranges)],
            [min(s, max(0.0, hi - v)) for v, s, (_, hi) in zip(means, stds, ranges)]]


def value_limits(values: Sequence[float], top: float) -> tuple[float, float]:
    """y limits showing every bar: 0 to `top`, reaching below 0 (with room for a label) when a
    value is negative, so a negative informedness is drawn as a bar below the axis, not cut off."""
    low = min([0.0, *values])
    return (low - 0.08 if low < 0 else 0.0), top


def plot_metric_bars(metrics: dict[str, dict], path: Path) -> Path:
    """Headline metrics, one bar per policy, with seed std as error bars (within [0, 1]) when present."""
    plt = pyplot()
    policies = list(metrics)
    shown = [(lvl, m, lab) for lvl, m, lab in HEADLINE if any(m in metrics[p].get(lvl, {}) for p in policies)]
    width = 0.8 / max(1, len(policies))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(shown) + 2), 3.8))
    ranges = [metric_range(m) for _, m, _ in shown]
    drawn: list[float] = []
    for k, policy in enumerate(policies):
        vals = [metrics[policy].get(lvl, {}).get(m, 0.0) for lvl, m, _ in shown]
        errs = [metrics[policy].get(lvl, {}).get(f"{m}_std", 0.0) for lvl, m, _ in shown]
        xs = [i + (k - (len(policies) - 1) / 2) * width for i in range(len(shown))]
        yerr = unit_error_bars(vals, errs, ranges) if any(errs) else None
        bars = ax.bar(xs, vals, width, yerr=yerr, capsize=3, label=policy)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in vals], fontsize=7, padding=1)
        drawn += [v - (yerr[0][i] if yerr else 0.0) for i, v in enumerate(vals)]
    ax.set_xticks(range(len(shown)), [lab for _, _, lab in shown], rotation=20, ha="right")
    ax.set_ylim(*value_limits(drawn, 1.08))
    ax.axhline(0.0, color="#444", linewidth=0.8)
    ax.set_ylabel("score")
    ax.legend(title="policy", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Evaluation by level and policy")
    fig.tight_layout()
    path = save_png(fig, path)
    plt.close(fig)
    return path


def margin_points(log: Sequence[dict]) -> list[tuple[Any, Any, Any]]:
    """(step, reward margin or None, reward accuracy or None) of the training log's DPO steps."""
    return [(e["step"], e.get("rewards/margins"), e.get("rewards/accuracies")) for e in log
            if isinstance(e, dict) and "step" in e and ("rewards/margins" in e or "rewards/accuracies" in e)]


def probe_points(log: Sequence[dict]) -> list[tuple[Any, Any, Any]]:
    """(step, margin, accuracy) on the fixed probe set (`probe/*` entries of the training log)."""
    return sorted((e["step"], e.get("probe/rewards/margins"), e.get("probe/rewards/accuracies")) for e in log
                  if isinstance(e, dict) and "step" in e and "probe/rewards/margins" in e)


def round_points(log: Sequence[dict]) -> list[tuple[Any, float, float]]:
    """(step, share of samples that clarify, share that won) per on-policy sampling round."""
    rounds = sorted((e["step"], e["samples/clarify"], e.get("samples/answer", 0), e.get("samples/policy_wins", 0))
                    for e in log if isinstance(e, dict) and "step" in e and "samples/clarify" in e)
    return [(s, c / max(1, c + a), w / max(1, c + a)) for s, c, a, w in rounds]


def plot_reward_margins(log: Sequence[dict], path: Path) -> Path | None:
    """DPO reward margin (and accuracy) over training steps; None when the log has neither."""
    points = margin_points(log)
    if not points:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    margins = [(s, m) for s, m, _ in points if m is not None]
    if margins:
        ax.plot([s for s, _ in margins], [m for _, m in margins], marker="o", ms=3, label="reward margin")
    ax.set_xlabel("training step")
    ax.set_ylabel("rewards/margins")
    accs = [(s, a) for s, _, a in points if a is not None]
    if accs:
        ax2 = ax.twinx()
        ax2.plot([s for s, _ in accs], [a for _, a in accs], color="tab:orange", ls="--", label="reward accuracy")
        ax2.set_ylim(0, 1.05)
        ax2.set_ylabel("rewards/accuracies")
        ax2.legend(loc="lower right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("DPO reward margin during ACT training")
    fig.tight_layout()
    path = save_png(fig, path)
    plt.close(fig)
    return path


def plot_training_signal(log: Sequence[dict], path: Path) -> Path | None:
    """What ACT training learns from: DPO margin and reward accuracy on the fixed probe set (the eval
    split's Phase-1 pairs, `probe/*` entries of the training log) and, per sampling round, the share
    of samples that clarify and the share that won (replaced the chosen side). None without either."""
    probe = probe_points(log)
    rounds = round_points(log)
    if not probe and not rounds:
        return None
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.4))
    if probe:
        left.plot([s for s, _, _ in probe], [m for _, m, _ in probe], marker="o", ms=3, label="probe margin")
        left.axhline(0.0, color="#999", lw=0.8)
        acc = left.twinx()
        acc.plot([s for s, _, _ in probe], [a for _, _, a in probe], color="tab:orange", ls="--", label="probe accuracy")
        acc.set_ylim(0, 1.05)
        acc.set_ylabel("reward accuracy")
        acc.legend(loc="lower right", fontsize=8)
        left.legend(loc="upper left", fontsize=8)
    left.set_xlabel("training step")
    left.set_ylabel("reward margin")
    left.set_title("Fixed probe set (eval Phase-1 pairs)")
    if rounds:
        steps = [s for s, _, _ in rounds]
        right.plot(steps, [c for _, c, _ in rounds], marker="o", ms=3, label="samples that clarify")
        right.plot(steps, [w for _, _, w in rounds], marker="s", ms=3, label="policy-side winners")
        right.set_ylim(-0.02, 1.02)
        right.legend(fontsize=8)
    right.set_xlabel("training step (sampling round)")
    right.set_ylabel("share of the round's samples")
    right.set_title("On-policy samples per round")
    fig.tight_layout()
    path = save_png(fig, path)
    plt.close(fig)
    return path


def write_plots(metrics: dict[str, dict], rows: Sequence[dict], train_log: Sequence[dict] | None,
                out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_confusion(rows, list(metrics), out / CONFUSION_PNG), plot_metric_bars(metrics, out / METRICS_PNG)]
    margins = plot_reward_margins(train_log or [], out / MARGINS_PNG)
    if margins is not None:
        paths.append(margins)
    signal = plot_training_signal(train_log or [], out / SIGNAL_PNG)
    if signal is not None:
        paths.append(signal)
    return paths


def _write_tsv(path: Path, fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with atomic_file(path) as fh:
        fh.write("\t".join(fields) + "\n")
        for row in rows:
            fh.write("\t".join("" if v is None else str(v) for v in row) + "\n")
    return path


def _write_rows_json(path: Path, rows: list[dict]) -> Path:
    import json

    with atomic_file(path) as fh:
        json.dump(rows, fh, indent=1)
        fh.write("\n")
    return path


def headline_rows(metrics: dict[str, dict]) -> list[dict]:
    """[{"policy", "metric": "<policy>: <label>", "score"}] for the headline metrics each policy has."""
    return [{"policy": policy, "metric": f"{policy}: {label}", "score": levels[lvl][m]}
            for policy, levels in metrics.items() for lvl, m, label in HEADLINE if m in levels.get(lvl, {})]


def write_plot_data(metrics: dict[str, dict], rows: Sequence[dict], train_log: Sequence[dict] | None,
                    out_dir: str | Path) -> list[Path]:
    """The series behind the plots as DVC plot data (`PLOT_DATA`): headline scores and gold x
    predicted actions per policy, and the training curves when the log has them."""
    out = Path(out_dir)
    paths = [_write_rows_json(out / "headline.json", headline_rows(metrics))]
    for policy in metrics:
        pairs = [{"gold": r["gold_action"], "predicted": r["pred_action"]} for r in rows if r["policy"] == policy]
        paths.append(_write_rows_json(out / "confusion" / f"{policy}.json", pairs))
    log = train_log or []
    curves = {"reward_margins.tsv": margin_points(log), "probe.tsv": probe_points(log),
              "sampling_rounds.tsv": round_points(log)}
    for name, points in curves.items():
        if points:
            paths.append(_write_tsv(out / name, PLOT_DATA[name], points))
    return paths


# ------------------------------------------------------------------------------------ ablations
def metric_label(key: str) -> str:
    """A readable name for a flattened metric key ("action.macro_f1" -> "Action Macro F1")."""
    labels = {f"{lvl}.{m}": lab for lvl, m, lab in HEADLINE}
    return labels.get(key) or key.replace("_", " ").replace(".", ": ", 1)


def ablation_bars(table: Sequence[dict[str, Any]], methods: Sequence[str]) -> tuple[list[str], list[str], dict]:
    """What the ablation plot draws: (metrics shown, metrics left out as 0 for every method,
    {method: (means, error below, error above)}). The error bars are the seed std cut to the
    range the metric lives in (`metric_range`: [0, 1], informedness [-1, 1])."""
    by = {(r["method"], r["metric"]): r for r in table}
    present = list(dict.fromkeys(r["metric"] for r in table))
    wanted = [m for m in ABLATION_METRICS if m in present] or [m for m in HEADLINE_KEYS if m in present] or present
    flat = [k for k in wanted if all(by[(m, k)]["mean"] == 0 and by[(m, k)]["std"] == 0 for m in methods if (m, k) in by)]
    shown = [k for k in wanted if k not in flat]
    bars = {}
    for m in methods:
        means = [by[(m, k)]["mean"] if (m, k) in by else 0.0 for k in shown]
        stds = [by[(m, k)]["std"] if (m, k) in by else 0.0 for k in shown]
        low, high = unit_error_bars(means, stds, [metric_range(k) for k in shown])
        bars[m] = (means, low, high)
    return shown, flat, bars


def plot_ablations(table: Sequence[dict[str, Any]], methods: Sequence[str], path: str | Path) -> Path:
    """Mean per method and metric (`ablation_bars`), labelled in words; a metric that is 0 for every
    method is named under the axes instead of drawn as an empty group. The ablation CSV and
    markdown keep every metric."""
    plt = pyplot()
    shown, flat, bars = ablation_bars(table, methods)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(shown) * max(1, len(methods)) ** 0.5 + 2.5), 4.2))
    width = 0.8 / max(1, len(methods))
    for i, (m, (means, low, high)) in enumerate(bars.items()):
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(shown))]
        ax.bar(xs, means, width, yerr=[low, high], capsize=2, label=m)
    ax.set_xticks(range(len(shown)), [metric_label(k) for k in shown])
    ax.set_ylim(*value_limits([v - lo for means, low, _ in bars.values() for v, lo in zip(means, low)], 1.05))
    ax.axhline(0.0, color="#444", linewidth=0.8)
    ax.set_ylabel("score (mean over seeds)")
    ax.legend(title="method", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("ACT ablations: mean, error bars = seed std (cut to the metric's range)")
    if flat:
        ax.text(0.0, -0.16, "0 for every method, not drawn: " + ", ".join(metric_label(k) for k in flat),
                transform=ax.transAxes, fontsize=8, color="#555", va="top")
    if not shown:
        ax.text(0.5, 0.5, "every metric is 0 for every method", transform=ax.transAxes, ha="center", color="#555")
    fig.tight_layout()
    path = save_png(fig, Path(path))
    plt.close(fig)
    return path


# -------------------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1300px;color:#222}
.scroll{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 6px;text-align:right}
th{background:#f3f3f3;font-weight:600;max-width:7em;vertical-align:bottom}td{white-space:nowrap}
td.l,th.l{text-align:left}td.na{color:#999;text-align:center}.key{display:block;font-weight:normal;color:#777;font-size:0.75em;overflow-wrap:anywhere}
img{max-width:100%;margin:0.5em 0}
.pair{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1em;margin:1em 0;border-top:1px solid #ddd;padding-top:0.5em}
.msg{white-space:pre-wrap;overflow-wrap:anywhere;font-family:ui-monospace,monospace;font-size:0.85em;margin:2px 0;padding:4px;border-radius:4px}
.user{background:#eef4ff}.assistant{background:#f1f8ec}.system{background:#f6f6f6}.meta{color:#666;font-size:0.85em}
"""

MISSING = "&ndash;"
"""What a table cell shows for a metric the policy has no value for (see `LEGEND`)."""

COUNTS = frozenset({"n", "n_answer", "n_gold_clarify", "n_post_clarify", "non_terminated", "empty", "errors",
                    "timeouts", "seeds", "action_auc_n_clarify", "action_auc_n_answer", "action_auc_skipped"})
"""Metrics that count examples: shown as whole numbers (a mean over seeds keeps one decimal)."""

LABELS = {
    "accuracy": "accuracy", "macro_f1": "Macro F1", "weighted_f1": "weighted F1", "clarify_f1": "clarify F1",
    "clarify_precision": "clarify precision", "clarify_recall": "clarify recall", "n": "examples",
    "answer_score": "task score (answer turns)", "n_answer": "answer turns", "token_f1": "token F1",
    "embedding_similarity": "embedding similarity", "empty": "empty replies", "errors": "SQL execution errors",
    "timeouts": "SQL timeouts", "score": "score", "success_rate": "success rate",
    "post_clarify_score": "score after asking", "n_post_clarify": "asked first",
    "score_gold_clarify": "score on ambiguous turns", "n_gold_clarify": "ambiguous turns",
    "terminated_rate": "answered rate", "mean_clarify_turns": "questions asked (mean)",
    "non_terminated": "never answered", "seeds": "seeds",
    "action_auc": "action AUC [95% CI]", "action_auc_n_clarify": "AUC: ambiguous turns",
    "action_auc_n_answer": "AUC: clear turns", "action_auc_skipped": "AUC: no answer to score",
}
"""Column headings of the metrics tables; the metrics.json key is printed under each."""

LEGEND = (f"{MISSING} = not measured for this policy or dataset (SQL errors and timeouts exist only for "
          "AmbigSQL, token F1 only for text answers). Counts are numbers of eval examples (a mean when "
          "there are several seeds); &plusmn; is the standard deviation over seeds. SQL execution errors: "
          "answers whose SQL failed to run on the database. Action AUC: how well the policy's log-likelihood "
          "of a fixed clarifying question minus that of the gold answer ranks ambiguous turns above clear "
          "ones (0.5 = blind, 1 = perfect; no generation, so no threshold), with its bootstrap interval.")


def _fmt(name: str, v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return html.escape(str(v))
    if name in COUNTS:
        return str(int(v)) if float(v).is_integer() else f"{v:.1f}"
    return f"{v:.3f}"


def _cell(name: str, vals: dict) -> str:
    if name not in vals:
        return f"<td class=na title='not measured'>{MISSING}</td>"
    std = vals.get(f"{name}_std")
    spread = f" &plusmn; {_fmt(name, std)}" if std is not None else ""
    if f"{name}_lo" in vals and f"{name}_hi" in vals:  # an interval (action_auc) beside its point
        spread += f" [{_fmt(name, vals[f'{name}_lo'])}, {_fmt(name, vals[f'{name}_hi'])}]"
    return f"<td>{_fmt(name, vals[name])}{spread}</td>"


def _interval_end(name: str, vals: dict) -> bool:
    """True for `<m>_lo` / `<m>_hi` when `<m>` is there too: shown in `<m>`'s cell, not as a column."""
    base, _, end = name.rpartition("_")
    return end in ("lo", "hi") and base in vals


def _table(metrics: dict[str, dict]) -> str:
    parts = []
    for level in ("action", "turn", "trajectory"):
        names: list[str] = []
        for policy in metrics:
            for name in metrics[policy].get(level, {}):
                if name not in names and not name.endswith("_std") and not _interval_end(name, metrics[policy][level]):
                    names.append(name)
        head = "".join(f"<th>{html.escape(LABELS.get(n, n.replace('_', ' ')))}<span class=key>{html.escape(n)}</span></th>"
                       for n in names)
        body = []
        for policy, levels in metrics.items():
            cells = "".join(_cell(n, levels.get(level, {})) for n in names)
            body.append(f"<tr><th class=l>{html.escape(policy)}</th>{cells}</tr>")
        parts.append(f"<h3>{level.capitalize()} level</h3><div class=scroll><table>"
                     f"<tr><th class=l>policy</th>{head}</tr>{''.join(body)}</table></div>")
    parts.append(f"<p class=meta>{LEGEND}</p>")
    return "\n".join(parts)


def outcome(row: dict) -> str:
    """How a sampled conversation ended, in words: an empty reply is "empty reply", never "answered"."""
    if row.get("first_empty") or row.get("traj_status") == "empty":
        return "empty reply"
    if not row.get("terminated"):
        return "never answered"
    status = row.get("traj_status")
    if status == "error":
        return "answered (SQL execution error)"
    if status == "timeout":
        return "answered (SQL timed out)"
    return "answered"


def _messages(msgs: Sequence[dict]) -> str:
    return "".join(
        f"<div class='msg {html.escape(m.get('role', ''))}'><b>{html.escape(m.get('role', ''))}:</b> "
        f"{html.escape(str(m.get('content', '')))}</div>"
        for m in msgs
    )


def _samples(rows: Sequence[dict], policies: Sequence[str], per_policy: int) -> str:
    out = []
    for policy in policies:
        own = [r for r in rows if r["policy"] == policy and r.get("seed") == min(x.get("seed", 0) for x in rows)]
        # Show ambiguous turns first: they are where the policies differ most.
        own = sorted(own, key=lambda r: (r["gold_action"] != "clarify", r["record_id"]))[:per_policy]
        if not own:
            continue
        out.append(f"<h3>{html.escape(policy)}</h3>")
        for r in own:
            prompt = [m for m in r.get("messages", []) if m.get("role") != "system"]
            gold = [{"role": "assistant", "content": r.get("gold_response", "")}]
            if r.get("gold_reply"):
                gold += [{"role": "user", "content": r["gold_reply"]}, {"role": "assistant", "content": r.get("gold_target", "")}]
            meta = (f"record {html.escape(r['record_id'])} &middot; gold {r['gold_action']} &middot; policy "
                    f"{r['pred_action']} &middot; score {r['traj_score']:.2f} &middot; {outcome(r)}")
            out.append(
                f"<p class=meta>{meta}</p>{_messages(prompt[-2:])}<div class=pair>"
                f"<div><b>gold</b>{_messages(gold)}</div><div><b>{html.escape(policy)}</b>{_messages(r.get('turns', []))}</div></div>"
            )
    return "\n".join(out)


CODE_PATHS = ("act", "stages", "params.yaml", "dvc.yaml")
"""What a report's figures depend on in the repository (the data is pinned by dvc.lock)."""


def code_commit(cwd: str | Path | None = None) -> str:
    """The last commit that changed the code or params (`CODE_PATHS`), with " + uncommitted changes"
    when the checkout differs there. Not HEAD: the commit that records a run's outputs would change
    the report it records, so a fresh clone's `dvc repro` could never write the committed bytes."""
    import subprocess

    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd).stdout.strip()

        commit = git("log", "-1", "--format=%H", "--", *CODE_PATHS)
        if commit and git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS):
            return commit + " + uncommitted changes"
        return commit
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance(params: Any, seeds: Sequence[int] = (), cwd: str | Path | None = None) -> dict[str, Any]:
    """What the report states it came from: the commit, that commit's date (not the wall clock: a
    rerun at the same commit writes the same bytes, and the report is a DVC output), the seeds
    and every param (flattened, secrets masked as for MLflow)."""
    import subprocess

    from act.tracking import flatten, git_commit, redact

    commit = code_commit(cwd) or git_commit(cwd)
    date = ""
    if commit:
        try:
            date = subprocess.run(["git", "show", "-s", "--format=%cI", commit.split()[0]], capture_output=True, text=True,
                                  timeout=5, cwd=cwd).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            date = ""
    flat = redact({k: v for k, v in flatten(params).items()}) if params is not None else {}
    return {"commit": commit or "unknown (not a git checkout)", "date": date or "unknown",
            "seed": flat.get("seed", ""), "seeds": ", ".join(map(str, seeds)), "params": flat}


def _provenance(prov: dict[str, Any] | None) -> str:
    """The report's header lines: commit, date, seeds, and every param in a folded table."""
    if not prov:
        return ""
    e = html.escape
    head = (f"<p class=meta>code commit <code>{e(str(prov.get('commit', '')))}</code> &middot; committed "
            f"{e(str(prov.get('date', '')))} &middot; seed {e(str(prov.get('seed', '')))}"
            + (f" &middot; evaluation seeds {e(str(prov['seeds']))}" if prov.get("seeds") else "") + "</p>")
    params = prov.get("params") or {}
    if not params:
        return head
    cells = "".join(f"<tr><td class=l>{e(str(k))}</td><td class=l>{e(str(v))}</td></tr>" for k, v in params.items())
    return head + (f"<details><summary class=meta>params ({len(params)} keys, params.yaml with overrides)</summary>"
                   f"<table>{cells}</table></details>")


def write_html(metrics: dict[str, dict], rows: Sequence[dict], plots: Sequence[str | Path], path: str | Path, *,
               title: str = "ACT evaluation", dataset: str = "", samples: int = 4,
               provenance: dict[str, Any] | None = None) -> Path:
    """The report page. `provenance` (see `provenance()`) adds commit, date, seeds and params
    under the title."""
    images = []
    for p in plots:
        data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
        images.append(f"<img alt='{html.escape(Path(p).stem)}' src='data:image/png;base64,{data}'>")
    doc = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p class=meta>dataset: {html.escape(dataset)} &middot; policies: {html.escape(', '.join(metrics))}</p>"
        f"{_provenance(provenance)}"
        f"<h2>Metrics</h2>{_table(metrics)}<h2>Plots</h2>{''.join(images)}"
        f"<h2>Sampled conversations: gold vs policy</h2>{_samples(rows, list(metrics), samples)}"
        "</body></html>\n"
    )
    dest = Path(path)
    with atomic_file(dest) as fh:
        fh.write(doc)
    return dest
