"""The annotate stage: gold labels kept, unlabeled turns labelled, agreement reported."""

from pathlib import Path

from act.actions import Action
from act.io import load_dataset_dict
from act.params import load_params
from act.records import validate_row
from stages import annotate, ingest

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures"


class QuestionMarkAnnotator:
    """ActionClassifier double: a response ending in "?" clarifies; counts its calls."""

    def __init__(self):
        self.seen = []

    def classify(self, items):
        self.seen += [it.response for it in items]
        return [Action.CLARIFY if it.response.rstrip().endswith("?") else Action.ANSWER for it in items]


class Always:
    def __init__(self, action):
        self.action = action

    def classify(self, items):
        return [self.action for _ in items]


def _params(**over):
    return load_params(ROOT / "params.yaml", {"tracking.enabled": False, **over})


def _ingest(tmp_path, dataset, raw):
    out = tmp_path / "ingest"
    ingest.run(_params(**{f"ingest.{dataset}.eval_fraction": 0.5}), dataset=dataset, raw=raw, out=out, metrics_path=tmp_path / "mi.json")
    return out


def _records(path):
    dd = load_dataset_dict(path)
    return [validate_row(row, file=s, index=i) for s in dd for i, row in enumerate(dd[s])]


def test_gold_labels_kept_and_unlabeled_turns_labelled(tmp_path):
    inp = _ingest(tmp_path, "custom", FIX / "custom.jsonl")
    double = QuestionMarkAnnotator()
    m = annotate.run(_params(), dataset="custom", inp=inp, out=tmp_path / "out", metrics_path=tmp_path / "m.json", annotator=double)
    recs = {r.id: r for r in _records(tmp_path / "out")}
    assert recs["custom/c1/1"].gold_action == "clarify" and recs["custom/c1/1"].action_source == "gold"
    assert recs["custom/c2/1"].gold_action == "answer" and recs["custom/c2/1"].action_source == "annotator:offline"
    assert sorted(double.seen) == sorted(["Which segment do you mean?", "914 - 918 = -4", "914"])
    assert m["agreement"]["n"] == 2 and m["agreement"]["accuracy"] == 1.0


def test_agreement_reports_a_disagreeing_annotator(tmp_path):
    inp = _ingest(tmp_path, "abg_coqa", FIX / "abg_coqa")
    m = annotate.run(_params(), dataset="abg_coqa", inp=inp, out=tmp_path / "out", metrics_path=tmp_path / "m.json", annotator=Always(Action.ANSWER))
    assert m["agreement"]["n"] == 3
    assert abs(m["agreement"]["accuracy"] - 2 / 3) < 1e-9
    assert m["agreement"]["clarify_recall"] == 0.0
    assert all(r.action_source == "gold" for r in _records(tmp_path / "out"))  # gold kept


def test_without_gold_labels_every_turn_is_relabelled(tmp_path):
    inp = _ingest(tmp_path, "abg_coqa", FIX / "abg_coqa")
    params = _params(**{"annotate.use_gold_labels": False})
    annotate.run(params, dataset="abg_coqa", inp=inp, out=tmp_path / "out", metrics_path=tmp_path / "m.json", annotator=Always(Action.CLARIFY))
    recs = _records(tmp_path / "out")  # readable: an annotator's CLARIFY needs no recorded reply
    assert {(r.gold_action, r.action_source) for r in recs} == {("clarify", "annotator:offline")}
    assert sum(1 for r in recs if r.branches[0].reply is None) == 2


def test_pacific_unlabeled_requests_stay_unlabeled_with_the_offline_annotator(tmp_path):
    inp = _ingest(tmp_path, "pacific", FIX / "pacific")
    m = annotate.run(_params(), dataset="pacific", inp=inp, out=tmp_path / "out", metrics_path=tmp_path / "m.json")
    assert m["splits"]["unlabeled"]["action_source"] == {"none": 1}
    assert m["agreement"]["n"] == 5 and m["agreement"]["macro_f1"] == 1.0
