"""Evaluation plots (PNG) and a self-contained HTML report: data in, files out.

    write_plots(metrics, rows, train_log, out_dir)  -> list of PNG paths
    write_html(metrics, rows, plots, path, ...)      -> the report file

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
from act.metrics.summary import HEADLINE

CONFUSION_PNG = "confusion.png"
METRICS_PNG = "metrics.png"
MARGINS_PNG = "reward_margins.png"



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


def plot_metric_bars(metrics: dict[str, dict], path: Path) -> Path:
    """Headline metrics, one bar per policy, with seed std as error bars when present."""
    plt = pyplot()
    policies = list(metrics)
    shown = [(lvl, m, lab) for lvl, m, lab in HEADLINE if any(m in metrics[p].get(lvl, {}) for p in policies)]
    width = 0.8 / max(1, len(policies))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(shown) + 2), 3.8))
    for k, policy in enumerate(policies):
        vals = [metrics[policy].get(lvl, {}).get(m, 0.0) for lvl, m, _ in shown]
        errs = [metrics[policy].get(lvl, {}).get(f"{m}_std", 0.0) for lvl, m, _ in shown]
        xs = [i + (k - (len(policies) - 1) / 2) * width for i in range(len(shown))]
        bars = ax.bar(xs, vals, width, yerr=errs if any(errs) else None, capsize=3, label=policy)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in vals], fontsize=7, padding=1)
    ax.set_xticks(range(len(shown)), [lab for _, _, lab in shown], rotation=20, ha="right")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("score")
    ax.legend(title="policy", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Evaluation by level and policy")
    fig.tight_layout()
    path = save_png(fig, path)
    plt.close(fig)
    return path


def plot_reward_margins(log: Sequence[dict], path: Path) -> Path | None:
    """DPO reward margin (and accuracy) over training steps; None when the log has neither."""
    points = [(e["step"], e.get("rewards/margins"), e.get("rewards/accuracies")) for e in log
              if isinstance(e, dict) and "step" in e and ("rewards/margins" in e or "rewards/accuracies" in e)]
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
    probe = sorted((e["step"], e.get("probe/rewards/margins"), e.get("probe/rewards/accuracies")) for e in log
                   if isinstance(e, dict) and "step" in e and "probe/rewards/margins" in e)
    rounds = sorted((e["step"], e["samples/clarify"], e.get("samples/answer", 0), e.get("samples/policy_wins", 0))
                    for e in log if isinstance(e, dict) and "step" in e and "samples/clarify" in e)
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
        steps = [s for s, *_ in rounds]
        totals = [max(1, c + a) for _, c, a, _ in rounds]
        right.plot(steps, [c / t for (_, c, _, _), t in zip(rounds, totals)], marker="o", ms=3, label="samples that clarify")
        right.plot(steps, [w / t for (_, _, _, w), t in zip(rounds, totals)], marker="s", ms=3, label="policy-side winners")
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
    signal = plot_training_signal(train_log or [], out / "training_signal.png")
    if signal is not None:
        paths.append(signal)
    return paths


# -------------------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}img{max-width:100%;margin:0.5em 0}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1em;margin:1em 0;border-top:1px solid #ddd;padding-top:0.5em}
.msg{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:0.85em;margin:2px 0;padding:4px;border-radius:4px}
.user{background:#eef4ff}.assistant{background:#f1f8ec}.system{background:#f6f6f6}.meta{color:#666;font-size:0.85em}
"""


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))


def _table(metrics: dict[str, dict]) -> str:
    parts = []
    for level in ("action", "turn", "trajectory"):
        names: list[str] = []
        for policy in metrics:
            for name in metrics[policy].get(level, {}):
                if name not in names and not name.endswith("_std"):
                    names.append(name)
        head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
        body = []
        for policy, levels in metrics.items():
            vals = levels.get(level, {})
            cells = []
            for n in names:
                v = vals.get(n, "")
                std = vals.get(f"{n}_std")
                cells.append(f"<td>{_fmt(v)}{f' &plusmn; {std:.3f}' if std is not None else ''}</td>")
            body.append(f"<tr><th class=l>{html.escape(policy)}</th>{''.join(cells)}</tr>")
        parts.append(f"<h3>{level.capitalize()} level</h3><table><tr><th class=l>policy</th>{head}</tr>{''.join(body)}</table>")
    return "\n".join(parts)


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
                    f"{r['pred_action']} &middot; score {r['traj_score']:.2f} &middot; "
                    f"{'answered' if r['terminated'] else 'never answered'}")
            out.append(
                f"<p class=meta>{meta}</p>{_messages(prompt[-2:])}<div class=pair>"
                f"<div><b>gold</b>{_messages(gold)}</div><div><b>{html.escape(policy)}</b>{_messages(r.get('turns', []))}</div></div>"
            )
    return "\n".join(out)


def write_html(metrics: dict[str, dict], rows: Sequence[dict], plots: Sequence[str | Path], path: str | Path, *,
               title: str = "ACT evaluation", dataset: str = "", samples: int = 4) -> Path:
    images = []
    for p in plots:
        data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
        images.append(f"<img alt='{html.escape(Path(p).stem)}' src='data:image/png;base64,{data}'>")
    doc = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p class=meta>dataset: {html.escape(dataset)} &middot; policies: {html.escape(', '.join(metrics))}</p>"
        f"<h2>Metrics</h2>{_table(metrics)}<h2>Plots</h2>{''.join(images)}"
        f"<h2>Sampled conversations: gold vs policy</h2>{_samples(rows, list(metrics), samples)}"
        "</body></html>\n"
    )
    dest = Path(path)
    with atomic_file(dest) as fh:
        fh.write(doc)
    return dest
