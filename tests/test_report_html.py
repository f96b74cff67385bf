"""The HTML report as a reader meets it: whole counts, no blank cells, headings in words, tables that
scroll inside the page, and the outcome of each sampled conversation named truthfully."""

import re

from act.report import MISSING, outcome, write_html

METRICS = {  # AmbigSQL-like: `errors` only where SQL ran; base over 2 seeds (std, fractional mean)
    "base": {"action": {"macro_f1": 0.4, "n": 60},
             "turn": {"answer_score": 0.0, "n_answer": 34, "errors": 12.5, "errors_std": 0.7071, "empty": 3.0},
             "trajectory": {"score": 0.25, "score_std": 0.05, "n": 60, "non_terminated": 15.0,
                            "mean_clarify_turns": 1.6, "errors": 45.0, "n_post_clarify": 42.0}},
    "act": {"action": {"macro_f1": 1.0, "n": 60},
            "turn": {"answer_score": 1.0, "n_answer": 34, "empty": 0.0},
            "trajectory": {"score": 1.0, "n": 60, "non_terminated": 0.0, "mean_clarify_turns": 0.0,
                           "n_post_clarify": 1.0}},
}


def _row(rid, **kw):
    row = {"policy": "act", "seed": 0, "record_id": rid, "gold_action": "clarify", "pred_action": "answer",
           "messages": [{"role": "user", "content": "Show pets"}], "gold_response": "Which pet?",
           "gold_reply": "", "gold_target": "", "turns": [{"role": "assistant", "content": "SELECT 1"}],
           "traj_score": 0.0, "terminated": True, "first_empty": False, "traj_status": "ok"}
    return {**row, **kw}


def _page(tmp_path, rows=()):
    return write_html(METRICS, list(rows), [], tmp_path / "r.html", dataset="ambigsql", samples=10).read_text()


def _cells(page: str) -> list[str]:
    return re.findall(r"<td[^>]*>(.*?)</td>", page)


def test_counts_are_whole_numbers_and_scores_keep_three_decimals(tmp_path):
    cells = _cells(_page(tmp_path))
    assert "45" in cells and "15" in cells and "42" in cells and "60" in cells and "3" in cells
    assert "12.5 &plusmn; 0.7" in cells  # a count averaged over seeds keeps one decimal
    assert "0.250 &plusmn; 0.050" in cells and "1.600" in cells
    floats = {"60.000", "34.000", "45.000", "15.000", "42.000", "3.000", "12.500"}
    assert not floats & {c.split(" ")[0] for c in cells}, "a count shown as a float"


def test_no_blank_cell_and_missing_values_are_explained(tmp_path):
    page = _page(tmp_path)
    cells = _cells(page)
    assert all(c.strip() for c in cells)
    # act has no SQL execution errors entry: a dash, explained once under the tables
    assert cells.count(MISSING) == 2 and MISSING + " = not measured" in page


def test_headings_say_what_errors_and_counts_are(tmp_path):
    page = _page(tmp_path)
    heads = re.findall(r"<th>(.*?)<span class=key>(.*?)</span></th>", page)
    assert ("SQL execution errors", "errors") in heads and ("never answered", "non_terminated") in heads
    assert ("Macro F1", "macro_f1") in heads and ("empty replies", "empty") in heads


def test_tables_scroll_inside_the_page_and_long_text_wraps(tmp_path):
    page = _page(tmp_path, [_row("r1", turns=[{"role": "assistant", "content": "SELECT " + "x" * 3000}])])
    assert page.count("<table>") == 3 == page.count("<div class=scroll><table>")
    assert ".scroll{max-width:100%;overflow-x:auto}" in page
    assert "grid-template-columns:minmax(0,1fr) minmax(0,1fr)" in page and "overflow-wrap:anywhere" in page


def test_sampled_conversation_outcomes(tmp_path):
    rows = [_row("r1", first_empty=True, traj_status="empty", turns=[{"role": "assistant", "content": ""}]),
            _row("r2", terminated=False, traj_status="non_terminated"),
            _row("r3", traj_status="error"),
            _row("r4")]
    assert [outcome(r) for r in rows] == ["empty reply", "never answered", "answered (SQL execution error)", "answered"]
    metas = dict(re.findall(r"<p class=meta>record (r\d).*?&middot; ([^&<]*)</p>", _page(tmp_path, rows)))
    assert metas == {"r1": "empty reply", "r2": "never answered", "r3": "answered (SQL execution error)",
                     "r4": "answered"}
