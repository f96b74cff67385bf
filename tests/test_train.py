"""SFT and ACT training on a tiny random 2-layer model with a locally trained tokenizer.

Checks outcomes: LoRA weights move while base weights stay; the policy is sampled on every step
and the relabelled pairs are what the DPO update receives; the reference is the SFT policy (or
the base model for a fresh adapter); user turns can be masked out of the loss; 4-bit runs on CPU.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from act.actions import Action
from act.params import LoraParams, RolesParams, SftParams, TrainParams
from act.records import Branch, TurnRecord

SQL = "SELECT count(*) FROM singer WHERE Birth_Year > 1950"
ROOT = Path(__file__).resolve().parents[1]
DB = ROOT / "data/raw/spider/database"
PARAMS = ROOT / "params.yaml"


def make_records(n: int = 8) -> list[TurnRecord]:
    out = []
    for i in range(n):
        clarify = i % 2 == 1
        out.append(TurnRecord(
            id=f"t{i}", dataset="ambigsql", conversation_id=f"c{i}", split="train",
            context="singer(Singer_ID, Name, Birth_Year, Net_Worth_Millions, Citizenship)",
            messages=[{"role": "user", "content": f"How many singers are there {i}?"}],
            gold_response="Born after which year?" if clarify else SQL,
            gold_action="clarify" if clarify else "answer",
            branches=[Branch("How many singers were born after 1950?", "After 1950." if clarify else None, SQL, [SQL])],
            meta={"db_id": "singer"},
        ))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(base dir, sft adapter dir, records, pairs) built once for the module."""
    from act.model.embedded import build_model, build_tokenizer
    from act.pairs import build_pairs
    from act.roles import build_role
    from act.training.sft import gold_conversation, train_sft

    d = tmp_path_factory.mktemp("tiny")
    records = make_records()
    texts = [m["content"] for r in records for m in gold_conversation(r)]
    tok = build_tokenizer(texts * 5, 400)
    model = build_model(tok, hidden_size=32, layers=2, heads=2, max_positions=512, seed=0)
    model.save_pretrained(d / "base")
    tok.save_pretrained(d / "base")
    train_sft(d / "base", records, d / "sft", SftParams(epochs=2, batch_size=4, learning_rate=5e-3), seed=0)
    pairs, _ = build_pairs(records, build_role("rejecter", RolesParams()))
    return d / "base", d / "sft", records, pairs


def _weights(model, adapter: bool):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if ("lora_" in k) == adapter}


def test_sft_trains_adapter_only(tiny):
    from act.model.loading import load_model

    base_dir, sft_dir, _, _ = tiny
    base, _ = load_model(base_dir)
    sft, _ = load_model(base_dir, sft_dir)
    base_w = base.state_dict()
    frozen = _weights(sft, adapter=False)
    assert frozen and all(
        (v == base_w[k.replace("base_model.model.", "").replace(".base_layer", "")]).all() for k, v in frozen.items())
    lora_b = [v for k, v in _weights(sft, adapter=True).items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # lora_B starts at zero: SFT moved it
    assert not (sft_dir / "model.safetensors").exists()  # adapter only


class ScriptedClassifier:
    """Alternates clarify/answer so both action branches occur in every batch."""

    def __init__(self):
        self.n = 0

    def classify(self, items):
        out = []
        for _ in items:
            out.append(Action.CLARIFY if self.n % 2 else Action.ANSWER)
            self.n += 1
        return out


class GoldUser:
    def __init__(self):
        self.calls = 0

    def reply(self, items):
        self.calls += 1
        return [it.gold_reply or it.intent for it in items]


def _train(tiny, tmp_path, monkeypatch, *, sampler=True, **train_kw):
    """Run train_dpo, capturing every batch the parent DPOTrainer.training_step receives."""
    from trl import DPOTrainer

    from act.training.act_trainer import OnPolicySampler
    from act.training.dpo import train_dpo

    base_dir, sft_dir, records, pairs = tiny
    seen = []
    parent = DPOTrainer.training_step

    def capture(self, model, inputs, *a, **k):
        seen.append({k2: v.clone() for k2, v in inputs.items()})
        return parent(self, model, inputs, *a, **k)

    monkeypatch.setattr(DPOTrainer, "training_step", capture)
    user = GoldUser()
    scores = iter([1.0, 0.0] * 100)
    s = OnPolicySampler(ScriptedClassifier(), user, lambda r, b, p: next(scores), tolerance=0.9,
                        max_new_tokens=6, temperature=1.0,
                        simulate_trajectories=train_kw.get("simulate_trajectories", True)) if sampler else None
    params = TrainParams(batch_size=4, learning_rate=1e-2, **train_kw)
    res = train_dpo(base_dir, sft_dir, pairs, records, tmp_path / "act", params, seed=0, sampler=s)
    return res, seen, user


def test_act_samples_every_step_and_relabelled_pairs_reach_the_loss(tiny, tmp_path, monkeypatch):
    from act.training.act_trainer import _collator_class
    from act.training.tokenize import tokenize_pair
    from act.model.loading import load_tokenizer

    base_dir, _, _, pairs = tiny
    res, seen, user = _train(tiny, tmp_path, monkeypatch)
    steps = res.metrics["steps"]
    assert steps == 2 and len(seen) == steps
    assert res.metrics["sampling_rounds"] == steps and len(res.rounds) == steps
    assert res.metrics["sampling_calls"] >= steps and user.calls >= 1  # clarifying samples met the user
    outcomes = {p["outcome"] for r in res.rounds for p in r["pairs"]}
    assert outcomes & {"wrong_action"} and outcomes & {"clarify_success", "clarify_failure", "answer_success",
                                                       "answer_failure"}
    total = sum(v for k, v in res.metrics.items() if k.startswith("relabel/"))
    assert total == len(pairs) and res.metrics["pairs_dropped_too_long"] == 0
    # the batch handed to DPO is exactly the relabelled pairs of that round, tokenized and collated
    tok = load_tokenizer(base_dir)
    collate = _collator_class()(pad_token_id=tok.pad_token_id, max_length=1024)
    for rnd, batch in zip(res.rounds, seen):
        exs = [tokenize_pair(tok, pairs[p["row_index"]]["prompt"], p["chosen"], p["rejected"]) for p in rnd["pairs"]]
        expected = collate(exs)
        assert (expected["input_ids"] == batch["input_ids"]).all()
        assert (expected["completion_mask"] == batch["completion_mask"]).all()
    replaced_rejected = [p for r in res.rounds for p in r["pairs"] if p["replaced"] == "rejected"]
    assert replaced_rejected and all(p["rejected"][0]["content"] == p["trajectory"]["first_response"]
                                     for p in replaced_rejected)
    # DPO statistics logged per step
    assert all("rewards/margins" in h and "rewards/accuracies" in h for h in res.log_history if "loss" in h)


def test_reference_is_the_sft_policy_and_base_is_frozen(tiny, tmp_path, monkeypatch):
    import torch

    from act.model.loading import load_model

    base_dir, sft_dir, _, _ = tiny
    res, seen, _ = _train(tiny, tmp_path, monkeypatch, sampler=False, on_policy=False)
    assert res.metrics["reference"] == "sft_adapter_copy"
    act, _ = load_model(base_dir, tmp_path / "act")
    sft, _ = load_model(base_dir, sft_dir)
    base, _ = load_model(base_dir)
    batch = {k: v for k, v in seen[0].items() if k in ("input_ids", "attention_mask")}
    labels = seen[0]["input_ids"].masked_fill(seen[0]["completion_mask"] == 0, -100)

    def logps(m):
        with torch.no_grad():
            logits = m(**batch).logits[:, :-1]
        lab = labels[:, 1:]
        lp = torch.log_softmax(logits, -1).gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (lp * (lab != -100)).sum(-1)

    # the trained adapter started from the SFT adapter and moved away from it
    assert not torch.allclose(logps(act), logps(sft), atol=1e-4)
    # the frozen reference TRL used == the SFT policy reloaded from disk (the "ref" adapter copy)
    trainer_ref = res.metrics.get("reference")
    assert trainer_ref == "sft_adapter_copy"
    act_base = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
                for k, v in act.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(v, act_base[k]) for k, v in base.state_dict().items())
    saved = json.loads((tmp_path / "act" / "adapter_config.json").read_text())
    assert saved["r"] == SftParams().lora.r and not (tmp_path / "act" / "ref").exists()  # only the trained adapter


def test_trainer_reference_logps_equal_sft_policy(tiny):
    """TRL's reference pass (adapter 'ref', a frozen copy of the SFT adapter) == the SFT model."""
    import torch
    from datasets import Dataset

    from act.model.loading import load_model
    from act.training.act_trainer import make_trainer_class
    from act.training.dpo import dpo_config, start_policy

    base_dir, sft_dir, records, pairs = tiny
    params = TrainParams(batch_size=4)
    model, tok, peft_config, reference = start_policy(base_dir, sft_dir, params)
    assert peft_config is None and reference == "sft_adapter_copy"
    ds = Dataset.from_list([{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"], "row_index": i}
                            for i, p in enumerate(pairs)])
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer_class()(model=model, args=dpo_config(params, tmp, seed=0), train_dataset=ds,
                                       processing_class=tok, pairs=pairs, records=records)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        batch.pop("row_index")
        # perturb the trainable adapter: the reference must not follow it
        with torch.no_grad():
            for n, p in trainer.model.named_parameters():
                if ".default." in n and "lora_B" in n:
                    p.add_(0.5)
        ref_c, ref_r = trainer.compute_ref_log_probs(trainer.model, batch)
    sft, _ = load_model(base_dir, sft_dir)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad():
        logits = sft(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    lab = labels[:, 1:]
    lp = (torch.log_softmax(logits, -1).gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (lab != -100)).sum(-1)
    assert torch.allclose(torch.cat([ref_c, ref_r]), lp, atol=1e-3)


def test_init_base_uses_fresh_adapter_and_base_reference(tiny, tmp_path, monkeypatch):
    res, _, _ = _train(tiny, tmp_path, monkeypatch, sampler=False, on_policy=False, init="base",
                       lora=LoraParams(r=4, alpha=8))
    assert res.metrics["reference"] == "base_adapter_disabled"
    assert json.loads((tmp_path / "act" / "adapter_config.json").read_text())["r"] == 4


def test_mask_user_turns_zeroes_exactly_the_user_turn(tiny):
    from act.model.loading import load_tokenizer
    from act.training.tokenize import tokenize_pair

    base_dir, _, _, pairs = tiny
    tok = load_tokenizer(base_dir)
    pair = next(p for p in pairs if len(p["chosen"]) == 3)
    plain = tokenize_pair(tok, pair["prompt"], pair["chosen"], pair["rejected"])
    masked = tokenize_pair(tok, pair["prompt"], pair["chosen"], pair["rejected"], mask_user_turns=True)
    assert plain["chosen_ids"] == masked["chosen_ids"] and all(plain["chosen_loss_mask"])
    dropped = [t for t, m in zip(masked["chosen_ids"], masked["chosen_loss_mask"]) if not m]
    user = pair["chosen"][1]["content"]
    assert tok.decode(dropped) == f"<|user|>\n{user}<|end|>\n<|assistant|>\n"
    assert all(masked["rejected_loss_mask"])  # single-turn side untouched


def test_mask_user_turns_reaches_completion_mask(tiny, tmp_path, monkeypatch):
    res, seen, _ = _train(tiny, tmp_path, monkeypatch, sampler=False, on_policy=False, mask_user_turns=True,
                          max_steps=1)
    res2, seen2, _ = _train(tiny, tmp_path / "b", monkeypatch, sampler=False, on_policy=False, max_steps=1)
    assert (seen[0]["input_ids"] == seen2[0]["input_ids"]).all()
    assert seen[0]["completion_mask"].sum() < seen2[0]["completion_mask"].sum()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                    reason="nf4 needs bitsandbytes: pip install -e '.[qlora]'")
def test_qlora_nf4_runs_on_cpu(tiny, tmp_path, monkeypatch):
    """4-bit nf4 base (bitsandbytes blocks need width >= 64) + SFT adapter, sampled and trained on CPU."""
    from act.model.embedded import build_model
    from act.model.loading import load_model, load_tokenizer
    from act.training.sft import train_sft

    base_dir, _, records, pairs = tiny
    tok = load_tokenizer(base_dir)
    build_model(tok, hidden_size=64, layers=2, heads=2, max_positions=512, seed=0).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    train_sft(tmp_path / "base", records, tmp_path / "sft", SftParams(epochs=1, batch_size=4, quantization="nf4"), seed=0)
    wide = (tmp_path / "base", tmp_path / "sft", records, pairs)
    res, seen, _ = _train(wide, tmp_path, monkeypatch, quantization="nf4", max_steps=2)
    assert res.metrics["steps"] == 2 and res.metrics["sampling_rounds"] == 2
    assert res.metrics["reference"] == "sft_adapter_copy"
    files = {p.name for p in (tmp_path / "act").iterdir()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    model, _ = load_model(tmp_path / "base", tmp_path / "act", quantization="nf4")
    assert getattr(model.get_base_model(), "is_loaded_in_4bit", False)


def test_params_sections_are_frozen_dataclasses():
    assert dataclasses.is_dataclass(TrainParams) and TrainParams().sample_every == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainParams().sample_every = 2  # type: ignore[misc]
    with pytest.raises(ValueError):
        TrainParams(sample_every=0)


def test_sample_every_two_steps_and_in_between_batches_use_latest_labels(tiny, tmp_path, monkeypatch):
    from act.model.loading import load_tokenizer
    from act.training.tokenize import tokenize_pair

    base_dir, _, _, pairs = tiny
    res, seen, _ = _train(tiny, tmp_path, monkeypatch, sample_every=2, epochs=2)
    assert res.metrics["steps"] == 4 and len(seen) == 4
    assert [r["step"] for r in res.rounds] == [0, 2]  # steps 1 and 3 train without sampling
    tok = load_tokenizer(base_dir)

    latest = {i: tokenize_pair(tok, p["prompt"], p["chosen"], p["rejected"]) for i, p in enumerate(pairs)}
    for rnd in res.rounds:  # rounds in step order: a later relabel of a row replaces an earlier one
        for p in rnd["pairs"]:
            latest[p["row_index"]] = tokenize_pair(tok, pairs[p["row_index"]]["prompt"], p["chosen"], p["rejected"])
    n = seen[3]["input_ids"].shape[0] // 2
    for j in range(n):
        row = seen[3]["input_ids"][j][seen[3]["attention_mask"][j].bool()].tolist()
        i = next(i for i, ex in latest.items() if row[: len(ex["prompt_ids"])] == ex["prompt_ids"])
        assert row == latest[i]["prompt_ids"] + latest[i]["chosen_ids"]
        rej = seen[3]["input_ids"][n + j][seen[3]["attention_mask"][n + j].bool()].tolist()
        assert rej == latest[i]["prompt_ids"] + latest[i]["rejected_ids"]


def test_without_trajectory_simulation_questions_are_judged_by_action_answers_by_score(tiny, tmp_path, monkeypatch):
    """"ACT w/o trajectory simulation": a clarifying question with the winning action wins on its
    action alone; a direct answer is still scored by the task heuristic (issue 19)."""
    res, _, user = _train(tiny, tmp_path, monkeypatch, simulate_trajectories=False)
    pairs = [p for r in res.rounds for p in r["pairs"]]
    assert {p["outcome"] for p in pairs} <= {"wrong_action", "right_action", "answer_success", "answer_failure"}
    assert all(p["trajectory"]["first_action"] == "clarify" for p in pairs if p["outcome"] == "right_action")
    answered = [p for p in pairs if p["outcome"].startswith("answer_")]
    assert all(p["score"] is not None and (p["outcome"] == "answer_success") == (p["score"] >= 0.9) for p in answered)
    assert user.calls == 0  # the simulated user is never asked


@pytest.mark.slow
def test_stages_base_sft_simulate_train_write_their_outputs(tmp_path):
    """The four stage run()s on a tiny annotated dataset with the real offline roles and SQL scoring."""
    from act.io import read_json, save_dataset
    from act.pairs import build_pairs
    from act.params import load_params
    from act.roles import build_role
    from stages import base, sft, simulate, train

    records = make_records()
    save_dataset(tmp_path / "annotate", {"train": [r.to_row() for r in records]})
    pairs, _ = build_pairs(records, build_role("rejecter", RolesParams()))
    save_dataset(tmp_path / "pairs", {"train": pairs, "eval": pairs[:4]})
    params = load_params(PARAMS, {
        "base.embedded": {"vocab_size": 400, "hidden_size": 32, "layers": 2, "heads": 2, "max_positions": 512,
                          "block_size": 64, "batch_size": 4, "steps": 5, "learning_rate": 2e-3},
        "sft.epochs": 1, "simulate.max_new_tokens": 8, "train.max_steps": 2, "train.batch_size": 4,
    })
    m = tmp_path / "m"
    b = base.run(params, data=tmp_path / "annotate", out=tmp_path / "base", metrics_path=m / "base.json")
    assert b["embedded"] and b["pretrain_steps"] == 5 and b["train_records"] == len(records)
    s = sft.run(params, base=tmp_path / "base", data=tmp_path / "annotate", out=tmp_path / "sft", metrics_path=m / "sft.json")
    assert s["enabled"] and (tmp_path / "sft" / "adapter_model.safetensors").exists()
    sim = simulate.run(params, base=tmp_path / "base", sft=tmp_path / "sft", pairs_dir=tmp_path / "pairs", databases=DB,
                       out=tmp_path / "sim", metrics_path=m / "simulate.json")
    assert sum(v for k, v in sim.items() if k.startswith("relabel/")) == len(pairs)
    t = train.run(params, base=tmp_path / "base", sft=tmp_path / "sft", pairs_dir=tmp_path / "pairs",
                  simulated=tmp_path / "sim", databases=DB, out=tmp_path / "act", log_dir=tmp_path / "trainlog",
                  metrics_path=m / "train.json")
    assert t["steps"] == 2 and t["sampling_rounds"] == 2
    # the DVC metric holds no wall-clock figure; those go to the untracked timings file
    timings = read_json(m / "train.timings.json")
    assert "seconds" in timings and "sampling_seconds" in timings and "seconds" not in read_json(m / "train.json")
    assert read_json(m / "train.json") == {k: v for k, v in t.items() if k not in timings}
    assert {p.name for p in (tmp_path / "trainlog").iterdir()} == {".act-output", "log.jsonl", "probe.jsonl", "relabel.jsonl", "rounds"}
    probe = [json.loads(x) for x in (tmp_path / "trainlog" / "probe.jsonl").read_text().splitlines()]
    assert [x["step"] for x in probe] == [0, 2] and all("rewards/margins" in x for x in probe)
    lines = [json.loads(x) for x in (tmp_path / "trainlog" / "log.jsonl").read_text().splitlines()]
    assert any("rewards/margins" in x and "relabel/wrong_action" in x for x in lines)
    assert len(list((tmp_path / "trainlog" / "rounds").iterdir())) == 2
    once = train.run(load_params(PARAMS, {**{"train.sampling": "once", "train.max_steps": 1,
                                                    "train.batch_size": 4}}),
                     base=tmp_path / "base", sft=tmp_path / "sft", pairs_dir=tmp_path / "pairs", simulated=tmp_path / "sim",
                     databases=DB, out=tmp_path / "act2", log_dir=tmp_path / "trainlog2", metrics_path=m / "train2.json")
    assert once["pair_source"] == "simulate" and once["sampling_rounds"] == 0
    off = sft.run(load_params(PARAMS, {"sft.enabled": False}), base=tmp_path / "base", data=tmp_path / "annotate",
                  out=tmp_path / "sft_off", metrics_path=m / "sft_off.json")
    assert off == {"enabled": False, "seconds": off["seconds"]}
    assert not (tmp_path / "sft_off" / "adapter_config.json").exists()


def test_max_length_below_every_prompt_is_a_clear_error(tiny, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="train.max_length=8"):
        _train(tiny, tmp_path, monkeypatch, sampler=False, on_policy=False, max_length=8)


def test_act_trainer_is_a_named_importable_class_and_sampler_module_stays_light():
    """Issue 19, item 5: `ActDPOTrainer` has a module-level name (the speed helper's mixin and any
    reader find it there); the stages build their sampler from `act.training.sampler`, which
    imports neither TRL nor torch."""
    import subprocess
    import sys

    from trl import DPOTrainer

    from act.training.act_trainer import ActDPOTrainer, OnPolicySampler, make_trainer_class
    from act.training.sampler import OnPolicySampler as Light

    assert ActDPOTrainer.__module__ == "act.training.act_trainer" and issubclass(ActDPOTrainer, DPOTrainer)
    assert make_trainer_class() is ActDPOTrainer and OnPolicySampler is Light
    out = subprocess.run([sys.executable, "-c", "import sys, act.training.sampler, stages.train; "
                          "print(sorted(m for m in ('trl', 'torch', 'transformers') if m in sys.modules))"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_reference_regime_switches_reach_the_dpo_config(tmp_path):
    """train.optim: rmsprop, train.lr_scheduler: cosine, train.epochs: 2, train.beta: 0.05 (the
    reference's ACTConfig) arrive in TRL's DPOConfig as they are."""
    from act.training.dpo import dpo_config

    args = dpo_config(TrainParams(optim="rmsprop", lr_scheduler="cosine", epochs=2, beta=0.05), tmp_path, seed=0)
    assert (str(args.optim.value if hasattr(args.optim, "value") else args.optim), str(args.lr_scheduler_type.value),
            args.num_train_epochs, args.beta) == ("rmsprop", "cosine", 2, 0.05)
    constant = dpo_config(TrainParams(lr_scheduler="constant_with_warmup"), tmp_path, seed=0)
    assert str(constant.lr_scheduler_type.value) == "constant_with_warmup"
