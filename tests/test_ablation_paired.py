"""The paired ACT-vs-method comparison of the ablation sweep (act ablate)."""

from __future__ import annotations

import csv

import pytest


def _rows(values: dict[str, list[float]], metric: str = "trajectory.score", seeds=(0, 1, 2)):
    return [{"method": m, "seed": s, "metric": metric, "value": v}
            for m, vs in values.items() for s, v in zip(seeds, vs)]


def test_paired_difference_is_scipys_paired_t_test():
    from scipy.stats import ttest_rel

    from act.metrics.summary import paired_difference

    act, dpo = [0.081, 0.124, 0.086], [0.097, 0.151, 0.095]
    d = paired_difference(act, dpo)
    ref = ttest_rel(act, dpo)
    assert d["diffs"] == pytest.approx([-0.016, -0.027, -0.009])
    assert d["t"] == pytest.approx(ref.statistic) and d["p"] == pytest.approx(ref.pvalue)
    assert d["df"] == 2 and d["mean"] == pytest.approx(-0.01733, abs=1e-4)


def test_paired_difference_without_spread_has_no_test():
    from act.metrics.summary import paired_difference

    assert paired_difference([0.5, 0.6], [0.4, 0.5])["t"] is None  # identical differences
    assert paired_difference([0.5], [0.4])["p"] is None  # one seed
    with pytest.raises(ValueError, match="equally long"):
        paired_difference([0.5, 0.6], [0.4])


def test_paired_uses_only_seeds_both_methods_have():
    from act.metrics.paired import paired

    rows = _rows({"act": [0.3, 0.5, 0.4], "dpo_offpolicy": [0.1, 0.2, 0.4]}) + _rows({"sft": [0.0, 0.1]}, seeds=(1, 2))
    by = {c["method"]: c for c in paired(rows, ["sft", "dpo_offpolicy", "act"])}
    assert set(by) == {"sft", "dpo_offpolicy"}  # ACT is the reference, never compared with itself
    assert by["sft"]["seeds"] == [1, 2] and by["sft"]["diffs"] == pytest.approx([0.5, 0.3])
    assert by["dpo_offpolicy"]["diffs"] == pytest.approx([0.2, 0.3, 0.0])
    assert paired(rows, ["sft", "dpo_offpolicy"]) == []  # no ACT in the sweep: nothing to pair


def test_reports_carry_seed_values_and_paired_table(tmp_path):
    from act.metrics.paired import paired, summarize
    from act.tables import paired_markdown, to_markdown, write_reports

    rows = _rows({"act": [0.3, 0.5, 0.4], "dpo_offpolicy": [0.1, 0.2, 0.4]})
    table, comparisons = summarize(rows), paired(rows, ["dpo_offpolicy", "act"])
    md = to_markdown(table, ["dpo_offpolicy", "act"], 60.0) + paired_markdown(comparisons)
    files = write_reports(tmp_path, table, md, ["dpo_offpolicy", "act"], rows, comparisons)
    assert {f.name for f in files} == {"ablations.md", "ablations.csv", "ablations.png",
                                       "ablations_seeds.csv", "ablations_paired.csv"}
    assert "| act − dpo_offpolicy | trajectory.score | +0.200, +0.300, +0.000 | +0.167 |" in (tmp_path / "ablations.md").read_text()
    seeds = list(csv.DictReader((tmp_path / "ablations_seeds.csv").open()))
    assert len(seeds) == 6 and {r["seed"] for r in seeds} == {"0", "1", "2"}
    (row,) = csv.DictReader((tmp_path / "ablations_paired.csv").open())
    assert row["seeds"] == "0 1 2" and float(row["t"]) == pytest.approx(1.8898, abs=1e-3)


def test_experiment_started_after_a_mid_sweep_commit_is_found(tmp_path):
    """`dvc exp run` bases an experiment on HEAD as it starts: after a commit made while the sweep
    runs, the next experiment's ref lies under the new commit, not the sweep's pinned baseline."""
    import json
    import subprocess

    from flows.experiments import find_exp_ref, head_commit, read_exp_metrics

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")

    def commit_exp(name: str, value: float) -> str:
        base = head_commit(tmp_path)
        (tmp_path / "metrics").mkdir(exist_ok=True)
        (tmp_path / "metrics" / "evaluate.json").write_text(json.dumps({"act": {"action": {"macro_f1": value}}}))
        git("add", "-A")
        git("commit", "-qm", name)
        sha = git("rev-parse", "HEAD")
        git("reset", "-q", "--hard", base)  # an experiment commit is only a ref, HEAD stays
        git("update-ref", f"refs/exps/{base[:2]}/{base[2:]}/{name}", sha)
        return sha

    (tmp_path / "README").write_text("v1")
    git("add", "-A")
    git("commit", "-qm", "v1")
    pinned = head_commit(tmp_path)
    commit_exp("abl-s0", 0.4)
    (tmp_path / "README").write_text("v2")  # a commit while the sweep runs
    git("commit", "-qam", "v2")
    commit_exp("abl-s1", 0.6)

    assert read_exp_metrics(tmp_path, "abl-s0", "metrics/evaluate.json", pinned)["metrics/evaluate.json"]["act"]["action"]["macro_f1"] == 0.4
    assert read_exp_metrics(tmp_path, "abl-s1", "metrics/evaluate.json", pinned)["metrics/evaluate.json"]["act"]["action"]["macro_f1"] == 0.6
    assert find_exp_ref(tmp_path, "abl-s2", pinned) is None
    with pytest.raises(RuntimeError, match=r"abl-s2 .*baseline .*HEAD"):
        read_exp_metrics(tmp_path, "abl-s2", "metrics/evaluate.json", pinned)
