"""The training signal's instruments on the tiny model: probe-set margins before training and at
the end, the action mix / policy winners per round, relabels the two judges disagree on, and
sampling that leaves torch's global generator alone."""

from __future__ import annotations

import pytest
from test_train import GoldUser, ScriptedClassifier, tiny  # noqa: F401  (module fixture)

from act.params import TrainParams


def _run(tiny, tmp_path, **sampler_kw):  # noqa: F811
    from act.training.act_trainer import OnPolicySampler
    from act.training.dpo import train_dpo

    base_dir, sft_dir, records, pairs = tiny
    sampler = OnPolicySampler(ScriptedClassifier(), GoldUser(), lambda r, b, p: 1.0, tolerance=0.9,
                              max_new_tokens=6, **sampler_kw)
    params = TrainParams(batch_size=4, learning_rate=1e-2, probe_every=1)
    return train_dpo(base_dir, sft_dir, pairs, records, tmp_path / "act", params, seed=0, sampler=sampler,
                     probe=pairs[:4])


def test_probe_margins_are_logged_from_the_start_and_move(tiny, tmp_path):  # noqa: F811
    res = _run(tiny, tmp_path)
    steps = [h["step"] for h in res.probe_history]
    assert steps == [0, 1, 2]
    start = res.probe_history[0]
    # before any update the policy IS the reference: zero margin, no pair won
    assert abs(start["rewards/margins"]) < 1e-6 and start["rewards/accuracies"] == 0.0
    assert any(abs(h["rewards/margins"]) > 1e-6 for h in res.probe_history[1:])
    assert res.metrics["probe/pairs"] == 4 and res.metrics["probe/start/rewards/margins"] == pytest.approx(0, abs=1e-6)
    assert "probe/end/rewards/accuracies" in res.metrics
    # action mix and policy-side winners per round
    for entry in res.relabel_log:
        assert entry["samples/clarify"] + entry["samples/answer"] == entry["pairs"]
        assert 0 <= entry["samples/policy_wins"] <= entry["pairs"]
    assert res.metrics["judge/disagreements"] == 0  # the offline judge never disagrees with itself


def test_disagreements_between_a_model_judge_and_the_offline_rule_are_logged(tiny, tmp_path):  # noqa: F811
    res = _run(tiny, tmp_path, judge_backend="http")
    flagged = [p for r in res.rounds for p in r["pairs"] if p.get("judge_disagrees")]
    assert flagged, "the scripted judge alternates labels, so it must disagree with the surface rule somewhere"
    assert all(p["offline_action"] != p["trajectory"]["first_action"] for p in flagged)
    assert res.metrics["judge/disagreements"] == len(flagged)
    assert sum(e["judge/disagreements"] for e in res.relabel_log) == len(flagged)


def test_sampling_neither_reseeds_nor_advances_the_global_generator(tiny):  # noqa: F811
    import torch

    from act.model.loading import HFPolicy, load_model

    base_dir, sft_dir, records, _ = tiny
    model, tok = load_model(base_dir, sft_dir)
    chats = [[{"role": "user", "content": r.messages[0]["content"]}] for r in records[:2]]
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    first = HFPolicy(model, tok, max_new_tokens=4, temperature=1.0, top_p=0.9, top_k=5, seed=7).generate(chats)
    assert torch.equal(torch.rand(3), expected)
    again = HFPolicy(model, tok, max_new_tokens=4, temperature=1.0, top_p=0.9, top_k=5, seed=7).generate(chats)
    assert again == first  # its own seed still makes sampling reproducible


def test_training_samples_greedily_by_default():
    from act.params import load_params
    from act.training.act_trainer import OnPolicySampler
    from test_train import PARAMS

    params = load_params(PARAMS)
    assert params.train.sample_temperature == 0.0 and params.simulate.temperature == 0.0
    assert OnPolicySampler.__dataclass_fields__["temperature"].default == 0.0


def test_training_signal_plot_draws_probe_and_rounds(tmp_path):
    from act.report import plot_training_signal, write_plots

    log = ([{"step": s, "probe/rewards/margins": 0.1 * s, "probe/rewards/accuracies": 0.2 * s} for s in (0, 2, 4)]
           + [{"step": s, "samples/clarify": s, "samples/answer": 8 - s, "samples/policy_wins": 1} for s in range(4)])
    assert plot_training_signal(log, tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert plot_training_signal([{"step": 1, "loss": 0.5}], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    rows = [{"policy": "act", "seed": 0, "gold_action": "answer", "pred_action": "answer"}]
    names = [p.name for p in write_plots({"act": {"action": {"macro_f1": 1.0}}}, rows, log, tmp_path / "plots")]
    assert "training_signal.png" in names
