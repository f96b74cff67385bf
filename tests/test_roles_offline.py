"""The offline roles on hand-checked examples from each dataset's style."""

import pytest

from act.actions import Action
from act.params import RoleParams, RolesParams
from act.roles import build_role
from act.roles.base import ClassifyItem, RejectItem, SimulateItem, UsageCounter
from act.roles.offline import OracleSimulator, SurfaceClassifier, TemplateRejecter, surface_action

C, A = Action.CLARIFY, Action.ANSWER


@pytest.mark.parametrize(
    "dataset, response, expected",
    [
        # PACIFIC: gold clarifying questions and answers (span, arithmetic, multi-span)
        ("pacific", "Which year are you asking about?", C),
        ("pacific", "What kind of PSUs are you asking about?", C),
        ("pacific", "(1,452.4 - 1,146.2) / 1,146.2 = 26.71", A),
        ("pacific", "fixed-price type, cost-plus type, time-and-material type", A),
        ("pacific", "$ 1,452.4", A),
        # Abg-CoQA: clarifications, including the annotators' ones without "?"
        ("abg_coqa", "Do you mean what did they remove before heading for the path?", C),
        ("abg_coqa", "What year", C),
        ("abg_coqa", "Do you mean initially, or at the end.", C),
        ("abg_coqa", "dense brush- wood.", A),
        ("abg_coqa", "Yes", A),
        ("abg_coqa", "", A),
        # AmbigSQL: SQL answers, even when a question is attached
        ("ambigsql", "SELECT count(*) FROM singer", A),
        ("ambigsql", "select name, age from singer order by age desc", A),
        ("ambigsql", "Do you mean this? SELECT name FROM singer", A),
        ("ambigsql", "Which columns of the singer table would you like to see?", C),
        ("ambigsql", "Sure. Should the results be sorted by age?", C),
        # styles of other clarification corpora (not in the check set)
        ("any", "are you searching for recipes that use leftover chicken", C),
        ("any", "would you like information on the history of the castle", C),
        ("ambigsql", "Which attributes of the pilots should be returned (e.g., name, rank)?", C),
        ("ambigsql", "Which attributes should be returned, e.g. name or rank.", C),
        ("pacific", "I can look that up. Which quarter do you mean? Then I will find the row.", C),
        ("any", "Please specify the departure airport.", C),
        ("any", "Let me know which colour you prefer.", C),
        ("ambigsql", "Should I select every column from the pilot table?", C),
        # answers that carry a "?" or an opener without asking
        ("any", 'The book is titled "Where the Wild Things Are?" in some editions.', A),
        ("ambigsql", "SELECT name FROM pilot WHERE note = 'why?'", A),
        ("pacific", "Why did it grow? Mostly through acquisitions.", A),
        ("pacific", "Revenue was $2.3 million. Would you like the quarterly split as well?", A),
        ("pacific", "Which is why operating costs fell by 4%.", A),
    ],
)
def test_surface_classifier_hand_checked(dataset, response, expected):
    assert surface_action(dataset, response) is expected
    item = ClassifyItem(dataset, [{"role": "user", "content": "q?"}], response)
    assert SurfaceClassifier().classify([item]) == [expected]


def test_simulator_gives_gold_reply_then_intent():
    sim = OracleSimulator()
    asked = [
        {"role": "user", "content": "Show the singers."},
        {"role": "assistant", "content": "Which columns do you want?"},
    ]
    first = SimulateItem("ambigsql", "ctx", asked, intent="Show the name and age of all singers.", gold_reply="Name and age.")
    assert sim.reply([first]) == ["Name and age."]
    again = asked + [{"role": "user", "content": "Name and age."}, {"role": "assistant", "content": "Sorted?"}]
    second = SimulateItem("ambigsql", "ctx", again, intent="Show the name and age of all singers.", gold_reply="Name and age.")
    assert sim.reply([second]) == ["I mean: Show the name and age of all singers."]
    unambiguous = SimulateItem("pacific", "ctx", asked, intent="What was revenue in 2019?", gold_reply=None)
    assert sim.reply([unambiguous]) == ["I mean: What was revenue in 2019?"]


def _reject(dataset, request, target, *, context="", gold="", final=""):
    return RejectItem(dataset, context, [{"role": "user", "content": request}], target, gold, final)


def test_rejecter_answers_a_clarify_turn_with_the_gold_final_answer():
    item = _reject("pacific", "What is the company paid on a contract?", A,
                   gold="Which type of contract are you asking about?", final="our allowable incurred costs")
    assert TemplateRejecter().generate([item]) == ["our allowable incurred costs"]


@pytest.mark.parametrize(
    "dataset, request_, context, must_contain",
    [
        ("ambigsql", "How many singers do we have?", "CREATE TABLE singer (Singer_ID int, Name text)", "singer"),
        ("pacific", "What was the revenue?", "[data] row0 : | 2019 | 2018", "?"),
        ("abg_coqa", "What did they remove?", "CHAPTER XXVIII.", "Do you mean what did they remove"),
        ("custom", "Book it", "", 'Could you clarify what exactly you mean by "Book it"?'),
    ],
)
def test_rejecter_clarifies_an_answer_turn_in_the_dataset_style(dataset, request_, context, must_contain):
    item = _reject(dataset, request_, C, context=context, gold="SELECT count(*) FROM singer", final="x")
    (out,) = TemplateRejecter().generate([item])
    assert must_contain in out
    # the losing side really takes the opposite action, and is stable across calls
    assert surface_action(dataset, out) is C
    assert TemplateRejecter().generate([item]) == [out]


def test_pacific_year_question_only_when_context_has_years():
    outs = {
        TemplateRejecter().generate([_reject("pacific", f"What was item {i}?", C, context="no numbers here", gold=str(i))])[0]
        for i in range(40)
    }
    assert "Which year are you asking about?" not in outs
    assert any(o.startswith("What kind of") for o in outs) and "Which period are you asking about?" in outs


@pytest.mark.parametrize("name, method", [("classifier", "classify"), ("annotator", "classify"),
                                          ("simulator", "reply"), ("rejecter", "generate")])
def test_build_role_offline(name, method):
    usage = UsageCounter()
    role = build_role(name, RolesParams(), usage=usage)
    assert callable(getattr(role, method))
    assert role.usage is usage


def test_build_role_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown role 'judge'"):
        build_role("judge", RolesParams())
    with pytest.raises(ValueError, match="roles.rejecter.backend"):
        build_role("rejecter", RolesParams(rejecter=RoleParams(backend="grpc")), usage=None)  # type: ignore[arg-type]
