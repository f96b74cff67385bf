"""The judge's error rate: the labelled check set, the offline rule on it, and the gate that stops
a run whose LLM classifier (a real OpenAI-compatible server on 127.0.0.1) scores below threshold."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_http_backend import FakeOpenAI  # the loopback OpenAI-compatible server

from act.actions import Action
from act.errors import RecordError
from act.params import RoleParams, RolesParams, load_params
from act.roles import build_role
from act.metrics.checks import CHECK_SET, JudgeCheckError, check_classifier, load_check_set, require_valid
from act.roles.offline import SurfaceClassifier

STYLES = {"q_final", "interrogative_no_qmark", "question_with_examples", "question_mid_turn", "multiple_choice",
          "polite_imperative", "quoted_question", "rhetorical_confirmatory", "sql", "numeric", "prose"}


@pytest.fixture
def server():
    s = FakeOpenAI()
    yield s
    s.close()


def _turn_to_label(body) -> str:
    return body["messages"][-1]["content"].split("turn to label:\n", 1)[1].rsplit("\n\nLabel:", 1)[0].strip()


def _oracle(turns):
    labels = {t.response.strip(): t.action.value.upper() for t in turns}
    return lambda body: labels.get(_turn_to_label(body), "ANSWER")


def _http(server, tmp_path, **kw) -> RolesParams:
    cfg = RoleParams(backend="http", model="judge-model", base_url=server.url, api_key_env="", timeout_s=5.0,
                     max_retries=0, concurrency=4, max_tokens=4)
    return RolesParams(cache_dir=str(tmp_path / "cache"), classifier=replace(cfg, **kw))


def test_check_set_is_balanced_and_covers_every_style():
    turns = load_check_set()
    assert 150 <= len(turns) <= 250
    clarify = sum(t.action is Action.CLARIFY for t in turns)
    assert 0.4 <= clarify / len(turns) <= 0.6
    assert STYLES <= {t.style for t in turns}
    assert len({t.id for t in turns}) == len(turns)


def test_offline_rule_reaches_clarify_recall_on_the_check_set():
    report = check_classifier(SurfaceClassifier(), load_check_set())
    assert report["clarify_recall"] >= 0.95
    assert report["answer_precision"] >= 0.95 and report["clarify_precision"] >= 0.95
    assert min(report["by_style"].values()) >= 0.9, report["by_style"]


def test_malformed_check_line_names_file_line_and_field(tmp_path):
    good = CHECK_SET.read_text(encoding="utf-8").splitlines()[0]
    bad = dict(json.loads(good), id="x2", action="maybe")
    path = tmp_path / "checks.jsonl"
    path.write_text(good + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(RecordError, match=r"checks.jsonl, record line 2, field 'action'"):
        load_check_set(path)
    path.write_text(good + "\n" + good + "\n", encoding="utf-8")
    with pytest.raises(RecordError, match="duplicate id"):
        load_check_set(path)


def test_llm_classifier_below_threshold_stops_with_a_clear_error(server, tmp_path):
    server.answer = lambda body: "ANSWER"  # a judge that never sees a clarifying question
    roles = _http(server, tmp_path, min_check_f1=0.8)
    clf = build_role("classifier", roles)
    with pytest.raises(JudgeCheckError, match=r"roles.classifier.*Macro F1 0\.\d+.*min_check_f1=0.8"):
        require_valid(clf, roles.classifier)
    assert len(server.requests) == len(load_check_set())


def test_llm_classifier_that_labels_well_passes_and_is_scored(server, tmp_path):
    turns = load_check_set()
    server.answer = _oracle(turns)
    roles = _http(server, tmp_path)
    report = require_valid(build_role("classifier", roles), roles.classifier)
    assert report["macro_f1"] == 1.0 and report["errors"] == []
    assert require_valid(SurfaceClassifier(), RoleParams()) is None  # the offline rule is not gated


def test_judge_stage_writes_figures_per_backend_and_fails_a_bad_judge(server, tmp_path, monkeypatch):
    from act.io import read_json
    from stages import judge

    monkeypatch.setenv("ACT_TRACKING", "off")
    turns = load_check_set()
    server.answer = _oracle(turns)
    overrides = {"roles.cache_dir": str(tmp_path / "cache"),
                 "roles.classifier": {"backend": "http", "model": "judge-model", "base_url": server.url,
                                      "api_key_env": "", "max_retries": 0}}
    params = load_params(CHECK_SET.parents[2] / "params.yaml", overrides)
    m = judge.run(params, checks=CHECK_SET, metrics_path=tmp_path / "judge.json")
    assert set(m["backends"]) == {"offline", "classifier:http:judge-model"}
    assert m["backends"]["classifier:http:judge-model"]["macro_f1"] == 1.0
    assert m["backends"]["offline"]["clarify_recall"] >= 0.95
    assert read_json(tmp_path / "judge.json") == {k: v for k, v in m.items() if k != "seconds"}  # timings stay out

    server.answer = lambda body: "CLARIFY"
    params = load_params(CHECK_SET.parents[2] / "params.yaml", {**overrides, "roles.cache_dir": str(tmp_path / "cache2")})
    with pytest.raises(JudgeCheckError, match="min_check_f1"):
        judge.run(params, checks=CHECK_SET, metrics_path=tmp_path / "judge2.json")
    assert read_json(tmp_path / "judge2.json")["backends"]["classifier:http:judge-model"]["clarify_recall"] == 1.0


def test_train_stage_refuses_an_unvalidated_llm_judge_before_training(server, tmp_path, monkeypatch):
    from act.io import save_dataset
    from act.pairs import build_pairs
    from stages import train
    from test_train import PARAMS, make_records

    monkeypatch.setenv("ACT_TRACKING", "off")
    server.answer = lambda body: "ANSWER"
    pairs, _ = build_pairs(make_records(), build_role("rejecter", RolesParams()))
    save_dataset(tmp_path / "pairs", {"train": pairs})
    params = load_params(PARAMS, {"roles.cache_dir": "",
                                  "roles.classifier": {"backend": "http", "model": "m", "base_url": server.url,
                                                       "api_key_env": "", "max_retries": 0}})
    for d in ("no-base", "no-sft", "db"):  # present but empty: the judge must refuse before any loading
        (tmp_path / d).mkdir()
    with pytest.raises(JudgeCheckError, match="check set"):
        train.run(params, base=tmp_path / "no-base", sft=tmp_path / "no-sft", pairs_dir=tmp_path / "pairs",
                  simulated=tmp_path / "sim", databases=tmp_path / "db", out=tmp_path / "act", log_dir=tmp_path / "log",
                  metrics_path=tmp_path / "train.json")
    assert not (tmp_path / "act").exists()
