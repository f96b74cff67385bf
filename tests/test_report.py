"""Plots and HTML report from hand-made metrics and rows."""

import pytest

from act.report import plot_reward_margins, write_html, write_plots

METRICS = {
    "base": {"action": {"macro_f1": 0.4, "n": 2}, "turn": {"answer_score": 0.5, "n_answer": 1},
             "trajectory": {"score": 0.25, "score_std": 0.05, "n": 2}},
    "act": {"action": {"macro_f1": 1.0, "n": 2}, "turn": {"answer_score": 1.0, "n_answer": 1},
            "trajectory": {"score": 1.0, "score_std": 0.0, "n": 2}},
}


def _row(policy, rid, gold, pred, response):
    return {"policy": policy, "seed": 0, "record_id": rid, "gold_action": gold, "pred_action": pred,
            "messages": [{"role": "user", "content": "Show <b>pets</b>"}], "gold_response": "Which pet?",
            "gold_reply": "the old one", "gold_target": "SELECT 1", "turns": [{"role": "assistant", "content": response}],
            "traj_score": 0.0, "terminated": True}


ROWS = [_row(p, f"r{i}", g, pr, "<script>alert(1)</script>") for p in ("base", "act")
        for i, (g, pr) in enumerate([("clarify", "answer"), ("answer", "answer")])]


def test_plots_written_and_margins_optional(tmp_path):
    paths = write_plots(METRICS, ROWS, None, tmp_path)
    assert [p.name for p in paths] == ["confusion.png", "metrics.png"]
    assert plot_reward_margins([{"step": 1, "loss": 0.3}], tmp_path / "m.png") is None
    assert not (tmp_path / "m.png").exists()
    log = [{"step": s, "rewards/margins": s / 10} for s in range(3)]
    assert plot_reward_margins(log, tmp_path / "m.png").stat().st_size > 1000


def test_html_escapes_text_and_shows_spread(tmp_path):
    plots = write_plots(METRICS, ROWS, None, tmp_path)
    page = write_html(METRICS, ROWS, plots, tmp_path / "r.html", dataset="ambigsql", samples=1).read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Show &lt;b&gt;pets&lt;/b&gt;" in page
    assert "0.250 &plusmn; 0.050" in page
    # samples=1: one conversation per policy, the ambiguous one first.
    assert page.count("record r0") == 2 and "record r1" not in page


@pytest.mark.parametrize("bad", [[], [{"no": "step"}]])
def test_empty_training_log(tmp_path, bad):
    assert plot_reward_margins(bad, tmp_path / "x.png") is None


def _ylims(monkeypatch):
    """Record the y limits of every figure the report saves."""
    import act.report as report

    seen = []
    save = report.save_png

    def spy(fig, path):
        seen.append(fig.axes[0].get_ylim())
        return save(fig, path)

    monkeypatch.setattr(report, "save_png", spy)
    return seen


def test_negative_informedness_is_drawn_below_zero(tmp_path, monkeypatch):
    from act.report import plot_ablations, plot_metric_bars

    seen = _ylims(monkeypatch)
    metrics = {"base": {"action": {"macro_f1": 0.3, "informedness": -0.4, "informedness_std": 0.1}},
               "act": {"action": {"macro_f1": 0.6, "informedness": 0.2}}}
    plot_metric_bars(metrics, tmp_path / "m.png")
    table = [{"method": "act", "metric": "action.informedness", "mean": -0.25, "std": 0.05}]  # drawn when no other
    plot_ablations(table, ["act"], tmp_path / "a.png")
    (low_m, high_m), (low_a, _) = seen
    assert low_m < -0.5 and high_m >= 1.0  # the -0.4 bar and its std below it are inside the axes
    assert low_a < -0.3


def test_error_bars_stay_inside_each_metrics_range():
    from act.report import unit_error_bars

    below, above = unit_error_bars([-0.9, 0.05], [0.3, 0.3], [(-1.0, 1.0), (0.0, 1.0)])
    assert below == pytest.approx([0.1, 0.05]) and above == pytest.approx([0.3, 0.3])


def test_report_states_commit_date_seeds_and_params(tmp_path, monkeypatch):
    import subprocess

    from act.report import provenance

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=tmp_path, check=True, env={"GIT_COMMITTER_DATE": "2026-01-02T03:04:05+00:00",
                                                  "PATH": "/usr/bin:/bin"})
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    monkeypatch.setenv("ACT_TEST_API_KEY", "sk-secret-value-123")
    params = {"seed": 3, "train": {"beta": 0.1}, "roles": {"judge": {"url": "http://x/sk-secret-value-123"}}}
    prov = provenance(params, [0, 1], cwd=tmp_path)
    page = write_html(METRICS, ROWS, [], tmp_path / "r.html", dataset="ambigsql", provenance=prov).read_text()
    assert f"commit <code>{commit}</code>" in page and "2026-01-02T03:04:05+00:00" in page
    assert "seed 3" in page and "evaluation seeds 0, 1" in page
    assert "train.beta</td><td class=l>0.1" in page
    assert "sk-secret-value-123" not in page
    again = write_html(METRICS, ROWS, [], tmp_path / "r2.html", dataset="ambigsql",
                       provenance=provenance(params, [0, 1], cwd=tmp_path)).read_text()
    assert again == page  # no wall-clock time: the same commit writes the same report


def test_report_names_the_last_code_commit_so_recording_a_run_keeps_its_bytes(tmp_path):
    """The commit that records a run's outputs (dvc.lock, metrics, the report) must not change the
    report a fresh clone's `dvc repro` writes: the report names the last commit of the code."""
    import subprocess

    from act.report import code_commit

    def git(*args):
        return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "x.py").write_text("x = 1\n")
    git("add", "-A")
    git("commit", "-qm", "code")
    code = git("rev-parse", "HEAD")
    (tmp_path / "dvc.lock").write_text("outs\n")
    git("add", "-A")
    git("commit", "-qm", "record the run")
    assert git("rev-parse", "HEAD") != code and code_commit(tmp_path) == code
    (tmp_path / "stages" / "x.py").write_text("x = 2\n")
    assert code_commit(tmp_path) == code + " + uncommitted changes"
