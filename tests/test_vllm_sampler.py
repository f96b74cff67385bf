"""vLLM on-policy sampling (`train.sampler: vllm`): the wiring, with a stand-in for TRL's vLLM engine.

The stand-in has the interface of `trl.generation.vllm_generation.VLLMGeneration` (the boundary):
`sync_weights()` and `generate(prompts, images, num_generations) -> (prompt_ids, completion_ids,
logprobs, logprob_token_ids)`. Everything around it is real: the tokenizer, the prompt fitting, the
trainer's sampling rounds, relabelling and DPO steps. Without vLLM or CUDA the stage stops with a
ParamsError naming train.sampler; the `gpu` test runs the real engine where both exist."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest

from act.chat import chat_ids, fit_prompt, prepare_tokenizer
from act.errors import ParamsError
from act.records import with_system
from tests.chat_families import build_family
from tests.test_train import SQL, GoldUser, ScriptedClassifier, make_records, tiny  # noqa: F401  (module fixture)


class StandInEngine:
    """Answers every prompt with the next scripted reply (its tokens plus EOS), recording what it got."""

    def __init__(self, tokenizer, replies):
        self.tok, self.replies = tokenizer, list(replies)
        self.generation_kwargs = {"stop_token_ids": [tokenizer.eos_token_id]}
        self.events: list[str] = []
        self.prompts: list[list[list[int]]] = []
        self.seeds: list[int] = []
        self.n = 0

    def sync_weights(self):
        self.events.append("sync")

    def generate(self, prompts, images, num_generations):
        assert images is None and num_generations == 1
        self.events.append("generate")
        self.prompts.append([list(p) for p in prompts])
        self.seeds.append(self.generation_kwargs["seed"])
        completions = []
        for _ in prompts:
            text = self.replies[self.n % len(self.replies)]
            self.n += 1
            completions.append(self.tok(text, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id])
        return prompts, completions, None, None


LONG = [{"role": "system", "content": "Answer from the context.\n\n" + " ".join(f"row{i} x{i}." for i in range(300))},
        {"role": "user", "content": "How many rows?"}]
SHORT = [{"role": "system", "content": "Answer from the context.\n\nrow1."}, {"role": "user", "content": "Which row?"}]


def test_vllm_policy_sends_the_fitted_prompts_and_decodes_the_completions(tmp_path):
    from transformers import AutoTokenizer

    from act.model.vllm_policy import VLLMPolicy

    tok = prepare_tokenizer(AutoTokenizer.from_pretrained(build_family("zephyr", tmp_path / "m")))
    engine = StandInEngine(tok, ["  Which year do you mean? ", SQL])
    policy = VLLMPolicy(engine, tok, max_prompt_tokens=120, seed=7)
    out = policy.generate([LONG, SHORT])
    assert out == ["Which year do you mean?", SQL]  # EOS dropped, whitespace stripped, order kept
    expected = [chat_ids(tok, fit_prompt(tok, c, 120).messages, add_generation_prompt=True) for c in (LONG, SHORT)]
    assert engine.prompts[0] == expected
    assert len(expected[0]) <= 120 and tok.decode(expected[0]).count("How many rows?") == 1
    assert policy.prompt_stats["prompts"] == 2 and policy.prompt_stats["truncated"] == 1
    policy.generate([SHORT])
    assert engine.seeds == [7, 8]  # one seed per call: re-runs sample the same turns
    assert policy.generated_tokens == sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1
                                          for t in ["  Which year do you mean? ", SQL, "  Which year do you mean? "])


def test_trainer_samples_through_vllm_after_pushing_weights(tiny, tmp_path):  # noqa: F811
    from act.model.loading import load_tokenizer
    from act.params import TrainParams, VllmParams
    from act.training.act_trainer import OnPolicySampler
    from act.training.dpo import train_dpo

    base_dir, sft_dir, records, pairs = tiny
    tok = load_tokenizer(base_dir)
    engine = StandInEngine(tok, ["Born after which year?", SQL])
    scores = iter([1.0, 0.0] * 100)
    sampler = OnPolicySampler(ScriptedClassifier(), GoldUser(), lambda r, b, p: next(scores), tolerance=0.9,
                              max_new_tokens=6, max_prompt_tokens=48, backend="vllm", vllm=VllmParams(), engine=engine)
    res = train_dpo(base_dir, sft_dir, pairs, records, tmp_path / "act", TrainParams(batch_size=4), seed=0,
                    sampler=sampler, prompt_budget=48)
    rounds = res.metrics["sampling_rounds"]
    assert rounds == res.metrics["steps"] == 2
    # every round pushes the current weights before its first generate call
    starts = [i for i, e in enumerate(engine.events) if e == "sync"]
    assert len(starts) == rounds and all(engine.events[i + 1] == "generate" for i in starts)
    # the first call of each round gets the round's records' fitted first-turn prompts
    first_calls = [engine.prompts[sum(1 for e in engine.events[:i + 1] if e == "generate")] for i in starts]
    for rnd, sent in zip(res.rounds, first_calls):
        rows = [p["row_index"] for p in rnd["pairs"]]
        want = [chat_ids(tok, fit_prompt(tok, with_system(records[i]), 48).messages, add_generation_prompt=True)
                for i in rows]
        assert sorted(sent) == sorted(want)
    # the completions became the samples the pairs were relabelled with
    firsts = {p["trajectory"]["first_response"] for r in res.rounds for p in r["pairs"]}
    assert firsts <= {"Born after which year?", SQL} and firsts
    assert all(p["outcome"] for r in res.rounds for p in r["pairs"])


def test_without_vllm_the_stage_stops_naming_the_param(monkeypatch, tmp_path):
    from act.model.vllm_policy import check_vllm
    from act.params import load_params
    from stages import train

    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed
    with pytest.raises(ParamsError, match=r"train\.sampler: vllm needs the optional \[vllm\] extra"):
        check_vllm()
    params = load_params("params.yaml", overrides={"train.sampler": "vllm"})
    with pytest.raises(ParamsError, match=r"train\.sampler"):  # before any model or data is touched
        train.run(params, base=tmp_path, sft=tmp_path, pairs_dir=tmp_path, simulated=tmp_path, databases=tmp_path,
                  out=tmp_path / "o", log_dir=tmp_path / "l", metrics_path=tmp_path / "m.json")
    installed = types.ModuleType("vllm")
    installed.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    monkeypatch.setitem(sys.modules, "vllm", installed)  # installed, but no GPU
    with pytest.raises(ParamsError, match=r"train\.sampler: vllm needs a CUDA GPU"):
        check_vllm(capability=lambda: (False, False))


@pytest.mark.gpu
def test_real_vllm_engine_samples_the_training_model(tiny, tmp_path):  # noqa: F811
    pytest.importorskip("vllm")
    from act.params import TrainParams, VllmParams
    from act.training.act_trainer import OnPolicySampler
    from act.training.dpo import train_dpo

    base_dir, sft_dir, records, pairs = tiny
    scores = iter([1.0, 0.0] * 100)
    sampler = OnPolicySampler(ScriptedClassifier(), GoldUser(), lambda r, b, p: next(scores), tolerance=0.9,
                              max_new_tokens=6, max_prompt_tokens=48, backend="vllm",
                              vllm=VllmParams(gpu_memory_utilization=0.2, max_model_length=512))
    res = train_dpo(base_dir, sft_dir, pairs, records, tmp_path / "act", TrainParams(batch_size=4, max_steps=1),
                    seed=0, sampler=sampler, prompt_budget=48)
    assert res.metrics["sampling_rounds"] == 1 and res.metrics["steps"] == 1
