"""The evaluate stage on hand-made records with scripted policies (doubles at the model boundary;
the offline classifier and simulator roles, the scorers, the plots and the report are real)."""

import json
import re
import sqlite3

import pytest

from act.io import load_dataset_dict, save_dataset
from act.params import load_params
from act.records import Branch, TurnRecord
from stages.evaluate import main, parse_adapters, run

LOOP = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


def _rec(i, request, gold_action, gold_response, branches):
    return TurnRecord(
        id=f"ambigsql/{i}", dataset="ambigsql", conversation_id=f"c{i}", split="eval",
        context="CREATE TABLE pet(name TEXT, age INT)", messages=[{"role": "user", "content": request}],
        gold_response=gold_response, gold_action=gold_action, branches=branches, meta={"db_id": "pets"},
    )


RECORDS = [
    # 0: ambiguous; the user means the oldest pet.
    _rec(0, "Show the pet.", "clarify", "Which pet do you mean: the oldest or the youngest?",
         [Branch("Show the oldest pet.", "The oldest one.", "SELECT name FROM pet ORDER BY age DESC LIMIT 1",
                 ["SELECT name FROM pet ORDER BY age DESC LIMIT 1"])]),
    # 1: clear request.
    _rec(1, "List all pet names.", "answer", "SELECT name FROM pet",
         [Branch("List all pet names.", None, "SELECT name FROM pet", ["SELECT name FROM pet"])]),
    # 2: clear request the weak policy answers with looping SQL.
    _rec(2, "How many pets are there?", "answer", "SELECT count(*) FROM pet",
         [Branch("How many pets are there?", None, "SELECT count(*) FROM pet", ["SELECT count(*) FROM pet"])]),
    # 3: clear request the weak policy answers with nothing.
    _rec(3, "Average pet age?", "answer", "SELECT avg(age) FROM pet",
         [Branch("Average pet age?", None, "SELECT avg(age) FROM pet", ["SELECT avg(age) FROM pet"])]),
]


class ScriptedPolicy:
    """`good` asks on the ambiguous request and answers correctly; `weak` answers the ambiguous
    request directly with the wrong pet, loops forever on record 2, says nothing on record 3,
    and keeps asking on record 1 (a conversation that never ends)."""

    def __init__(self, kind):
        self.kind = kind

    def _one(self, chat):
        request = next(m["content"] for m in chat if m["role"] == "user")
        asked = sum(1 for m in chat if m["role"] == "assistant")
        if self.kind == "good":
            if request == "Show the pet.":
                return "Which pet do you mean?" if asked == 0 else "SELECT name FROM pet ORDER BY age DESC LIMIT 1"
            return {"List all pet names.": "SELECT name FROM pet", "How many pets are there?": "SELECT count(*) FROM pet",
                    "Average pet age?": "```sql\nSELECT avg(age) FROM pet;\n```"}[request]
        return {"Show the pet.": "SELECT name FROM pet ORDER BY age LIMIT 1",
                "List all pet names.": "Do you want names or ids?",
                "How many pets are there?": LOOP,
                "Average pet age?": ""}[request]

    def generate(self, chats):
        return [self._one(c) for c in chats]


@pytest.fixture
def workspace(tmp_path):
    db_dir = tmp_path / "database"
    (db_dir / "pets").mkdir(parents=True)
    conn = sqlite3.connect(db_dir / "pets" / "pets.sqlite")
    conn.executescript("CREATE TABLE pet(name TEXT, age INT); INSERT INTO pet VALUES ('rex', 3), ('tom', 9), ('kit', 1);")
    conn.commit()
    conn.close()
    save_dataset(tmp_path / "annotate", {"train": [RECORDS[1].to_row()], "eval": [r.to_row() for r in RECORDS]})
    log = tmp_path / "train" / "log.jsonl"
    log.parent.mkdir()
    log.write_text("".join(json.dumps({"step": s, "rewards/margins": 0.1 * s, "rewards/accuracies": min(1, 0.5 + 0.1 * s)}) + "\n"
                           for s in range(1, 6)) + json.dumps({"step": 5, "train_loss": 0.3}) + "\n")
    return tmp_path


def _params(tmp_path, **evaluate):
    text = "evaluate: " + json.dumps({"policies": ["base", "act"], "max_turns": 2, "sql_timeout_s": 0.3, **evaluate}) + "\n"
    (tmp_path / "params.yaml").write_text(text)
    return load_params(tmp_path / "params.yaml")


def _run(ws, params, train_log=True):
    kinds = {None: "weak", "adapters/act": "good"}
    return run(params, data=ws / "annotate", base="models/base", adapters={"act": "adapters/act"}, databases=ws / "database",
               train_log=ws / "train" / "log.jsonl" if train_log else ws / "nope.jsonl", out=ws / "out",
               metrics_path=ws / "metrics.json", plots_dir=ws / "plots", report=ws / "report.html", load_policy=lambda base, adapter, seed: ScriptedPolicy(kinds[adapter]))


def test_three_levels_per_policy_with_counts(workspace):
    metrics = _run(workspace, _params(workspace))
    assert json.loads((workspace / "metrics.json").read_text()) == metrics
    assert set(metrics) == {"base", "act"} and set(metrics["act"]) == {"action", "turn", "trajectory"}
    good, weak = metrics["act"], metrics["base"]
    # good: every action right; all answer turns and trajectories succeed.
    assert good["action"]["accuracy"] == 1.0 and good["action"]["macro_f1"] == 1.0 and good["action"]["n"] == 4
    assert good["turn"]["answer_score"] == 1.0 and good["turn"]["n_answer"] == 3
    assert good["trajectory"]["score"] == 1.0 and good["trajectory"]["post_clarify_score"] == 1.0
    assert good["trajectory"]["n_post_clarify"] == 1 and good["trajectory"]["non_terminated"] == 0
    # weak: predicted actions answer, clarify, answer, answer vs gold clarify, answer, answer, answer:
    # clarify P 0/1 R 0/1 F1 0; answer P 2/3 R 2/3 F1 2/3 -> macro 1/3; accuracy 2/4.
    assert weak["action"]["accuracy"] == 0.5 and weak["action"]["macro_f1"] == pytest.approx(1 / 3)
    # Every weak final answer fails: wrong pet (mismatch), never answers (cut off after 2 questions),
    # a loop (timeout), nothing (empty).
    t = weak["trajectory"]
    assert t["score"] == 0.0 and t["non_terminated"] == 1 and t["timeouts"] == 1 and t["empty"] == 1
    assert t["n_post_clarify"] == 1 and t["post_clarify_score"] == 0.0
    assert weak["turn"]["timeouts"] == 1 and weak["turn"]["empty"] == 1


def test_predictions_plots_and_self_contained_report(workspace):
    _run(workspace, _params(workspace))
    rows = load_dataset_dict(workspace / "out")["predictions"]
    assert len(rows) == 2 * 4 and set(rows["policy"]) == {"base", "act"}
    cut = [r for r in rows if r["policy"] == "base" and r["record_id"] == "ambigsql/1"][0]
    assert cut["final_answer"] is None and cut["clarify_turns"] == 3 and cut["traj_status"] == "non_terminated"
    pngs = sorted(p.name for p in (workspace / "plots").iterdir() if p.suffix == ".png")
    assert pngs == ["confusion.png", "metrics.png", "reward_margins.png"]
    data = sorted(str(p.relative_to(workspace / "plots")) for p in (workspace / "plots").rglob("*") if p.is_file()
                  and p.suffix != ".png")  # the same series for `dvc plots` (tests/test_plot_data.py)
    assert data == [".act-output", "confusion/act.json", "confusion/base.json", "headline.json", "reward_margins.tsv"]
    assert all((workspace / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    html = (workspace / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    # loads nothing: no script, no resource from an address (a URL may appear as text: the params table)
    assert "<script" not in html and not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", html)
    assert "Which pet do you mean?" in html and "macro_f1" in html


def test_margin_plot_skipped_without_training_log(workspace):
    _run(workspace, _params(workspace), train_log=False)
    assert not (workspace / "plots" / "reward_margins.png").exists()
    assert (workspace / "plots" / "confusion.png").exists()


def test_seed_spread_reported(workspace):
    metrics = _run(workspace, _params(workspace, seeds=[0, 1, 2]))
    a = metrics["act"]["trajectory"]
    assert a["seeds"] == 3 and a["score"] == 1.0 and a["score_std"] == 0.0 and a["n"] == 4
    assert len(load_dataset_dict(workspace / "out")["predictions"]) == 2 * 3 * 4


def test_policy_without_adapter_is_named(workspace):
    params = _params(workspace, policies=["base", "sft"])
    with pytest.raises(ValueError, match=r"\['sft'\].*--adapter"):
        run(params, data=workspace / "annotate", base="b", adapters={}, databases=None, train_log=None, out=workspace / "o",
            metrics_path=workspace / "m.json", plots_dir=workspace / "p", report=workspace / "r.html", load_policy=lambda *a: ScriptedPolicy("good"))


def test_bad_record_names_file_record_field(workspace):
    bad = RECORDS[1].to_row() | {"gold_action": "shrug"}
    save_dataset(workspace / "bad", {"eval": [bad]})
    from act.errors import RecordError

    with pytest.raises(RecordError, match=r"bad/eval.*ambigsql/1.*gold_action"):
        run(_params(workspace), data=workspace / "bad", base="b", adapters={"act": "a"}, databases=None, train_log=None,
            out=workspace / "o", metrics_path=workspace / "m.json", plots_dir=workspace / "p", report=workspace / "r.html",
            load_policy=lambda *a: ScriptedPolicy("good"))


def test_cli_arguments():
    assert parse_adapters(["sft=models/sft", "act=models/act"]) == {"sft": "models/sft", "act": "models/act"}
    with pytest.raises(ValueError, match="NAME=DIR"):
        parse_adapters(["models/act"])
    with pytest.raises(SystemExit):
        main(["--help"])


class BranchPolicy:
    """Asks on the ambiguous request, then writes the query for whichever pet the user's reply names."""

    def generate(self, chats):
        out = []
        for chat in chats:
            if chat[-1]["role"] == "user" and chat[-1]["content"] == "The oldest one.":
                out.append("SELECT name FROM pet ORDER BY age DESC LIMIT 1")
            elif chat[-1]["role"] == "user" and chat[-1]["content"] == "The youngest one.":
                out.append("SELECT name FROM pet ORDER BY age DESC LIMIT 1")  # wrong for this branch
            else:
                out.append("Which pet do you mean?")
        return out


def test_an_ambiguous_record_is_scored_on_every_branch_and_averaged(tmp_path):
    """Issue 19: no branch is picked by chance. The two-branch record gives one row per branch
    (its branch column), and the record counts once in the metrics with the mean of its branches."""
    db_dir = tmp_path / "database" / "pets"
    db_dir.mkdir(parents=True)
    conn = sqlite3.connect(db_dir / "pets.sqlite")
    conn.executescript("CREATE TABLE pet(name TEXT, age INT); INSERT INTO pet VALUES ('rex', 3), ('tom', 9), ('kit', 1);")
    conn.commit()
    conn.close()
    two = _rec(0, "Show the pet.", "clarify", "Which pet do you mean: the oldest or the youngest?", [
        Branch("Show the oldest pet.", "The oldest one.", "SELECT name FROM pet ORDER BY age DESC LIMIT 1",
               ["SELECT name FROM pet ORDER BY age DESC LIMIT 1"]),
        Branch("Show the youngest pet.", "The youngest one.", "SELECT name FROM pet ORDER BY age LIMIT 1",
               ["SELECT name FROM pet ORDER BY age LIMIT 1"]),
    ])
    save_dataset(tmp_path / "annotate", {"eval": [two.to_row()]})
    (tmp_path / "p.yaml").write_text("evaluate: {policies: [act], sql_timeout_s: 2.0}\n")
    params = load_params(tmp_path / "p.yaml")
    assert params.evaluate.max_turns == 1  # the default: one clarifying exchange, as in training
    metrics = run(params, data=tmp_path / "annotate", base="b", adapters={"act": "a"}, databases=tmp_path / "database",
                  train_log=None, out=tmp_path / "out", metrics_path=tmp_path / "m.json", plots_dir=tmp_path / "plots",
                  report=tmp_path / "r.html", load_policy=lambda *a: BranchPolicy())
    rows = load_dataset_dict(tmp_path / "out")["predictions"]
    assert sorted(rows["branch_index"]) == [0, 1] and set(rows["branches"]) == {2}
    by_branch = {r["branch_index"]: r for r in rows}
    assert by_branch[0]["success"] and not by_branch[1]["success"]
    assert by_branch[1]["gold_reply"] == "The youngest one." and by_branch[1]["turns"][1]["content"] == "The youngest one."
    t = metrics["act"]["trajectory"]
    assert t["n"] == 1 and t["score"] == 0.5 and t["success_rate"] == 0.5 and t["post_clarify_score"] == 0.5
    assert metrics["act"]["action"]["n"] == 1  # the record's action is counted once
