"""ROC AUC of a score against binary labels (Mann-Whitney), with a seeded bootstrap interval.

Used for `action_auc` (`act.metrics.likelihood`): does a policy's preference for asking over
answering rank the ambiguous turns above the clear ones? Unlike Macro F1 of greedy actions it
needs no threshold, so it moves before a small model ever flips its first token.

AUC = P(score of a random positive > score of a random negative), ties counted half: 1.0 = every
positive ranked above every negative, 0.5 = blind (e.g. all scores equal), 0.0 = exactly reversed.
Plain numpy (scikit-learn is a test-only dependency; the tests check agreement with it).

The interval is a stratified percentile bootstrap: each replicate resamples the positives and the
negatives separately, with replacement, so every replicate keeps both class sizes (a replicate
without one class would have no AUC).
"""

from __future__ import annotations

from typing import Any, Sequence


def pairwise_wins(pos: Sequence[float], neg: Sequence[float]):
    """Matrix [i, j] = 1 if pos[i] > neg[j], 0.5 if equal, 0 if below (float64 numpy array)."""
    import numpy as np

    p = np.asarray(pos, dtype=np.float64)[:, None]
    n = np.asarray(neg, dtype=np.float64)[None, :]
    return (p > n).astype(np.float64) + 0.5 * (p == n)


def roc_auc(scores: Sequence[float], labels: Sequence[bool | int]) -> float:
    """ROC AUC of `scores` for the positives in `labels` (truthy = positive), ties counted half.
    ValueError when the lengths differ or either class is empty (no AUC without both)."""
    pos, neg = _split(scores, labels)
    return float(pairwise_wins(pos, neg).mean())


def _split(scores: Sequence[float], labels: Sequence[bool | int]) -> tuple[list[float], list[float]]:
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    pos = [float(s) for s, y in zip(scores, labels) if y]
    neg = [float(s) for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        raise ValueError(f"ROC AUC needs both classes; got {len(pos)} positive and {len(neg)} negative")
    return pos, neg


def auc_with_interval(scores: Sequence[float], labels: Sequence[bool | int], *, resamples: int = 1000,
                      seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """{"auc", "lo", "hi", "n_pos", "n_neg"}: the AUC and its stratified percentile bootstrap
    interval at `level` over `resamples` replicates drawn from numpy's generator seeded `seed`
    (same inputs and seed = same interval). With `resamples` 0 the interval is the point."""
    import numpy as np

    pos, neg = _split(scores, labels)
    wins = pairwise_wins(pos, neg)
    auc = float(wins.mean())
    lo = hi = auc
    if resamples > 0:
        rng = np.random.default_rng(seed)
        # resampling indices with replacement = weighting each score by how often it was drawn
        w_pos = rng.multinomial(len(pos), [1.0 / len(pos)] * len(pos), size=resamples)
        w_neg = rng.multinomial(len(neg), [1.0 / len(neg)] * len(neg), size=resamples)
        reps = np.einsum("bi,ij,bj->b", w_pos, wins, w_neg) / (len(pos) * len(neg))
        tail = (1.0 - level) / 2 * 100
        lo, hi = (float(v) for v in np.percentile(reps, [tail, 100 - tail]))
    return {"auc": auc, "lo": lo, "hi": hi, "n_pos": len(pos), "n_neg": len(neg)}
