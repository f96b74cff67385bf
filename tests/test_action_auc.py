"""`action_auc`: the Mann-Whitney AUC and its bootstrap interval, the log-likelihood scoring on a
tiny real model (batched, left-padded) against a plain per-sequence computation, and the evaluate
stage writing the figures once per policy."""

import json
import random

import pytest

from act.metrics.auc import auc_with_interval, roc_auc
from act.records import Branch, TurnRecord


# ------------------------------------------------------------------------------------ statistic
def test_perfect_separation_is_one_with_a_point_interval():
    scores, labels = [0.9, 0.8, 0.7, 0.1, 0.0, -2.0], [1, 1, 1, 0, 0, 0]
    assert roc_auc(scores, labels) == 1.0
    out = auc_with_interval(scores, labels, resamples=500, seed=3)
    assert out == {"auc": 1.0, "lo": 1.0, "hi": 1.0, "n_pos": 3, "n_neg": 3}
    assert roc_auc(scores, [1 - y for y in labels]) == 0.0  # exactly reversed


def test_blind_scores_are_one_half():
    labels = [1, 0, 1, 0, 0, 0, 1]
    out = auc_with_interval([0.25] * len(labels), labels, resamples=500, seed=0)
    assert out["auc"] == 0.5 and out["lo"] == 0.5 and out["hi"] == 0.5


def test_ties_count_half_and_interval_holds_the_point():
    # positives 2, 1; negatives 1, 0: pairs (2>1) (2>0) (1=1 -> 0.5) (1>0) = 3.5 / 4
    assert roc_auc([2, 1, 1, 0], [1, 1, 0, 0]) == pytest.approx(0.875)
    rng = random.Random(1)
    labels = [i % 3 == 0 for i in range(60)]
    scores = [rng.gauss(0.8 if y else 0.0, 1.0) for y in labels]
    out = auc_with_interval(scores, labels, resamples=2000, seed=7)
    assert 0.0 <= out["lo"] < out["auc"] < out["hi"] <= 1.0 and (out["n_pos"], out["n_neg"]) == (20, 40)
    assert out == auc_with_interval(scores, labels, resamples=2000, seed=7)  # seeded: reproducible
    assert auc_with_interval(scores, labels, resamples=0)["lo"] == out["auc"]


def test_agrees_with_scikit_learn_on_random_tied_scores():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(4, 40)
        labels = [rng.random() < 0.3 for _ in range(n)]
        labels[0], labels[1] = True, False
        scores = [rng.randint(0, 5) for _ in range(n)]  # many ties
        assert roc_auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores))


def test_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="2 scores but 3 labels"):
        roc_auc([0.1, 0.2], [1, 0, 1])


# ------------------------------------------------------------------------------------ records
def _rec(i, request, action, gold, target=None, reply="The first one."):
    branches = [Branch(request, reply if action == "clarify" else None, target or gold, [target or gold])]
    return TurnRecord(id=f"abg_coqa/{i}", dataset="abg_coqa", conversation_id=f"c{i}", split="eval",
                      context="Tom has a dog named Rex and a cat named Tim.",
                      messages=[{"role": "user", "content": request}], gold_response=gold, gold_action=action,
                      branches=branches)


RECORDS = [
    _rec(0, "What is its name?", "clarify", "Do you mean the dog or the cat?", target="Rex"),
    _rec(1, "What is the dog called?", "answer", "Rex"),
    _rec(2, "What is the cat called?", "answer", "Tim"),
    _rec(3, "Who has a dog?", "answer", "Tom"),
]


def test_figures_from_margins_count_classes_and_skips():
    from act.metrics.likelihood import action_auc

    out = action_auc(RECORDS, [2.0, -1.0, None, 0.5], resamples=200, seed=0)
    assert out["action_auc"] == 1.0 and out["action_auc_lo"] == out["action_auc_hi"] == 1.0
    assert (out["action_auc_n_clarify"], out["action_auc_n_answer"], out["action_auc_skipped"]) == (1, 2, 1)
    # the clarify record scored lowest: every clear turn ranked above it
    assert action_auc(RECORDS, [-3.0, -1.0, 0.0, 0.5], resamples=0)["action_auc"] == 0.0
    # no clarify record scored: no AUC, only the counts (a figure without data must not look perfect)
    none = action_auc(RECORDS, [None, -1.0, 0.0, 0.5])
    assert "action_auc" not in none and none["action_auc_n_clarify"] == 0


def test_direct_answer_of_a_clarify_record_is_its_kept_branch():
    """The gold direct answer of a CLARIFY turn is the answer of `act.pairs.gold_branch`: the first
    branch with a reply, not branch 0."""
    from act.pairs import final_answer

    rec = TurnRecord(id="abg_coqa/9", dataset="abg_coqa", conversation_id="c9", split="eval", context="",
                     messages=[{"role": "user", "content": "Which one?"}], gold_response="Do you mean A or B?",
                     gold_action="clarify",
                     branches=[Branch("A", None, "no reply", ["x"]), Branch("B", "B.", "the B answer", ["y"])])
    assert final_answer(rec) == "the B answer"


def test_a_dataset_without_a_question_names_the_param():
    from act.errors import ParamsError
    from act.metrics.likelihood import question_for

    assert question_for("abg_coqa", {"abg_coqa": " Which one? "}) == "Which one?"
    with pytest.raises(ParamsError, match="evaluate.auc_questions.*'ambigsql'"):
        question_for("ambigsql", {"abg_coqa": "Which one?"})


# ------------------------------------------------------------------------------------ tiny model
@pytest.fixture(scope="module")
def tiny(tiny_base):
    from act.model.loading import load_model

    model, tok = load_model(tiny_base)
    model.eval()
    return model, tok


def _reference_mean_logprob(model, tok, prompt, completion):
    """One sequence, no padding, full logits: the plain computation the batched one must match."""
    import torch

    from act.chat import chat_ids, common_prefix

    full = chat_ids(tok, prompt + [{"role": "assistant", "content": completion}])
    start = common_prefix(chat_ids(tok, prompt, add_generation_prompt=True), full)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), -1)
    return sum(float(logp[t - 1, full[t]]) for t in range(start, len(full))) / (len(full) - start)


def test_batched_left_padded_scores_equal_one_at_a_time(tiny):
    from act.metrics.likelihood import encode, mean_logprobs

    model, tok = tiny
    cases = [([{"role": "user", "content": "How many singers?"}], "SELECT name FROM singer"),
             ([{"role": "system", "content": "Answer from the context."},
               {"role": "user", "content": "Which year do you mean? How many singers? " * 3}], "Which year?"),
             ([{"role": "user", "content": "Hi"}], "SELECT name FROM singer WHERE name = 'x' ORDER BY name")]
    items = [encode(tok, p, c, max_prompt_tokens=None) for p, c in cases]
    batched = mean_logprobs(model, tok, items, batch_size=3)
    single = mean_logprobs(model, tok, items, batch_size=1)
    for (p, c), b, s in zip(cases, batched, single):
        ref = _reference_mean_logprob(model, tok, p, c)
        assert b == pytest.approx(ref, abs=1e-4) and s == pytest.approx(ref, abs=1e-4)


def test_scoring_picks_the_turn_the_model_learned(tiny_base):
    """A tiny model fitted to answer one prompt with the question: the question's log-likelihood
    beats an answer it never saw there, so s > 0; fitted to the answer instead, s < 0."""
    import torch

    from act.chat import chat_ids
    from act.metrics.likelihood import ask_answer_margins
    from act.model.loading import load_model
    from act.records import with_system

    rec = RECORDS[0]
    questions = {"abg_coqa": "Which year do you mean?"}
    margins = {}
    for learned in ("Which year do you mean?", "Rex"):
        model, tok = load_model(tiny_base)
        ids = torch.tensor([chat_ids(tok, with_system(rec) + [{"role": "assistant", "content": learned}])])
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(30):
            opt.zero_grad()
            model(ids, labels=ids).loss.backward()
            opt.step()
        (margins[learned],) = ask_answer_margins([rec], model, tok, questions, max_prompt_tokens=None)
        assert model.training  # the scorer restores the mode it found
    assert margins["Which year do you mean?"] > 0 > margins["Rex"]


def test_policy_without_a_model_is_skipped():
    from act.metrics.likelihood import policy_action_auc

    assert policy_action_auc(RECORDS, object(), {"abg_coqa": "Which one?"}) == {}


# ------------------------------------------------------------------------------------ the stage
def test_evaluate_stage_writes_action_auc_once_per_policy(tmp_path, tiny_base):
    from act.io import save_dataset
    from act.model.loading import load_policy
    from act.params import load_params
    from stages.evaluate import run

    save_dataset(tmp_path / "annotate", {"train": [RECORDS[1].to_row()], "eval": [r.to_row() for r in RECORDS]})
    (tmp_path / "params.yaml").write_text("evaluate: " + json.dumps(
        {"policies": ["base"], "seeds": [0, 1], "max_turns": 1, "max_new_tokens": 4, "auc_resamples": 200}) + "\n")
    params = load_params(tmp_path / "params.yaml")
    metrics = run(params, data=tmp_path / "annotate", base=str(tiny_base), adapters={}, databases=None,
                  train_log=None, out=tmp_path / "out", metrics_path=tmp_path / "metrics.json",
                  plots_dir=tmp_path / "plots", report=tmp_path / "report.html",
                  load_policy=lambda base, adapter, seed: load_policy(base, adapter, max_new_tokens=4, seed=seed))
    action = json.loads((tmp_path / "metrics.json").read_text())["base"]["action"]
    assert action == metrics["base"]["action"]
    assert 0.0 <= action["action_auc_lo"] <= action["action_auc"] <= action["action_auc_hi"] <= 1.0
    assert (action["action_auc_n_clarify"], action["action_auc_n_answer"], action["action_auc_skipped"]) == (1, 3, 0)
    assert "action_auc_std" not in action and action["seeds"] == 2  # scored once: no spread over sampling seeds
    page = (tmp_path / "report.html").read_text()
    assert "action AUC [95% CI]" in page and f"{action['action_auc']:.3f} [" in page


def test_shared_prompt_scoring_equals_scoring_apart(tiny):
    """The prompt run once with its KV cache, both turns on top: the same mean log-probs as the
    left-padded batches that score each sequence whole (and as the plain one-at-a-time sum)."""
    from act.metrics.likelihood import encode, mean_logprobs, shared_prompt_logprobs

    model, tok = tiny
    prompts = [[{"role": "user", "content": "How many singers?"}],
               [{"role": "system", "content": "Answer from the context."},
                {"role": "user", "content": "Which year do you mean? How many singers? " * 3}]]
    completions = ("Could you clarify which information you want?", "SELECT name FROM singer WHERE name = 'x'")
    pairs = [tuple(encode(tok, p, c, max_prompt_tokens=None) for c in completions) for p in prompts]
    shared = shared_prompt_logprobs(model, pairs)
    apart = mean_logprobs(model, tok, [it for pair in pairs for it in pair], batch_size=4)
    for k, (p, (ask, answer)) in enumerate(zip(prompts, shared)):
        assert ask == pytest.approx(apart[2 * k], abs=1e-4) and answer == pytest.approx(apart[2 * k + 1], abs=1e-4)
        assert ask == pytest.approx(_reference_mean_logprob(model, tok, p, completions[0]), abs=1e-4)
    assert shared[0] != shared[1]  # the prompt matters: not one cached result for every pair
