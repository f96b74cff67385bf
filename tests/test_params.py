"""The strict params loader, and every params file the project ships."""

import dataclasses
from pathlib import Path
from typing import get_args

import pytest

from act.errors import ParamsError
from act.params import DatasetName, Params, load_params

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in ROOT.glob("**/params*.yaml") if ".venv" not in p.parts and ".dvc" not in p.parts)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_params_file_loads(path):
    params = load_params(path)
    assert isinstance(params, Params)


def test_shipped_params_found():
    assert ROOT / "params.yaml" in SHIPPED


def _write(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ParamsError, match=r"ingest\.pacific\.budgt"):
        load_params(_write(tmp_path, "ingest: {pacific: {budgt: 50}}\n"))


def test_unknown_top_level_section_is_named(tmp_path):
    with pytest.raises(ParamsError, match=r"unknown key\(s\) \.?trian"):
        load_params(_write(tmp_path, "trian: {beta: 0.1}\n"))


@pytest.mark.parametrize(
    "text, key",
    [
        ("train: {beta: fast}\n", "train.beta"),
        ("seed: 1.5\n", "seed"),
        ("dataset: spider\n", "dataset"),
        ("ingest: {on_error: ignore}\n", "ingest.on_error"),
        ("ingest: {pacific: {budget: -3}}\n", "ingest.pacific"),
        ("ingest: {pacific: {budget: some}}\n", "ingest.pacific.budget"),
        ("annotate: {use_gold_labels: 'yes'}\n", "annotate.use_gold_labels"),
        ("train: {lora: {target_modules: q_proj}}\n", "train.lora.target_modules"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, text))
    assert key in str(err.value)


def test_params_are_frozen_and_typed(tmp_path):
    params = load_params(_write(tmp_path, "ingest: {pacific: {budget: all}}\ntrain: {beta: 1}\n"))
    assert params.ingest.pacific.budget == "all"
    assert isinstance(params.train.beta, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.seed = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train.beta = 0.5  # type: ignore[misc]
    assert params.seed == 0 and params.train.beta == 1.0


def test_overrides_like_dvc_exp_set(tmp_path):
    params = load_params(_write(tmp_path, "seed: 0\n"), {"train.beta": 0.2, "seed": 7})
    assert params.train.beta == 0.2 and params.seed == 7


def test_dataclass_defaults_are_the_shipped_params():
    """A key left out of a params file (e.g. the tiny test config) means the shipped value."""
    assert load_params(ROOT / "params.yaml") == Params()


def test_dataset_choices_are_the_registry_benchmarks():
    from act.datasets import BENCHMARKS

    assert get_args(DatasetName) == BENCHMARKS


def test_exponent_without_dot_is_a_number(tmp_path):
    """PyYAML reads `2e-4` (no dot) as a string; YAML 1.2 and DVC read a float. Float fields take
    it, in the file and as a -S override; a word is still refused, naming the key."""
    params = load_params(_write(tmp_path, "train: {learning_rate: 2e-4}\n"), {"sft.learning_rate": "5E-5"})
    assert params.train.learning_rate == pytest.approx(2e-4) and params.sft.learning_rate == pytest.approx(5e-5)
    with pytest.raises(ParamsError, match=r"train\.beta: expected a number, got '1e'"):
        load_params(_write(tmp_path, "train: {beta: 1e}\n"))


def test_profile_extends_another(tmp_path):
    from act.params import load_profile

    (tmp_path / "a.yaml").write_text("dataset: abg_coqa\nsft.epochs: 2\ntrain.beta: 0.1\n")
    (tmp_path / "b.yaml").write_text("extends: a\ndataset: ambigsql\nsft.epochs: 6\n")
    assert load_profile(tmp_path / "b.yaml") == {"dataset": "ambigsql", "sft.epochs": 6, "train.beta": 0.1}
    (tmp_path / "c.yaml").write_text("extends: d\n")
    (tmp_path / "d.yaml").write_text("extends: c\n")
    with pytest.raises(ParamsError, match=r"loop: c.yaml -> d.yaml -> c.yaml"):
        load_profile(tmp_path / "c.yaml")
    (tmp_path / "e.yaml").write_text("extends: nowhere\n")
    with pytest.raises(ParamsError, match=r"e.yaml: extends: 'nowhere', but .*nowhere.yaml does not exist"):
        load_profile(tmp_path / "e.yaml")


def test_shipped_sql_profile_is_smollm2_with_more_sft():
    from act.params import load_profile

    base, sql = load_profile(ROOT / "profiles" / "smollm2.yaml"), load_profile(ROOT / "profiles" / "smollm2-sql.yaml")
    assert {k: v for k, v in sql.items() if base.get(k) != v} == {"dataset": "ambigsql", "sft.epochs": 6}


def test_issue19_defaults_evaluation_and_turn_caps():
    """One clarifying exchange at evaluation, as in training and the reference; turn caps at least
    the reference's 128 tokens and the longest gold answer of the data (measured on the ingested
    datasets: AmbigSQL eval, 210 tokens of the embedded tokenizer, 163 of SmolLM2's); the
    reference's scheduler; the paper's wrong-action rule."""
    p = Params()
    assert p.evaluate.max_turns == 1 and p.simulate.max_clarify_turns == 1
    assert p.simulate.max_new_tokens >= 210 and p.evaluate.max_new_tokens >= 210
    assert p.train.lr_scheduler == "cosine" and p.simulate.wrong_action_rule == "paper"
    from act.params import load_profile

    for name in ("smollm2", "smollm2-sql"):
        prof = load_profile(ROOT / "profiles" / f"{name}.yaml")
        p = load_params(ROOT / "params.yaml", prof)
        assert p.simulate.max_new_tokens >= 163 and p.evaluate.max_new_tokens >= 163, name
        assert (p.train.epochs, p.train.lr_scheduler, p.train.beta) == (2, "cosine", 0.05), name
